"""The import layering stays: scripts/check_layers.py passes on the tree and catches what it must catch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_layers.py"


def run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, timeout=120, check=False
    )


def test_layers_tree_flows_one_way():
    result = run(REPO)
    assert result.returncode == 0, result.stdout
    assert "imports flow one way" in result.stdout


def copy_tree(tmp_path: Path) -> Path:
    for package in ("fgdiag", "fgclip"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_layers_catches_backward_arrows_circles_and_constants(tmp_path):
    root = copy_tree(tmp_path)
    append(root / "fgdiag" / "logs" / "ours.py", "\n\ndef _judge():\n    from fgdiag.rules import engine\n")
    append(root / "fgdiag" / "rules" / "data.py", "\nfrom fgdiag.static import inputs\n")
    append(root / "fgdiag" / "events.py", "\nfrom fgdiag import wire\n")
    append(root / "fgdiag" / "render" / "panels.py", "\nLN_100 = 4.6052\n")
    append(root / "fgclip" / "config.py", "\nimport fgdiag\n")
    result = run(root)
    assert result.returncode == 1
    out = result.stdout
    assert "fgdiag.logs.ours -> fgdiag.rules.engine" in out  # logs never reach the rules
    assert "fgdiag.rules.data -> fgdiag.static.inputs" in out  # rules judge facts, never read inputs
    assert "circle: fgdiag.events <-> fgdiag.wire" in out
    assert "LN_100 redefined" in out and "literal 4.6052" in out
    assert "fgclip.config -> fgdiag" in out
