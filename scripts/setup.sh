#!/usr/bin/env bash
# Set up mrgfast from a fresh clone: a virtualenv in .venv/, the dependencies, and the package
# installed editable with its Rust extension built in release mode. Safe to run again.
#
#   bash scripts/setup.sh            # the exact versions of requirements/lock.txt (what CI tests)
#   bash scripts/setup.sh --latest   # the newest versions within pyproject's ranges, resolved now
#                                    # (also MRGFAST_LATEST=1); the resolution is kept in .venv/latest-lock.txt
#
# Either way the environment is made to equal one lock: packages it does not name are uninstalled, and
# scripts/lockcheck.py checks every installed version against it before the set-up reports ready.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

mode=lock
[ "${MRGFAST_LATEST:-0}" = "1" ] && mode=latest
for arg in "$@"; do
  case "$arg" in
    --latest) mode=latest ;;
    --locked) mode=lock ;;
    *) echo "setup.sh: unknown argument $arg (use --latest or --locked)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
py=.venv/bin/python

lock=requirements/lock.txt
if [ "$mode" = latest ]; then
  lock=.venv/latest-lock.txt
  PYTHON="$PYTHON" bash scripts/lock.sh --out "$lock"  # uv's resolution of the same inputs, newest versions
fi

# pip itself first (the lock's version), then every package at its locked version and hash. --no-deps:
# the lock is complete (every dependency is a line of it), and verl/OpenRLHF are locked without theirs.
pip_version=$(sed -n 's/^pip==\([^ ;\\]*\).*/\1/p' "$lock" | head -n 1)
$py -m pip install -q "pip==$pip_version"
# pip's HTTP cache may hold an index page older than the lock (seen 2026-12-04: regex 2026.12.2, two days old,
# "not found" through the cache, installed without it): on a failure, read the index afresh once.
$py -m pip install -q --require-hashes --no-deps -r "$lock" \
  || { echo "setup.sh: retrying without pip's cache" >&2; $py -m pip install -q --no-cache-dir --require-hashes --no-deps -r "$lock"; }
stray=$($py scripts/lockcheck.py --lock "$lock" --extras)
if [ -n "$stray" ]; then
  echo "setup.sh: removing packages the lock does not name: $(echo "$stray" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  $py -m pip uninstall -q -y $stray
fi

# The package, editable: maturin (the locked one, no build isolation) builds the extension, release profile,
# abi3. Its .pth puts the repository root on sys.path; the only regular package there is mrgfast/ (kernels/,
# tests/ and bench/ hold no __init__.py, so they never shadow an installed package of the same name).
$py -m pip install -q --no-deps --no-build-isolation -e .

$py scripts/lockcheck.py --lock "$lock" --freeze --exact
$py - "$mode" "$lock" <<'EOF'
import hashlib, json, os, sys
mode, lock = sys.argv[1:]
record = {"mode": mode, "lock": lock, "lock_sha256": hashlib.sha256(open(lock, "rb").read()).hexdigest()}
tmp = f".venv/mrgfast-setup.json.tmp-{os.getpid()}"
with open(tmp, "w") as fh:
    json.dump(record, fh, indent=1)
os.replace(tmp, ".venv/mrgfast-setup.json")  # what tests/test_lock.py compares the environment with
EOF

cd /tmp && "$root/.venv/bin/python" -c "
import mrgfast, mrgfast._core, mrgfast.kernels
print('mrgfast', mrgfast.__version__, 'ready in .venv/ ($mode: $lock)')"
