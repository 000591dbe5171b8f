#!/usr/bin/env bash
# Install mrgfast into an existing (CUDA) torch environment WITHOUT replacing its torch.
#
#   bash scripts/install_into_env.sh                          # from this source tree (needs cargo)
#   bash scripts/install_into_env.sh --wheel mrgfast-*.whl    # from a built wheel (maturin build --release)
#   bash scripts/install_into_env.sh --flash --vllm 0.34.0    # also flash-attn, and the vLLM release built
#                                                             # for your torch (vLLM pins torch exactly)
#   bash scripts/install_into_env.sh --dry-run ...            # print what pip would install; change nothing
#
# PYTHON=/path/to/env/bin/python selects the environment (default: `python` on PATH). The torch, torchvision,
# torchaudio and triton already installed are written into a pip constraints file and every pip call below
# runs with it, so pip either keeps them or stops with ResolutionImpossible naming the conflict (e.g. a vLLM
# release built for another torch) — it never swaps your CUDA build for PyPI's. The script checks afterwards
# that they are unchanged. scripts/setup.sh is the other way in: a fresh .venv/ with the locked stack.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}

wheel="" flash=0 vllm="" dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --wheel) wheel=$2; shift 2 ;;
    --flash) flash=1; shift ;;
    --vllm) vllm=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) echo "install_into_env.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "install_into_env.sh: $PYTHON has no torch: install your CUDA torch first, or use scripts/setup.sh" \
    "(a fresh .venv/ with the locked versions)" >&2
  exit 2
fi
if [ -n "$wheel" ] && [ ! -f "$wheel" ]; then
  echo "install_into_env.sh: --wheel $wheel: no such file" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
keep="$work/keep-torch.txt"
"$PYTHON" -m pip freeze | grep -iE '^(torch|torchvision|torchaudio|triton)==' >"$keep" || true
echo "install_into_env.sh: keeping $(tr '\n' ' ' <"$keep")"

if [ -n "$wheel" ]; then
  target="$wheel[train]"
  build=()
else
  command -v cargo >/dev/null || { echo "install_into_env.sh: building from source needs cargo (rustup.rs)" >&2; exit 2; }
  target="$root[train]"
  # the environment's own maturin when it has one (no download of a build backend), else pip's isolated build
  build=()
  "$PYTHON" -c "import maturin" 2>/dev/null && build=(--no-build-isolation)
fi

step=0
pip_install() {  # pip install under the constraints; with --dry-run, report and list what would be installed
  step=$((step + 1))
  if [ "$dry" = 1 ]; then
    "$PYTHON" -m pip install -q --dry-run --report "$work/report-$step.json" -c "$keep" "$@"
    "$PYTHON" - "$work/report-$step.json" <<'EOF'
import json, sys
items = json.load(open(sys.argv[1]))["install"]
names = [f"{i['metadata']['name']} {i['metadata']['version']}" for i in items]
print("would install: " + (", ".join(names) or "nothing"))
EOF
  else
    "$PYTHON" -m pip install -c "$keep" "$@"
  fi
}

pip_install "${build[@]}" "$target"
[ "$flash" = 1 ] && FLASH_ATTENTION_SKIP_CUDA_BUILD=${FLASH_ATTENTION_SKIP_CUDA_BUILD:-FALSE} \
  pip_install --no-build-isolation flash-attn  # builds against the installed torch
[ -n "$vllm" ] && pip_install "vllm==$vllm"

"$PYTHON" -m pip freeze | grep -iE '^(torch|torchvision|torchaudio|triton)==' >"$work/after.txt" || true
if ! diff -q "$keep" "$work/after.txt" >/dev/null; then
  echo "install_into_env.sh: torch packages changed:" >&2
  diff "$keep" "$work/after.txt" >&2 || true
  exit 1
fi
echo "install_into_env.sh: done$([ "$dry" = 1 ] && echo ' (dry run: nothing installed)'); torch untouched"
