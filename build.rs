//! Validates `mrgfast/reference/rules.txt` with the labeler's own parser before the crate is
//! compiled, so a bad rule line fails `cargo build` / the maturin build with the file and line
//! (instead of a panic on the first `label()` call), and exports the file's SHA-256 as
//! `MRGFAST_RULES_SHA256` (the extension's `RULES_SHA256`).

#[allow(dead_code)]
#[path = "rust/src/observations.rs"]
mod observations;

#[allow(dead_code)]
#[path = "rust/src/labeler/rules.rs"]
mod rules;

use sha2::{Digest, Sha256};

const RULES_PATH: &str = "mrgfast/reference/rules.txt";

fn main() {
    println!("cargo:rerun-if-changed={RULES_PATH}");
    println!("cargo:rerun-if-changed=rust/src/labeler/rules.rs");
    println!("cargo:rerun-if-changed=rust/src/observations.rs");
    let bytes = match std::fs::read(RULES_PATH) {
        Ok(b) => b,
        Err(e) => fail(&format!("{RULES_PATH}: cannot read: {e}")),
    };
    let text = match String::from_utf8(bytes.clone()) {
        Ok(t) => t,
        Err(e) => fail(&format!("{RULES_PATH}: not UTF-8: {e}")),
    };
    if let Err(e) = rules::parse(&text) {
        // the parser's messages start with "line N: "
        let msg = e
            .strip_prefix("line ")
            .map(|rest| rest.replacen(": ", ": error: ", 1));
        match msg {
            Some(m) => fail(&format!("{RULES_PATH}:{m}")),
            None => fail(&format!("{RULES_PATH}: error: {e}")),
        }
    }
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=MRGFAST_RULES_SHA256={hex}");
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1);
}
