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

# kernels/ is importable only as mrgfast.kernels: mrgfast/kernels/ holds one link per source file
# (wheel builders follow file links, not directory links).
bash scripts/link_kernels.sh

# maturin builds the extension (release profile, abi3) during the editable install.
.venv/bin/python -m pip install -q -e ".[train,test]"

# maturin's editable install puts the repository root on sys.path, which would make kernels/,
# tests/ and bench/ importable as top-level packages (and shadow Hugging Face's `kernels`).
# Point it at a folder that holds only a link to the mrgfast package instead.
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
mkdir -p .venv/mrgfast-src
ln -sfn "$root/mrgfast" .venv/mrgfast-src/mrgfast
echo "$root/.venv/mrgfast-src" > "$site/mrgfast.pth"

cd /tmp && "$root/.venv/bin/python" -c "
import importlib.util, mrgfast, mrgfast._core, mrgfast.kernels
assert importlib.util.find_spec('kernels') is None or 'mrgfast' not in (importlib.util.find_spec('kernels').origin or '')
print('mrgfast', mrgfast.__version__, 'ready in .venv/')"
