#!/usr/bin/env bash
# Train on the embedded synthetic data with the runtime diagnostics on (2 CPU cores, a few minutes).
set -euo pipefail
export ENABLE_RUNTIME_DIAG=${ENABLE_RUNTIME_DIAG:-1}
python -m fgclip.train --preset embedded --output_dir "${OUT:-runs/embedded}" "$@" 2>&1 | tee "${OUT:-runs/embedded}.log"
