//! MCCS: the margin-shaped cosine similarity of signed finding vectors (docs/ARCHITECTURE.md).

use crate::observations::{
    Labels, NEGATIVE, N_OBS, POSITIVE, SIDED, SIDE_BILATERAL, SIDE_LEFT, SIDE_RIGHT, UNCERTAIN,
};

/// Length of the signed vector: every observation but No Finding.
pub const N_SIGNED: usize = N_OBS - 1;

/// Number of observations with a side (`observations::SIDED`).
pub const N_SIDED: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < N_OBS {
        if SIDED[i] {
            n += 1;
        }
        i += 1;
    }
    n
};

/// Length of MCCS+'s vector: the signed vector, then a left and a right dimension per sided
/// observation.
pub const N_PLUS: usize = N_SIGNED + 2 * N_SIDED;

/// Default MCCS+ side weight β: the share of a sided finding's unit weight that moves onto its side
/// dimensions when a side is stated. With β = 0.5 one finding's agreement is 1 for the same side,
/// √0.5 ≈ 0.71 when only one report states a side, 0.85 for bilateral against one side, and 0.5
/// for the wrong side.
pub const DEFAULT_SIDE_WEIGHT: f64 = 0.5;

/// Default margin. Cosine similarities of sparse ±1 finding vectors cluster high — a report that
/// repeats the reference's negatives and misses its one positive finding still scores about 0.8 —
/// so the reward keeps only the part above 0.5 (rescaled to [0, 1]). That widens the gap between
/// "all findings right" and "the clinically important one wrong", which is what GRPO's
/// group-relative advantages feed on. The paper does not publish its value: this is a choice.
pub const DEFAULT_MARGIN: f64 = 0.5;
/// Default value of an uncertain finding in the signed vector (counts as present).
pub const DEFAULT_UNCERTAIN: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MccsParams {
    pub margin: f64,
    pub uncertain: f64,
}

impl Default for MccsParams {
    fn default() -> Self {
        MccsParams {
            margin: DEFAULT_MARGIN,
            uncertain: DEFAULT_UNCERTAIN,
        }
    }
}

impl MccsParams {
    /// Validated parameters: margin in [0, 1), uncertain value finite in [-1, 1].
    pub fn new(margin: f64, uncertain: f64) -> Result<Self, String> {
        if !(margin.is_finite() && (0.0..1.0).contains(&margin)) {
            return Err(format!("margin must be in [0, 1), got {margin}"));
        }
        if !(uncertain.is_finite() && (-1.0..=1.0).contains(&uncertain)) {
            return Err(format!(
                "uncertain must be a finite value in [-1, 1], got {uncertain}"
            ));
        }
        Ok(MccsParams { margin, uncertain })
    }
}

/// positive → +1, negative → −1, uncertain → `uncertain`, blank → 0; No Finding left out.
pub fn signed_vector(labels: &Labels, uncertain: f64) -> [f64; N_SIGNED] {
    let mut v = [0.0; N_SIGNED];
    for (slot, &code) in v.iter_mut().zip(labels[1..].iter()) {
        *slot = match code {
            POSITIVE => 1.0,
            NEGATIVE => -1.0,
            UNCERTAIN => uncertain,
            _ => 0.0,
        };
    }
    v
}

/// Cosine similarity; 1 when both vectors are zero, 0 when exactly one is. (Generic in the length so
/// that MCCS's 13 and MCCS+'s `N_PLUS` dimensions both compile to fixed-length loops.)
pub fn ccs<const N: usize>(g: &[f64; N], r: &[f64; N]) -> f64 {
    let (mut dot, mut gg, mut rr) = (0.0, 0.0, 0.0);
    for i in 0..N {
        dot += g[i] * r[i];
        gg += g[i] * g[i];
        rr += r[i] * r[i];
    }
    match (gg == 0.0, rr == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        // sqrt(gg·rr) rather than sqrt(gg)·sqrt(rr): identical vectors then give exactly 1; when
        // gg·rr underflows (uncertain values near 1e-87) the two square roots are taken apart
        _ => {
            let denom = (gg * rr).sqrt();
            let denom = if denom > 0.0 {
                denom
            } else {
                gg.sqrt() * rr.sqrt()
            };
            (dot / denom).clamp(-1.0, 1.0)
        }
    }
}

/// `max((ccs − m) / (1 − m), 0)`, in [0, 1].
#[inline]
pub fn shape(ccs: f64, margin: f64) -> f64 {
    ((ccs - margin) / (1.0 - margin)).clamp(0.0, 1.0)
}

/// MCCS of a generated report's labels against its reference's labels.
pub fn mccs_labels(generated: &Labels, reference: &Labels, p: &MccsParams) -> f64 {
    let g = signed_vector(generated, p.uncertain);
    let r = signed_vector(reference, p.uncertain);
    shape(ccs(&g, &r), p.margin)
}

/// A checked MCCS+ side weight β: finite, 0 < β < 1 (β = 0 would be MCCS itself, β = 1 would give
/// a finding stated with a side nothing in common with the same finding stated without one).
pub fn check_side_weight(side_weight: f64) -> Result<f64, String> {
    if side_weight.is_finite() && side_weight > 0.0 && side_weight < 1.0 {
        Ok(side_weight)
    } else {
        Err(format!(
            "side_weight must lie strictly between 0 and 1, got {side_weight}"
        ))
    }
}

/// MCCS+'s vector: the signed vector, with each sided observation whose code is positive or
/// uncertain and whose side is stated split between its own dimension (× √(1 − β)) and its left
/// and right dimensions (× √β on the stated side; × √(β/2) on each for bilateral). Each finding
/// keeps unit weight; with no side stated the vector is the signed vector followed by zeros.
pub fn plus_vector(
    labels: &Labels,
    sides: &[i8; N_OBS],
    uncertain: f64,
    side_weight: f64,
) -> [f64; N_PLUS] {
    let mut v = [0.0; N_PLUS];
    let base = signed_vector(labels, uncertain);
    v[..N_SIGNED].copy_from_slice(&base);
    let (a, b) = ((1.0 - side_weight).sqrt(), side_weight.sqrt());
    let mut k = 0usize;
    for o in 1..N_OBS {
        if !SIDED[o] {
            continue;
        }
        let s = base[o - 1];
        let present = matches!(labels[o], POSITIVE | UNCERTAIN);
        let (l, r) = match sides[o] {
            SIDE_LEFT => (b, 0.0),
            SIDE_RIGHT => (0.0, b),
            SIDE_BILATERAL => (
                b * std::f64::consts::FRAC_1_SQRT_2,
                b * std::f64::consts::FRAC_1_SQRT_2,
            ),
            _ => (0.0, 0.0),
        };
        if present && (l != 0.0 || r != 0.0) {
            v[o - 1] = s * a;
            v[N_SIGNED + 2 * k] = s * l;
            v[N_SIGNED + 2 * k + 1] = s * r;
        }
        k += 1;
    }
    v
}

/// MCCS+ of a generated report against its reference: the same cosine, margin and shape as MCCS
/// over `plus_vector`s. Equal to `mccs_labels` when neither report states a side.
pub fn mccs_plus_labels(
    generated: &Labels,
    generated_sides: &[i8; N_OBS],
    reference: &Labels,
    reference_sides: &[i8; N_OBS],
    p: &MccsParams,
    side_weight: f64,
) -> f64 {
    let g = plus_vector(generated, generated_sides, p.uncertain, side_weight);
    let r = plus_vector(reference, reference_sides, p.uncertain, side_weight);
    shape(ccs(&g, &r), p.margin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observations::BLANK;
    use proptest::prelude::*;

    fn labels(pairs: &[(usize, i8)]) -> Labels {
        let mut l = [BLANK; N_OBS];
        for &(i, c) in pairs {
            l[i] = c;
        }
        l
    }

    #[test]
    fn edge_cases() {
        let p = MccsParams::default();
        let empty = labels(&[]);
        let one = labels(&[(2, POSITIVE)]);
        assert_eq!(mccs_labels(&empty, &empty, &p), 1.0);
        assert_eq!(mccs_labels(&empty, &one, &p), 0.0);
        assert_eq!(mccs_labels(&one, &empty, &p), 0.0);
        assert_eq!(mccs_labels(&one, &one, &p), 1.0);
        // No Finding alone is not part of the vector: both vectors are zero.
        assert_eq!(mccs_labels(&labels(&[(0, POSITIVE)]), &empty, &p), 1.0);
        let flipped = labels(&[(2, NEGATIVE)]);
        assert_eq!(mccs_labels(&one, &flipped, &p), 0.0);
    }

    #[test]
    fn margin_shapes() {
        let g = labels(&[(2, POSITIVE), (10, NEGATIVE)]);
        let r = labels(&[(2, POSITIVE)]);
        // cos = 1/sqrt(2)
        let c = 1.0 / 2f64.sqrt();
        let m0 = MccsParams::new(0.0, 1.0).unwrap();
        assert!((mccs_labels(&g, &r, &m0) - c).abs() < 1e-12);
        // tiny uncertain values: gg·rr underflows, the cosine must not
        let tiny = MccsParams::new(0.0, 8.5e-87).unwrap();
        let all_u = [UNCERTAIN; N_OBS];
        let mut one_u = [crate::observations::BLANK; N_OBS];
        one_u[1] = UNCERTAIN;
        let want = 1.0 / (N_SIGNED as f64).sqrt();
        assert!((mccs_labels(&all_u, &one_u, &tiny) - want).abs() < 1e-12);
        let m5 = MccsParams::new(0.5, 1.0).unwrap();
        assert!((mccs_labels(&g, &r, &m5) - (c - 0.5) / 0.5).abs() < 1e-12);
    }

    #[test]
    fn params_validated() {
        assert!(MccsParams::new(1.0, 1.0).is_err());
        assert!(MccsParams::new(-0.1, 1.0).is_err());
        assert!(MccsParams::new(f64::NAN, 1.0).is_err());
        assert!(MccsParams::new(0.5, 2.0).is_err());
        assert!(MccsParams::new(0.5, 0.5).is_ok());
    }

    #[test]
    fn plus_equals_mccs_without_sides_and_orders_sides() {
        let p = MccsParams::default();
        let none = [0i8; N_OBS];
        let eff = labels(&[(10, POSITIVE), (2, POSITIVE)]);
        assert_eq!(
            mccs_plus_labels(&eff, &none, &eff, &none, &p, 0.5),
            mccs_labels(&eff, &eff, &p)
        );
        let side = |s: i8| {
            let mut x = [0i8; N_OBS];
            x[10] = s;
            x
        };
        let m0 = MccsParams::new(0.0, 1.0).unwrap();
        let same = mccs_plus_labels(&eff, &side(SIDE_LEFT), &eff, &side(SIDE_LEFT), &m0, 0.5);
        let unstated = mccs_plus_labels(&eff, &none, &eff, &side(SIDE_LEFT), &m0, 0.5);
        let both = mccs_plus_labels(
            &eff,
            &side(SIDE_BILATERAL),
            &eff,
            &side(SIDE_LEFT),
            &m0,
            0.5,
        );
        let wrong = mccs_plus_labels(&eff, &side(SIDE_RIGHT), &eff, &side(SIDE_LEFT), &m0, 0.5);
        assert!((same - 1.0).abs() < 1e-12);
        assert!(
            same > both && both > unstated && unstated > wrong,
            "{same} {both} {unstated} {wrong}"
        );
        // one finding of two with the wrong side: (1 + 0.5) / 2
        assert!((wrong - 0.75).abs() < 1e-12);
        // a side on an observation that has none (Cardiomegaly) is ignored
        let mut card = [0i8; N_OBS];
        card[2] = SIDE_LEFT;
        assert_eq!(
            mccs_plus_labels(&eff, &card, &eff, &none, &p, 0.5),
            mccs_labels(&eff, &eff, &p)
        );
        assert!(check_side_weight(0.0).is_err() && check_side_weight(1.0).is_err());
        assert!(check_side_weight(f64::NAN).is_err() && check_side_weight(0.3).is_ok());
    }

    fn code() -> impl Strategy<Value = i8> {
        prop_oneof![Just(POSITIVE), Just(NEGATIVE), Just(UNCERTAIN), Just(BLANK)]
    }

    proptest! {
        #[test]
        fn range_and_symmetry(g in prop::array::uniform14(code()), r in prop::array::uniform14(code()),
                              m in 0.0f64..0.99, u in -1.0f64..=1.0) {
            let p = MccsParams::new(m, u).unwrap();
            let a = mccs_labels(&g, &r, &p);
            let b = mccs_labels(&r, &g, &p);
            prop_assert!((0.0..=1.0).contains(&a));
            prop_assert!((a - b).abs() < 1e-12);
            let s = mccs_labels(&g, &g, &p);
            let zero = signed_vector(&g, u).iter().all(|x| *x == 0.0);
            prop_assert!(zero || (s - 1.0).abs() < 1e-12);
        }
    }
}
