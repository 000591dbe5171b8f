#!/usr/bin/env bash
# The whole test suite: the Rust engine's own tests, then pytest (CPU only, no downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

cargo test --quiet
# pytest exits 5 when it collects no test: that is a failure here too (set -e).
.venv/bin/python -m pytest -q "$@"
