#!/usr/bin/env bash
# Set up mrgfast from a fresh clone: a virtualenv in .venv/, the dependencies, and the package
# installed editable with its Rust extension built in release mode. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# maturin builds the extension (release profile, abi3) during the editable install.
.venv/bin/python -m pip install -q maturin
.venv/bin/python -m pip install -q -e ".[train,test]"
.venv/bin/python -c "import mrgfast, mrgfast._core, mrgfast.kernels; print('mrgfast', mrgfast.__version__, 'ready in .venv/')"
