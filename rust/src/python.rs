//! Thin PyO3 layer: argument checking, GIL release around batch work, precise exceptions.
//! Arrays cross the boundary as little-endian bytes (int8 labels, float64 scores) that the
//! Python side views with `numpy.frombuffer`, so the extension stays abi3 and numpy-free.

use crate::batch::par_map;
use crate::labeler::label_report;
use crate::mccs::{mccs_labels, MccsParams, DEFAULT_MARGIN, DEFAULT_UNCERTAIN};
use crate::metrics::ce_metrics as ce_metrics_core;
use crate::observations::{Labels, BLANK, N_OBS, OBSERVATIONS};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// Owned copies of a sequence of str; TypeError names the argument and index of a non-str item.
fn texts(arg: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if arg.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a sequence of str, got a single str; wrap one report in a list"
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
            Ok(s) => out.push(s.to_cow()?.into_owned()),
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
    let rows = py.detach(|| par_map(&reports, threads, |t| label_report(t)));
    Ok(PyBytes::new(py, &labels_to_bytes(&run(rows)?)))
}

/// MCCS of generated[i] against references[i]; float64 bytes.
#[pyfunction]
#[pyo3(signature = (generated, references, margin=DEFAULT_MARGIN, uncertain=DEFAULT_UNCERTAIN, threads=None))]
fn mccs_pairs<'py>(
    py: Python<'py>,
    generated: &Bound<'py, PyAny>,
    references: &Bound<'py, PyAny>,
    margin: f64,
    uncertain: f64,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = params(margin, uncertain)?;
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
    let scores = py.detach(|| {
        par_map(&pairs, threads, |(a, b)| {
            mccs_labels(&label_report(a), &label_report(b), &p)
        })
    });
    Ok(PyBytes::new(py, &f64_bytes(&run(scores)?)))
}

/// MCCS of many completions against one reference, labelled once; float64 bytes.
#[pyfunction]
#[pyo3(signature = (generated, reference, margin=DEFAULT_MARGIN, uncertain=DEFAULT_UNCERTAIN, threads=None))]
fn mccs_group<'py>(
    py: Python<'py>,
    generated: &Bound<'py, PyAny>,
    reference: &Bound<'py, PyAny>,
    margin: f64,
    uncertain: f64,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = params(margin, uncertain)?;
    let g = texts(generated, "generated")?;
    let reference: String = reference
        .cast::<PyString>()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "reference must be str, got {}",
                type_name(reference)
            ))
        })?
        .to_cow()?
        .into_owned();
    let scores = py.detach(|| {
        let r = label_report(&reference);
        par_map(&g, threads, |a| mccs_labels(&label_report(a), &r, &p))
    });
    Ok(PyBytes::new(py, &f64_bytes(&run(scores)?)))
}

/// MCCS from label rows (n×14 int8 bytes each); float64 bytes.
#[pyfunction]
#[pyo3(signature = (generated, references, margin=DEFAULT_MARGIN, uncertain=DEFAULT_UNCERTAIN))]
fn mccs_from_labels<'py>(
    py: Python<'py>,
    generated: &[u8],
    references: &[u8],
    margin: f64,
    uncertain: f64,
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
    let scores: Vec<f64> = g
        .iter()
        .zip(&r)
        .map(|(a, b)| mccs_labels(a, b, &p))
        .collect();
    Ok(PyBytes::new(py, &f64_bytes(&scores)))
}

type PerObservation = (usize, u64, u64, u64, u64, f64, f64, f64);
/// (precision, recall, f1)
type Prf = (f64, f64, f64);

/// CE metrics from label rows: (per-observation rows, micro (p, r, f1), macro (p, r, f1)).
#[pyfunction]
#[pyo3(signature = (predicted, references, columns, uncertain_positive=false))]
fn ce_metrics(
    predicted: &[u8],
    references: &[u8],
    columns: Vec<usize>,
    uncertain_positive: bool,
) -> PyResult<(Vec<PerObservation>, Prf, Prf)> {
    let p = labels_from_bytes(predicted, "predicted")?;
    let r = labels_from_bytes(references, "references")?;
    let rep = run(ce_metrics_core(&p, &r, &columns, uncertain_positive))?;
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
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("RULES_SHA256", crate::labeler::RULES_SHA256)?;
    m.add_function(wrap_pyfunction!(label, m)?)?;
    m.add_function(wrap_pyfunction!(check_mccs_params, m)?)?;
    m.add_function(wrap_pyfunction!(mccs_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(mccs_group, m)?)?;
    m.add_function(wrap_pyfunction!(mccs_from_labels, m)?)?;
    m.add_function(wrap_pyfunction!(ce_metrics, m)?)?;
    Ok(())
}
