#!/usr/bin/env bash
# Mirror kernels/*.py into mrgfast/kernels/ as file links, so the wheel ships them as mrgfast.kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -L mrgfast/kernels ]; then rm mrgfast/kernels; fi
mkdir -p mrgfast/kernels
for link in mrgfast/kernels/*.py; do
  if [ -L "$link" ] && [ ! -e "$link" ]; then rm "$link"; fi   # its source file was removed
done
for src in kernels/*.py; do
  ln -sfn "../../$src" "mrgfast/kernels/$(basename "$src")"
done
