#!/usr/bin/env bash
# Set up mrgfast from a fresh clone: a virtualenv in .venv/, the dependencies, and the package
# installed editable with its Rust extension built in release mode. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q maturin

# maturin builds the extension (release profile, abi3) during the editable install. Its .pth puts the
# repository root on sys.path; the only regular package there is mrgfast/ (kernels/, tests/ and bench/
# hold no __init__.py, so they never shadow an installed package of the same name).
.venv/bin/python -m pip install -q -e ".[train,test,integrations]"
# The frameworks the integration tests run (tests/integrations), at the versions the README names.
# --no-deps: their requirements pin vLLM, flash-attn and CUDA builds; the light packages their
# code imports are in the integrations extra above.
.venv/bin/python -m pip install -q --no-deps "verl==0.9.1" "openrlhf==0.11.2"

cd /tmp && "$root/.venv/bin/python" -c "
import mrgfast, mrgfast._core, mrgfast.kernels
print('mrgfast', mrgfast.__version__, 'ready in .venv/')"
