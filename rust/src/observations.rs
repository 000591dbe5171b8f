//! The 14 CheXpert observations and their codes, fixed by docs/ARCHITECTURE.md.

/// Column order of every label array (CheXpert's own order).
pub const OBSERVATIONS: [&str; N_OBS] = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
];

pub const N_OBS: usize = 14;

pub const POSITIVE: i8 = 1;
pub const NEGATIVE: i8 = 0;
pub const UNCERTAIN: i8 = -1;
/// "Not mentioned". int8's minimum, so it can never be confused with a CheXpert code.
pub const BLANK: i8 = -128;

/// One report's codes, one per observation in `OBSERVATIONS` order.
pub type Labels = [i8; N_OBS];

pub const NO_FINDING: usize = 0;
pub const SUPPORT_DEVICES: usize = 13;

/// Side of a finding (the labeler's details): bits, so that left | right = bilateral.
pub const SIDE_NONE: i8 = 0;
pub const SIDE_LEFT: i8 = 1;
pub const SIDE_RIGHT: i8 = 2;
pub const SIDE_BILATERAL: i8 = 3;
/// Name of each side code (index = code); "none" = not stated (or not reported).
pub const SIDE_NAMES: [&str; 4] = ["none", "left", "right", "bilateral"];

/// Degree of a finding (the labeler's details): an ordinal code, size words on the same scale
/// (small = mild, large = severe).
pub const DEGREE_NONE: i8 = 0;
pub const DEGREE_MILD: i8 = 1;
pub const DEGREE_MODERATE: i8 = 2;
pub const DEGREE_SEVERE: i8 = 3;
/// Name of each degree code (index = code); "none" = not stated (or not reported).
pub const DEGREE_NAMES: [&str; 4] = ["none", "mild", "moderate", "severe"];

/// The observations that have a side (the lung, the pleura, bones, devices): only they report
/// one and only they get MCCS+'s side dimensions. No Finding, Enlarged Cardiomediastinum (a
/// midline silhouette) and Cardiomegaly never do.
pub const SIDED: [bool; N_OBS] = [
    false, false, false, true, true, true, true, true, true, true, true, true, true, true,
];

/// The five observations of the CheXpert competition subset, as column indices.
pub const COMPETITION_FIVE: [usize; 5] = [8, 2, 6, 5, 10];

/// Column index of an observation name (exact spelling).
pub fn index_of(name: &str) -> Option<usize> {
    OBSERVATIONS.iter().position(|o| *o == name)
}

/// Report-level aggregation priority: positive > uncertain > negative > blank.
#[inline]
pub fn priority(code: i8) -> u8 {
    match code {
        POSITIVE => 3,
        UNCERTAIN => 2,
        NEGATIVE => 1,
        _ => 0,
    }
}

/// Merge a new mention's code into a report-level code.
#[inline]
pub fn aggregate(current: i8, new: i8) -> i8 {
    if priority(new) > priority(current) {
        new
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_order() {
        assert_eq!(aggregate(BLANK, NEGATIVE), NEGATIVE);
        assert_eq!(aggregate(NEGATIVE, UNCERTAIN), UNCERTAIN);
        assert_eq!(aggregate(UNCERTAIN, POSITIVE), POSITIVE);
        assert_eq!(aggregate(POSITIVE, NEGATIVE), POSITIVE);
        assert_eq!(aggregate(UNCERTAIN, NEGATIVE), UNCERTAIN);
    }

    #[test]
    fn side_codes_are_bits() {
        assert_eq!(SIDE_LEFT | SIDE_RIGHT, SIDE_BILATERAL);
        assert_eq!(SIDE_NAMES[SIDE_BILATERAL as usize], "bilateral");
        assert_eq!(DEGREE_NAMES[DEGREE_SEVERE as usize], "severe");
        let sided: Vec<&str> = (0..N_OBS)
            .filter(|&i| SIDED[i])
            .map(|i| OBSERVATIONS[i])
            .collect();
        assert_eq!(sided.first(), Some(&"Lung Opacity"));
        assert_eq!(sided.len(), 11);
        assert!(!SIDED[NO_FINDING] && SIDED[SUPPORT_DEVICES]);
    }

    #[test]
    fn five_subset_names() {
        let names: Vec<&str> = COMPETITION_FIVE.iter().map(|&i| OBSERVATIONS[i]).collect();
        assert_eq!(
            names,
            [
                "Atelectasis",
                "Cardiomegaly",
                "Consolidation",
                "Edema",
                "Pleural Effusion"
            ]
        );
        assert_eq!(index_of("Support Devices"), Some(SUPPORT_DEVICES));
    }
}
