"""--quarantine moves stale checkpoints aside with a manifest, asks first, and never deletes anything."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fgdiag.static.quarantine
from fgdiag.cli.app import app

try:
    from .fixtures_check_config import builders as b
except ImportError:
    from fixtures_check_config import builders as b

FIXED = str(b.HERE / "fixed.toml")


def tree(root: Path) -> dict[str, bytes]:
    """Relative name -> content of every file below root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    b.seed_checkpoint(out, 20)
    b.fixed_checkpoint(out, 100)
    return out


def test_check_config_quarantine_moves_and_writes_manifest(out: Path) -> None:
    before = tree(out)
    result = CliRunner().invoke(app, ["check-config", FIXED, str(out), "--quarantine", "--yes", "--json"])
    assert result.exit_code == 1, result.output  # the findings stand; the fix was to move the checkpoint
    assert not (out / "checkpoint-20").exists() and (out / "checkpoint-100").is_dir()
    [folder] = list((out / "quarantine").iterdir())
    assert re.fullmatch(r"\d{8}T\d{6}Z", folder.name)
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    [entry] = manifest["entries"]
    assert entry["original_path"] == str((out / "checkpoint-20").resolve())
    assert entry["quarantined_path"] == str((folder / "checkpoint-20").resolve())
    assert entry["codes"] == ["FGD401"] and entry["status"] == "moved"
    assert entry["differences"][0]["field"] == "logit_scale_finegrained"
    assert entry["restore"].startswith("mv ")
    after = tree(out)
    moved = {
        k.replace(f"quarantine/{folder.name}/", ""): v
        for k, v in after.items()
        if k.startswith("quarantine/") and not k.endswith("MANIFEST.json")
    }
    kept = {k: v for k, v in after.items() if not k.startswith("quarantine/")}
    assert {**kept, **moved} == before  # every byte is still there
    summary = json.loads(result.stdout)["summary"]["quarantine"]
    assert summary["folders"][0]["moved"] == [entry["original_path"]]
    # a second run finds nothing stale left to move
    again = CliRunner().invoke(app, ["check-config", FIXED, str(out), "--quarantine", "--yes"])
    assert again.exit_code == 0 and "no stale checkpoint to move" in again.stdout


def test_check_config_quarantine_refuses_without_tty(out: Path) -> None:
    before = tree(out)
    result = CliRunner().invoke(app, ["check-config", FIXED, str(out), "--quarantine"])
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert tree(out) == before and not (out / "quarantine").exists()


def test_check_config_quarantine_asks_on_a_tty(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fgdiag.cli import check_config

    monkeypatch.setattr(check_config, "_interactive", lambda: True)
    before = tree(out)
    declined = CliRunner().invoke(app, ["check-config", FIXED, str(out), "--quarantine"], input="n\n")
    assert declined.exit_code == 1 and "declined" in declined.stdout
    assert tree(out) == before
    accepted = CliRunner().invoke(app, ["check-config", FIXED, str(out), "--quarantine"], input="y\n")
    assert accepted.exit_code == 1 and not (out / "checkpoint-20").exists()


def test_check_config_quarantine_code_never_deletes() -> None:
    """No deleting call anywhere in the check-config code."""
    root = Path(fgdiag.static.quarantine.__file__).parents[1]
    files = [
        root / "check.py",
        root / "cli" / "check_config.py",
        *sorted((root / "rules").glob("*.py")),
        *sorted((root / "static").glob("*.py")),
    ]
    pattern = re.compile(r"rmtree|\.unlink\(|os\.remove|os\.rmdir|\.rmdir\(|shutil\.move|send2trash")
    assert [str(f) for f in files if pattern.search(f.read_text())] == []
