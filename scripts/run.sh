#!/usr/bin/env bash
# Install into .venv and run the main job: a diagnostic training run on the embedded data (plus the seed's
# broken configuration beside it), with its report in runs/embedded/report/.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[video]"
fgdiag run --compare seed --out runs/embedded "$@"
