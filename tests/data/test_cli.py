"""`fgdiag data-audit` through typer's runner and through a real subprocess, with its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from fgdiag.cli.app import app

from .data_helpers import DEFECTS, GRID, image_record

runner = CliRunner()


def test_clean_set_exits_0_with_json(embedded):
    result = runner.invoke(app, ["data-audit", str(embedded.images_json), "--json", "--grid-size", str(GRID)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["records"] == 24 and report["invalid"] == {}


def test_defective_set_exits_1_and_still_reports(defective):
    args = [
        "data-audit",
        str(defective.images_json),
        "--json",
        "--grid-size",
        str(GRID),
        "--test-list",
        str(defective.test_list),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["invalid"]["inverted"] == DEFECTS["inverted"]
    assert report["test_overlap"]["overlapping_records"] == 3
    assert "above --max-invalid-ratio" in result.stderr
    relaxed = runner.invoke(app, [*args, "--max-invalid-ratio", "0.5"])
    assert relaxed.exit_code == 0


def test_text_output_and_error_policy(defective):
    result = runner.invoke(app, ["data-audit", str(defective.videos_json), "--grid-size", str(GRID)])
    assert result.exit_code == 1
    assert "keyframe_beyond_video=3" in result.stdout and "abnormal records" in result.stdout
    strict = runner.invoke(app, ["data-audit", str(defective.images_json), "--policy", "error"])
    assert strict.exit_code == 1 and "invalid box" in strict.stderr and "(record" in strict.stderr


def test_unreadable_input_exits_2(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(image_record("a.png", [])) + "\n{oops\n")
    result = runner.invoke(app, ["data-audit", str(path), "--json"])
    assert result.exit_code == 2 and f"{path}:2" in result.stderr and result.stdout == ""
    missing = runner.invoke(app, ["data-audit", str(tmp_path / "none.json")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    bad_policy = runner.invoke(app, ["data-audit", str(path), "--policy", "fix"])
    assert bad_policy.exit_code == 2


def test_real_subprocess(defective, tmp_path):
    command = [sys.executable, "-m", "fgdiag.cli.app", "data-audit"]
    done = subprocess.run(
        [*command, str(defective.videos_jsonl), "--json", "--grid-size", str(GRID)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["invalid"]["no_keyframe"] == DEFECTS["no_keyframe"]
    assert "\x1b[" not in done.stderr  # no progress bar or colour when stderr is not a terminal
    broken = tmp_path / "broken.json"
    broken.write_text("[{]")
    done = subprocess.run([*command, str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "broken.json:1" in done.stderr


def test_command_module_does_not_import_torch():
    code = "import sys, fgdiag.cli.data_audit; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
