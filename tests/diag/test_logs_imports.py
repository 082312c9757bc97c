"""`import fgdiag` and the log-reading API stay light: no torch, no pandas until a frame is asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def loaded_after(code: str) -> set[str]:
    probe = (
        code + "\nimport json, sys\nprint(json.dumps([m for m in ('torch', 'pandas', 'matplotlib', 'rich') "
        "if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_logs_import_fgdiag_is_light():
    assert loaded_after("import fgdiag") == set()


def test_logs_read_log_without_pandas_until_metrics(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("{'loss': 1.0, 'grad_norm': 1.0}\n")
    code = f"import fgdiag\nr = fgdiag.read_log({str(log)!r})\nassert r.rows"
    assert loaded_after(code) == set()
    assert "pandas" in loaded_after(code + "\nr.metrics")
