//! MCCS: the margin-shaped cosine similarity of signed finding vectors (docs/ARCHITECTURE.md).

use crate::observations::{Labels, NEGATIVE, N_OBS, POSITIVE, UNCERTAIN};

/// Length of the signed vector: every observation but No Finding.
pub const N_SIGNED: usize = N_OBS - 1;

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

/// Cosine similarity; 1 when both vectors are zero, 0 when exactly one is.
pub fn ccs(g: &[f64; N_SIGNED], r: &[f64; N_SIGNED]) -> f64 {
    let (mut dot, mut gg, mut rr) = (0.0, 0.0, 0.0);
    for i in 0..N_SIGNED {
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
