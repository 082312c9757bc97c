#!/usr/bin/env bash
# Install into .venv and run the main job: pretrain a tiny CLIP on the embedded data (once per machine), then
# fine-tune it with the fixed settings and, side by side, with the seed's settings as the user's run had them,
# with the runtime diagnostics on; the report goes to runs/embedded/report/. A rerun moves the earlier run into
# runs/embedded/previous/<stamp>/ (--overwrite: never deleted, never mixed with the new one).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[video]"
installed=$SECONDS
status=0
fgdiag run --compare seed --out runs/embedded --overwrite "$@" || status=$?
echo "run.sh: install $((installed - start)) s, pretraining + training + report $((SECONDS - installed)) s" \
    "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a))" >&2
exit $status
