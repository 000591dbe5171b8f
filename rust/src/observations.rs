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
