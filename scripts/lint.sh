#!/usr/bin/env bash
# Linters and formatters, as CI runs them before the tests (configuration in pyproject.toml and Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
cargo fmt --check
cargo clippy --quiet --all-targets -- -D warnings
PYO3_PYTHON="$(pwd)/.venv/bin/python" cargo clippy --quiet --all-targets --features python -- -D warnings
echo "lint: ruff, ruff format, cargo fmt, clippy clean"
