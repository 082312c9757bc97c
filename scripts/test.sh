#!/usr/bin/env bash
# Install into a fresh virtual environment (.venv) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[test]"
ruff check fgclip fgdiag tests benchmarks examples scripts
ruff format --check fgclip fgdiag tests benchmarks examples scripts
mypy fgdiag fgclip
python scripts/check_layers.py
python -m pytest -q -p no:cacheprovider tests
