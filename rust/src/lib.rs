//! mrgfast's reward engine: rule-based CheXpert finding extraction, the MCCS reward and
//! clinical-efficacy metrics. Pure Rust; the PyO3 layer in `python.rs` is a thin wrapper
//! compiled only with the `python` feature, so `cargo test` needs no Python.

pub mod batch;
pub mod labeler;
pub mod mccs;
pub mod metrics;
pub mod observations;
pub mod pool;

#[cfg(feature = "python")]
mod python;

pub use observations::{Labels, BLANK, N_OBS, OBSERVATIONS};
