#!/usr/bin/env bash
# Install into .venv and run the main job: a diagnostic training run on the embedded data, with its report.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[test]"
if ! fgdiag run --help >/dev/null 2>&1; then
  echo "fgdiag run is not built yet (issue 8); nothing to run." >&2
  exit 2
fi
fgdiag run --out runs/embedded "$@"
