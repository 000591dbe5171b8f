//! Clinical-efficacy metrics: per-observation and micro/macro precision, recall and F1.

use crate::observations::{Labels, POSITIVE, UNCERTAIN};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Precision, recall, F1 with 0 for an empty denominator (scikit-learn's `zero_division=0`).
pub fn prf(c: &Counts) -> Prf {
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(c.tp, c.tp + c.fp);
    let recall = ratio(c.tp, c.tp + c.fn_);
    let f1 = ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn_);
    Prf {
        precision,
        recall,
        f1,
    }
}

/// Binarisation: positive only (R2Gen's convention), or uncertain counted as positive too.
#[inline]
pub fn is_positive(code: i8, uncertain_positive: bool) -> bool {
    code == POSITIVE || (uncertain_positive && code == UNCERTAIN)
}

#[derive(Clone, Debug, PartialEq)]
pub struct CeReport {
    /// (column, counts, scores), in the order of the requested columns.
    pub per_observation: Vec<(usize, Counts, Prf)>,
    pub micro: Prf,
    /// Unweighted mean over the requested observations of their precision, recall and F1.
    pub macro_: Prf,
}

/// Side codes per report (`observations::SIDE_*`), as `label_report_details` gives them.
pub type Sides = [i8; crate::N_OBS];

/// CE metrics of predicted vs reference labels over the given columns.
pub fn ce_metrics(
    pred: &[Labels],
    refs: &[Labels],
    columns: &[usize],
    uncertain_positive: bool,
) -> Result<CeReport, String> {
    ce_metrics_with(pred, refs, None, columns, uncertain_positive)
}

/// Side-aware CE: as `ce_metrics`, but a positive on both sides counts as a true positive only
/// when both reports state the same side or either states none; otherwise it is a false positive
/// (the predicted finding is on the wrong side) and a false negative (the reference's is missed).
pub fn ce_metrics_sided(
    pred: &[Labels],
    refs: &[Labels],
    pred_sides: &[Sides],
    ref_sides: &[Sides],
    columns: &[usize],
    uncertain_positive: bool,
) -> Result<CeReport, String> {
    if pred_sides.len() != pred.len() || ref_sides.len() != refs.len() {
        return Err(format!(
            "sides must have one row per report: {} and {} rows for {} and {} reports",
            pred_sides.len(),
            ref_sides.len(),
            pred.len(),
            refs.len()
        ));
    }
    ce_metrics_with(
        pred,
        refs,
        Some((pred_sides, ref_sides)),
        columns,
        uncertain_positive,
    )
}

/// Two side codes agree: the same side, or at least one not stated.
#[inline]
pub fn sides_agree(a: i8, b: i8) -> bool {
    a == 0 || b == 0 || a == b
}

fn ce_metrics_with(
    pred: &[Labels],
    refs: &[Labels],
    sides: Option<(&[Sides], &[Sides])>,
    columns: &[usize],
    uncertain_positive: bool,
) -> Result<CeReport, String> {
    if pred.len() != refs.len() {
        return Err(format!(
            "predictions and references differ in length: {} vs {}",
            pred.len(),
            refs.len()
        ));
    }
    if columns.is_empty() {
        return Err("no observations selected".to_string());
    }
    if let Some(c) = columns.iter().find(|&&c| c >= crate::N_OBS) {
        return Err(format!(
            "observation index {c} out of range 0..{}",
            crate::N_OBS
        ));
    }
    let mut per = Vec::with_capacity(columns.len());
    let mut total = Counts::default();
    let (mut sp, mut sr, mut sf) = (0.0, 0.0, 0.0);
    for &col in columns {
        let mut c = Counts::default();
        for (i, (p, r)) in pred.iter().zip(refs).enumerate() {
            match (
                is_positive(p[col], uncertain_positive),
                is_positive(r[col], uncertain_positive),
            ) {
                (true, true) => match sides {
                    Some((ps, rs)) if !sides_agree(ps[i][col], rs[i][col]) => {
                        c.fp += 1;
                        c.fn_ += 1;
                    }
                    _ => c.tp += 1,
                },
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        total.tp += c.tp;
        total.fp += c.fp;
        total.fn_ += c.fn_;
        total.tn += c.tn;
        let s = prf(&c);
        sp += s.precision;
        sr += s.recall;
        sf += s.f1;
        per.push((col, c, s));
    }
    let k = columns.len() as f64;
    Ok(CeReport {
        per_observation: per,
        micro: prf(&total),
        macro_: Prf {
            precision: sp / k,
            recall: sr / k,
            f1: sf / k,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observations::{BLANK, NEGATIVE, N_OBS};

    #[test]
    fn counts_and_scores() {
        let mut a = [BLANK; N_OBS];
        let mut b = [BLANK; N_OBS];
        a[2] = POSITIVE; // tp on Cardiomegaly
        b[2] = POSITIVE;
        a[10] = POSITIVE; // fp on effusion
        b[10] = NEGATIVE;
        b[9] = POSITIVE; // fn on pneumothorax
        a[9] = UNCERTAIN;
        let rep = ce_metrics(&[a], &[b], &[2, 9, 10], false).unwrap();
        assert_eq!(
            rep.per_observation[0].1,
            Counts {
                tp: 1,
                fp: 0,
                fn_: 0,
                tn: 0
            }
        );
        assert_eq!(
            rep.per_observation[1].1,
            Counts {
                tp: 0,
                fp: 0,
                fn_: 1,
                tn: 0
            }
        );
        assert_eq!(
            rep.per_observation[2].1,
            Counts {
                tp: 0,
                fp: 1,
                fn_: 0,
                tn: 0
            }
        );
        assert!((rep.micro.precision - 0.5).abs() < 1e-12);
        assert!((rep.micro.recall - 0.5).abs() < 1e-12);
        assert!((rep.macro_.f1 - 1.0 / 3.0).abs() < 1e-12);
        // Uncertain-as-positive turns the pneumothorax miss into a hit.
        let rep = ce_metrics(&[a], &[b], &[9], true).unwrap();
        assert_eq!(rep.per_observation[0].1.tp, 1);
    }

    #[test]
    fn side_aware_counts() {
        use crate::observations::{SIDE_BILATERAL, SIDE_LEFT, SIDE_RIGHT};
        let mut a = [BLANK; N_OBS];
        a[10] = POSITIVE;
        let rows = [a, a, a, a, a];
        let side = |s: i8| {
            let mut x = [0i8; N_OBS];
            x[10] = s;
            x
        };
        // same, unstated on one side, unstated on the other, wrong, bilateral vs left
        let ps = [
            side(SIDE_LEFT),
            side(0),
            side(SIDE_RIGHT),
            side(SIDE_RIGHT),
            side(SIDE_BILATERAL),
        ];
        let rs = [
            side(SIDE_LEFT),
            side(SIDE_LEFT),
            side(0),
            side(SIDE_LEFT),
            side(SIDE_LEFT),
        ];
        let rep = ce_metrics_sided(&rows, &rows, &ps, &rs, &[10], false).unwrap();
        let c = rep.per_observation[0].1;
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (3, 2, 2, 0));
        // without sides every pair is a hit
        let plain = ce_metrics(&rows, &rows, &[10], false).unwrap();
        assert_eq!(plain.per_observation[0].1.tp, 5);
        assert!(ce_metrics_sided(&rows, &rows, &ps[..2], &rs, &[10], false).is_err());
    }

    #[test]
    fn bad_input() {
        let a = [BLANK; N_OBS];
        assert!(ce_metrics(&[a], &[], &[0], false).is_err());
        assert!(ce_metrics(&[a], &[a], &[], false).is_err());
        assert!(ce_metrics(&[a], &[a], &[14], false).is_err());
    }
}
