//! Thin PyO3 layer: argument checking, GIL release around batch work, precise exceptions.
//! Arrays cross the boundary as little-endian bytes (int8 labels, float64 scores) that the
//! Python side views with `numpy.frombuffer`, so the extension stays abi3 and numpy-free.

use crate::labeler::{label_report, label_report_details};
use crate::mccs::{
    check_side_weight as check_side_weight_core, mccs_labels, mccs_plus_labels, MccsParams,
    DEFAULT_MARGIN, DEFAULT_SIDE_WEIGHT, DEFAULT_UNCERTAIN,
};
use crate::metrics::{ce_metrics as ce_metrics_core, ce_metrics_sided, Sides};
use crate::observations::{Labels, BLANK, DEGREE_NAMES, N_OBS, OBSERVATIONS, SIDED, SIDE_NAMES};
use crate::pool::{par_map_py, MAX_THREADS};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

/// Owned copies of a sequence of str; TypeError names the argument and index of a non-str item.
fn texts(arg: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if arg.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a sequence of str, got a single str; wrap one report in a list"
        )));
    }
    if arg.is_instance_of::<PyBytes>() || arg.is_instance_of::<PyByteArray>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a sequence of str, got {}; decode it to str first",
            type_name(arg)
        )));
    }
    let iter = arg.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a sequence of str, got {}",
            type_name(arg)
        ))
    })?;
    let mut out = Vec::with_capacity(arg.len().unwrap_or(0));
    for (i, item) in iter.enumerate() {
        let item = item?;
        match item.cast::<PyString>() {
            Ok(s) => out.push(
                s.to_cow()
                    .map_err(|e| {
                        PyValueError::new_err(format!("{name}[{i}] is not valid text: {e}"))
                    })?
                    .into_owned(),
            ),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "{name}[{i}] must be str, got {}",
                    type_name(&item)
                )))
            }
        }
    }
    Ok(out)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an unknown type".to_string())
}

fn params(margin: f64, uncertain: f64) -> PyResult<MccsParams> {
    MccsParams::new(margin, uncertain).map_err(PyValueError::new_err)
}

/// The engine's MCCS parameter check, so every Python caller refuses the same values with the same words.
#[pyfunction]
fn check_mccs_params(margin: f64, uncertain: f64) -> PyResult<()> {
    params(margin, uncertain).map(|_| ())
}

fn labels_from_bytes(buf: &[u8], name: &str) -> PyResult<Vec<Labels>> {
    if buf.len() % N_OBS != 0 {
        return Err(PyValueError::new_err(format!(
            "{name} must hold rows of {N_OBS} int8 codes, got {} bytes",
            buf.len()
        )));
    }
    let mut rows = Vec::with_capacity(buf.len() / N_OBS);
    for (r, chunk) in buf.chunks_exact(N_OBS).enumerate() {
        let mut row = [BLANK; N_OBS];
        for (c, (&b, slot)) in chunk.iter().zip(row.iter_mut()).enumerate() {
            let code = b as i8;
            if !matches!(code, 1 | 0 | -1 | BLANK) {
                return Err(PyValueError::new_err(format!(
                    "{name}[{r}, {c}] ({}) is {code}, not a code (1, 0, -1 or blank {BLANK})",
                    OBSERVATIONS[c]
                )));
            }
            *slot = code;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Side rows (n×14 int8 codes 0..=3) from bytes; `name` names the argument in errors.
fn sides_from_bytes(buf: &[u8], name: &str) -> PyResult<Vec<Sides>> {
    if buf.len() % N_OBS != 0 {
        return Err(PyValueError::new_err(format!(
            "{name} must hold rows of {N_OBS} int8 side codes, got {} bytes",
            buf.len()
        )));
    }
    let mut rows = Vec::with_capacity(buf.len() / N_OBS);
    for (r, chunk) in buf.chunks_exact(N_OBS).enumerate() {
        let mut row = [0i8; N_OBS];
        for (c, (&b, slot)) in chunk.iter().zip(row.iter_mut()).enumerate() {
            let code = b as i8;
            if !(0..=3).contains(&code) {
                return Err(PyValueError::new_err(format!(
                    "{name}[{r}, {c}] ({}) is {code}, not a side code (0 none, 1 left, 2 right, 3 bilateral)",
                    OBSERVATIONS[c]
                )));
            }
            *slot = code;
        }
        rows.push(row);
    }
    Ok(rows)
}

fn side_weight(w: f64) -> PyResult<f64> {
    check_side_weight_core(w).map_err(PyValueError::new_err)
}

/// The engine's MCCS+ side-weight check (0 < side_weight < 1).
#[pyfunction]
fn check_side_weight(side_weight: f64) -> PyResult<()> {
    check_side_weight_core(side_weight)
        .map(|_| ())
        .map_err(PyValueError::new_err)
}

fn labels_to_bytes(rows: &[Labels]) -> Vec<u8> {
    rows.iter()
        .flat_map(|r| r.iter().map(|&c| c as u8))
        .collect()
}

fn f64_bytes(xs: &[f64]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn run<T>(r: Result<T, String>) -> PyResult<T> {
    r.map_err(PyValueError::new_err)
}

/// Label reports; returns n×14 int8 codes as bytes.
#[pyfunction]
#[pyo3(signature = (reports, threads=None))]
fn label<'py>(
    py: Python<'py>,
    reports: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let reports = texts(reports, "reports")?;
    let rows = par_map_py(py, &reports, threads, |t| label_report(t))?;
    Ok(PyBytes::new(py, &labels_to_bytes(&rows)))
}

/// Label reports with details; returns (codes, sides, degrees), each len(reports)×14 int8 bytes.
#[pyfunction]
#[pyo3(signature = (reports, threads=None))]
fn label_details<'py>(
    py: Python<'py>,
    reports: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<(
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
)> {
    let reports = texts(reports, "reports")?;
    let rows = par_map_py(py, &reports, threads, |t| label_report_details(t))?;
    let n = rows.len() * N_OBS;
    let (mut codes, mut sides, mut degrees) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for d in &rows {
        codes.extend(d.labels.iter().map(|&c| c as u8));
        sides.extend(d.sides.iter().map(|&c| c as u8));
        degrees.extend(d.degrees.iter().map(|&c| c as u8));
    }
    Ok((
        PyBytes::new(py, &codes),
        PyBytes::new(py, &sides),
        PyBytes::new(py, &degrees),
    ))
}

/// MCCS of a pair of texts: plain, or MCCS+ (`sides`) from the labeler's details.
#[inline]
fn mccs_texts(a: &str, b: &str, p: &MccsParams, sides: Option<f64>) -> f64 {
    match sides {
        None => mccs_labels(&label_report(a), &label_report(b), p),
        Some(w) => {
            let (g, r) = (label_report_details(a), label_report_details(b));
            mccs_plus_labels(&g.labels, &g.sides, &r.labels, &r.sides, p, w)
        }
    }
}

/// MCCS of generated[i] against references[i]; float64 bytes. `sides=True`: MCCS+.
#[pyfunction]
#[pyo3(signature = (generated, references, margin=DEFAULT_MARGIN, uncertain=DEFAULT_UNCERTAIN, threads=None, sides=false, side_weight=DEFAULT_SIDE_WEIGHT))]
#[allow(clippy::too_many_arguments)]
fn mccs_pairs<'py>(
    py: Python<'py>,
    generated: &Bound<'py, PyAny>,
    references: &Bound<'py, PyAny>,
    margin: f64,
    uncertain: f64,
    threads: Option<usize>,
    sides: bool,
    side_weight: f64,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = params(margin, uncertain)?;
    let plus = if sides {
        Some(self::side_weight(side_weight)?)
    } else {
        None
    };
    let g = texts(generated, "generated")?;
    let r = texts(references, "references")?;
    if g.len() != r.len() {
        return Err(PyValueError::new_err(format!(
            "generated and references differ in length: {} vs {}",
            g.len(),
            r.len()
        )));
    }
    let pairs: Vec<(&String, &String)> = g.iter().zip(r.iter()).collect();
    let scores = par_map_py(py, &pairs, threads, |(a, b)| mccs_texts(a, b, &p, plus))?;
    Ok(PyBytes::new(py, &f64_bytes(&scores)))
}

/// MCCS of many completions against one reference, labelled once; float64 bytes. `sides=True`:
/// MCCS+.
#[pyfunction]
#[pyo3(signature = (generated, reference, margin=DEFAULT_MARGIN, uncertain=DEFAULT_UNCERTAIN, threads=None, sides=false, side_weight=DEFAULT_SIDE_WEIGHT))]
#[allow(clippy::too_many_arguments)]
fn mccs_group<'py>(
    py: Python<'py>,
    generated: &Bound<'py, PyAny>,
    reference: &Bound<'py, PyAny>,
    margin: f64,
    uncertain: f64,
    threads: Option<usize>,
    sides: bool,
    side_weight: f64,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = params(margin, uncertain)?;
    let plus = if sides {
        Some(self::side_weight(side_weight)?)
    } else {
        None
    };
    let g = texts(generated, "generated")?;
    let reference: String = reference
        .cast::<PyString>()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "reference must be str, got {}",
                type_name(reference)
            ))
        })?
        .to_cow()
        .map_err(|e| PyValueError::new_err(format!("reference is not valid text: {e}")))?
        .into_owned();
    let scores = match plus {
        None => {
            let r = py.detach(|| label_report(&reference));
            par_map_py(py, &g, threads, |a| mccs_labels(&label_report(a), &r, &p))?
        }
        Some(w) => {
            let r = py.detach(|| label_report_details(&reference));
            par_map_py(py, &g, threads, |a| {
                let d = label_report_details(a);
                mccs_plus_labels(&d.labels, &d.sides, &r.labels, &r.sides, &p, w)
            })?
        }
    };
    Ok(PyBytes::new(py, &f64_bytes(&scores)))
}

/// MCCS from label rows (n×14 int8 bytes each); float64 bytes. With both side arrays (n×14
/// int8 side codes each): MCCS+.
#[pyfunction]
#[pyo3(signature = (generated, references, margin=DEFAULT_MARGIN, uncertain=DEFAULT_UNCERTAIN, generated_sides=None, reference_sides=None, side_weight=DEFAULT_SIDE_WEIGHT))]
#[allow(clippy::too_many_arguments)]
fn mccs_from_labels<'py>(
    py: Python<'py>,
    generated: &[u8],
    references: &[u8],
    margin: f64,
    uncertain: f64,
    generated_sides: Option<&[u8]>,
    reference_sides: Option<&[u8]>,
    side_weight: f64,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = params(margin, uncertain)?;
    let g = labels_from_bytes(generated, "generated")?;
    let r = labels_from_bytes(references, "references")?;
    if g.len() != r.len() {
        return Err(PyValueError::new_err(format!(
            "generated and references differ in length: {} vs {} rows",
            g.len(),
            r.len()
        )));
    }
    let scores: Vec<f64> = match (generated_sides, reference_sides) {
        (None, None) => g
            .iter()
            .zip(&r)
            .map(|(a, b)| mccs_labels(a, b, &p))
            .collect(),
        (Some(gs), Some(rs)) => {
            let w = self::side_weight(side_weight)?;
            let gs = sides_from_bytes(gs, "generated_sides")?;
            let rs = sides_from_bytes(rs, "reference_sides")?;
            if gs.len() != g.len() || rs.len() != r.len() {
                return Err(PyValueError::new_err(format!(
                    "generated_sides and reference_sides must have one row per report: {} and {} rows for {} reports",
                    gs.len(),
                    rs.len(),
                    g.len()
                )));
            }
            (0..g.len())
                .map(|i| mccs_plus_labels(&g[i], &gs[i], &r[i], &rs[i], &p, w))
                .collect()
        }
        _ => {
            return Err(PyValueError::new_err(
                "MCCS+ needs both generated_sides and reference_sides (or neither, for MCCS)",
            ))
        }
    };
    Ok(PyBytes::new(py, &f64_bytes(&scores)))
}

type PerObservation = (usize, u64, u64, u64, u64, f64, f64, f64);
/// (precision, recall, f1)
type Prf = (f64, f64, f64);

/// CE metrics from label rows: (per-observation rows, micro (p, r, f1), macro (p, r, f1)). With
/// both side arrays: side-aware CE.
#[pyfunction]
#[pyo3(signature = (predicted, references, columns, uncertain_positive=false, predicted_sides=None, reference_sides=None))]
fn ce_metrics(
    predicted: &[u8],
    references: &[u8],
    columns: Vec<usize>,
    uncertain_positive: bool,
    predicted_sides: Option<&[u8]>,
    reference_sides: Option<&[u8]>,
) -> PyResult<(Vec<PerObservation>, Prf, Prf)> {
    let p = labels_from_bytes(predicted, "predicted")?;
    let r = labels_from_bytes(references, "references")?;
    let rep = match (predicted_sides, reference_sides) {
        (None, None) => run(ce_metrics_core(&p, &r, &columns, uncertain_positive))?,
        (Some(ps), Some(rs)) => {
            let ps = sides_from_bytes(ps, "predicted_sides")?;
            let rs = sides_from_bytes(rs, "reference_sides")?;
            run(ce_metrics_sided(
                &p,
                &r,
                &ps,
                &rs,
                &columns,
                uncertain_positive,
            ))?
        }
        _ => {
            return Err(PyValueError::new_err(
                "side-aware CE needs both predicted_sides and reference_sides (or neither)",
            ))
        }
    };
    let per = rep
        .per_observation
        .iter()
        .map(|(c, n, s)| (*c, n.tp, n.fp, n.fn_, n.tn, s.precision, s.recall, s.f1))
        .collect();
    Ok((
        per,
        (rep.micro.precision, rep.micro.recall, rep.micro.f1),
        (rep.macro_.precision, rep.macro_.recall, rep.macro_.f1),
    ))
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("OBSERVATIONS", OBSERVATIONS.to_vec())?;
    m.add("BLANK", BLANK)?;
    m.add("DEFAULT_MARGIN", DEFAULT_MARGIN)?;
    m.add("DEFAULT_UNCERTAIN", DEFAULT_UNCERTAIN)?;
    m.add("DEFAULT_SIDE_WEIGHT", DEFAULT_SIDE_WEIGHT)?;
    m.add("MAX_THREADS", MAX_THREADS)?;
    m.add("SIDE_NAMES", SIDE_NAMES.to_vec())?;
    m.add("DEGREE_NAMES", DEGREE_NAMES.to_vec())?;
    m.add(
        "SIDED_OBSERVATIONS",
        (0..N_OBS)
            .filter(|&i| SIDED[i])
            .map(|i| OBSERVATIONS[i])
            .collect::<Vec<_>>(),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("RULES_SHA256", crate::labeler::RULES_SHA256)?;
    m.add_function(wrap_pyfunction!(label, m)?)?;
    m.add_function(wrap_pyfunction!(label_details, m)?)?;
    m.add_function(wrap_pyfunction!(check_side_weight, m)?)?;
    m.add_function(wrap_pyfunction!(check_mccs_params, m)?)?;
    m.add_function(wrap_pyfunction!(mccs_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(mccs_group, m)?)?;
    m.add_function(wrap_pyfunction!(mccs_from_labels, m)?)?;
    m.add_function(wrap_pyfunction!(ce_metrics, m)?)?;
    Ok(())
}
