"""--quarantine moves stale checkpoints aside with a manifest, asks first, and never deletes anything."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fgdiag.static.quarantine
from fgdiag.check import check_paths
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


# --- robustness (issue 14 item 7) ---------------------------------------------------------------------------


def _immutable(folder: Path) -> bool:
    """Make `folder` refuse new entries: chmod when not root, `chattr +i` as root; False if neither holds."""
    folder.chmod(0o555)
    probe = folder / ".probe"
    try:
        probe.mkdir()
    except OSError:
        return True
    probe.rmdir()
    folder.chmod(0o755)
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    return done.returncode == 0


def test_quarantine_folder_that_cannot_be_made_exits_2(out: Path) -> None:
    """Before: a FileExistsError / PermissionError traceback from mkdir."""
    (out / "quarantine").write_text("a file in the way\n")
    before = tree(out)
    result = CliRunner().invoke(app, ["check-config", FIXED, str(out), "--quarantine", "--yes"])
    assert result.exit_code == 2 and "cannot make the quarantine folder" in result.stderr
    assert f"{out / 'quarantine'}" in result.stderr and "nothing was moved" in result.stderr
    assert tree(out) == before and "Traceback" not in result.output
    (out / "quarantine").rename(out / "quarantine.txt")
    if not _immutable(out):
        pytest.skip("cannot make a read-only folder here")
    try:
        result = CliRunner().invoke(app, ["check-config", FIXED, str(out), "--quarantine", "--yes"])
        assert result.exit_code == 2 and "cannot make the quarantine folder" in result.stderr
        assert (out / "checkpoint-20").is_dir()
    finally:
        subprocess.run(["chattr", "-i", str(out)], capture_output=True)
        out.chmod(0o755)


def test_symlinked_checkpoint_is_moved_as_the_link_and_restored(tmp_path: Path) -> None:
    """Before: the manifest recorded the link's target, so `restore` never brought back out/checkpoint-20."""
    elsewhere = b.seed_checkpoint(tmp_path / "disk2", 20)
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint-20").symlink_to(elsewhere, target_is_directory=True)
    target_bytes = tree(elsewhere)
    result = CliRunner().invoke(app, ["check-config", FIXED, str(out), "--quarantine", "--yes"])
    assert result.exit_code == 1, result.output
    [folder] = list((out / "quarantine").iterdir())
    [entry] = json.loads((folder / "MANIFEST.json").read_text())["entries"]
    assert entry["original_path"] == str(out.resolve() / "checkpoint-20")
    assert entry["quarantined_path"] == str(folder.resolve() / "checkpoint-20")
    assert entry["symlink_to"] == str(elsewhere) and (folder / "checkpoint-20").is_symlink()
    assert not (out / "checkpoint-20").exists() and tree(elsewhere) == target_bytes  # the target stays put
    subprocess.run(entry["restore"], shell=True, check=True)
    assert (out / "checkpoint-20").is_symlink() and (out / "checkpoint-20").resolve() == elsewhere.resolve()


def test_non_numeric_checkpoint_is_flagged_and_the_output_says_why_it_stays(tmp_path: Path) -> None:
    """Before: checkpoint-best was flagged FGD401 and silently left where it was."""
    out = tmp_path / "out"
    b.seed_checkpoint(out, 20).rename(out / "checkpoint-best")
    result = CliRunner().invoke(app, ["check-config", FIXED, str(out), "--quarantine", "--yes"])
    assert result.exit_code == 1 and "FGD401" in result.stdout
    assert (
        f"{out / 'checkpoint-best'}: not moved: only checkpoint-<number> folders are resumed" in result.stdout
    )
    assert (out / "checkpoint-best").is_dir() and not (out / "quarantine").exists()


KILLER = """
import os, signal, sys
from pathlib import Path
import fgdiag.static.quarantine as q
from fgdiag.check import check_paths

point, after = sys.argv[3], int(sys.argv[4])
calls = {"rename": 0, "replace": 0}
real_rename, real_replace = os.rename, os.replace

def rename(src, dst):
    real_rename(src, dst)
    calls["rename"] += 1
    if point == "after-rename" and calls["rename"] == after:
        os.kill(os.getpid(), signal.SIGKILL)  # moved, not yet recorded

def replace(src, dst):
    calls["replace"] += 1
    if point == "before-replace" and calls["replace"] == after:
        os.kill(os.getpid(), signal.SIGKILL)  # the next manifest written to .partial, not yet in place
    real_replace(src, dst)

q.os.rename, q.os.replace = rename, replace
findings, _ = check_paths([sys.argv[1], sys.argv[2]])
items, _ = q.candidates(findings)
q.quarantine(items)
"""


@pytest.mark.parametrize(("point", "after"), [("after-rename", 2), ("before-replace", 3)])
def test_kill_9_mid_quarantine_leaves_no_pending_entry(tmp_path: Path, point: str, after: int) -> None:
    """A real SIGKILL in the middle of moving four stale checkpoints: the manifest is valid JSON, lists
    only moved folders (none `pending`), every byte is still on disk, and check-config reports the folder
    moved but not yet recorded."""
    out = tmp_path / "out"
    for step in (10, 20, 30, 40):
        b.seed_checkpoint(out, step)
    before = tree(out)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run(
        [sys.executable, "-c", KILLER, FIXED, str(out), point, str(after)], env=env, capture_output=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    [folder] = list((out / "quarantine").iterdir())
    entries = json.loads((folder / "MANIFEST.json").read_text())["entries"]
    assert [e["status"] for e in entries] == ["moved"] * len(entries) and len(entries) < 4
    for entry in entries:
        assert Path(entry["quarantined_path"]).is_dir() and not Path(entry["original_path"]).exists()
    moved = sorted(p.name for p in folder.iterdir() if p.name.startswith("checkpoint-"))
    assert moved[: len(entries)] == [Path(e["original_path"]).name for e in entries]
    after_tree = {k.split("/", 2)[-1] if k.startswith("quarantine/") else k: v for k, v in tree(out).items()}
    assert {k: v for k, v in after_tree.items() if "MANIFEST" not in k} == before  # nothing lost
    _, summary = check_paths([FIXED, out])
    [note] = [n for n in summary["notes"] if "MANIFEST.json" in n]
    unlisted = [name for name in moved if name not in {Path(e["original_path"]).name for e in entries}]
    assert all(f"{name} is not in the manifest" in note for name in unlisted) and unlisted
