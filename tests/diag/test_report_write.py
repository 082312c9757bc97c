"""`write_report` and `fgdiag report`: real PNGs of each panel's size, panels skipped with a note when their
metrics are absent, report.md / report.html (jinja2, autoescaped) that reference every image, the first
paragraph and the comparison of two runs, run names from folders, progress."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from logs_fixtures import hf_trainer_log, our_log, vad_log
from typer.testing import CliRunner

from fgdiag import read_log, write_report
from fgdiag.cli.app import app
from fgdiag.render.panels import PANELS

SIZES = {p.name: p.pixels for p in PANELS}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def log(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_report_all_panels_from_fgclip_vad_log(tmp_path):
    read = read_log(
        log(tmp_path, vad_log(steps=30, ga=2, bank_at=10, zero_every=5), "vad.log"), targets="ucf"
    )
    result = write_report(read, tmp_path / "out")
    names = sorted(p.stem for p in result.images)
    assert names == ["grad_norms", "logit_ranges", "logit_scales", "losses", "memory_bank", "region_loss"]
    for image in result.images:
        assert png_size(image) == SIZES[image.stem], image
    html = result.html.read_text()
    md = result.markdown.read_text()
    for image in result.images:
        assert f'src="{image.name}"' in html and f"]({image.name})" in md
    assert "FGD201" in html and "FGD201" in md
    assert "<table>" in html and html.startswith("<!DOCTYPE html>")
    assert "This run is failing." in html and "memory bank switched on only at step 10" in html


def test_report_skips_panels_without_metrics(tmp_path):
    read = read_log(log(tmp_path, hf_trainer_log(), "hf.log"))
    result = write_report(read, tmp_path / "out")
    assert sorted(p.stem for p in result.images) == ["grad_norms", "losses"]
    assert any(note.startswith("region_loss: needs") for note in result.skipped)
    assert "skipped region_loss" in result.markdown.read_text()


def test_report_overlay_of_two_runs(tmp_path):
    a = read_log(log(tmp_path, our_log(), "a.log"))
    at_chance = our_log(region=lambda s: math.log(132 if s >= 7 else 4))  # the loss never leaves ln K
    b = read_log(log(tmp_path, at_chance, "b.log"))
    result = write_report({"fixed": a, "seed": b}, tmp_path / "cmp", title="fixed vs seed")
    assert (tmp_path / "cmp" / "region_loss.png").exists()
    md = result.markdown.read_text()
    assert md.startswith("# fixed vs seed") and "### fixed" in md and "### seed" in md
    assert "The seed arm failed; the fixed arm passed." in md
    assert "The seed arm stays at chance level: its region loss ends within 10 % of ln K" in md
    assert "| region loss at the end, vs chance ln K |" in md  # the comparison is in the report itself


def test_report_html_escapes_what_the_log_says(tmp_path):
    """Autoescaping: a hostile message in a log is text on the page, never markup."""
    path = tmp_path / "events.jsonl"
    from fgdiag import events as ev

    writer = ev.EventWriter(path)
    writer.write(ev.run_record({"planned_steps": 10}))
    writer.write(ev.metrics_record(5, {ev.LOSS: 1.0}))
    writer.write(ev.event_record(5, ev.EVENT_CRASH, "<script>alert(1)</script> & <b>"))
    writer.close()
    result = write_report(read_log(path), tmp_path / "out", title="<i>t</i>")
    html = result.html.read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in html
    assert "<title>&lt;i&gt;t&lt;/i&gt;</title>" in html


def test_report_progress_is_called_per_panel(tmp_path):
    read = read_log(log(tmp_path, vad_log(steps=30, ga=2, bank_at=10), "vad.log"))
    calls = []
    result = write_report(
        read, tmp_path / "out", progress=lambda done, total, what: calls.append((done, total))
    )
    total = len(result.images) + 1
    assert calls == [(i, total) for i in range(total + 1)]


def test_report_cli_json_and_exit_codes(tmp_path):
    path = log(tmp_path, vad_log(steps=60, ga=2), "bad.log")
    runner = CliRunner()
    result = runner.invoke(
        app, ["report", str(path), "--out", str(tmp_path / "r"), "--targets", "ucf", "--json"]
    )
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["verdict"] == "failing" and len(data["report"]["images"]) == 6
    assert Path(data["report"]["html"]).exists()
    result = runner.invoke(
        app,
        [
            "report",
            str(log(tmp_path, our_log(), "ok.log")),
            "--out",
            str(tmp_path / "ok"),
            "--compare",
            str(path),
        ],
    )
    assert result.exit_code == 0 and "wrote" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "missing.log"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2


def test_report_compare_names_runs_by_their_folders(tmp_path):
    for name, region in (("fixed", None), ("seed", lambda s: 1.0)):
        (tmp_path / name).mkdir()
        log(tmp_path / name, our_log() if region is None else our_log(region=region), "training.log")
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(tmp_path / "fixed" / "training.log"),
            "--compare",
            str(tmp_path / "seed" / "training.log"),
            "--out",
            str(tmp_path / "r"),
            "--json",
        ],
    )
    assert result.exit_code in (0, 1), result.output
    md = (tmp_path / "r" / "report.md").read_text()
    assert "### fixed" in md and "### seed" in md and "training'" not in md


def test_report_never_imports_torch(tmp_path):
    import subprocess
    import sys

    path = log(tmp_path, vad_log(steps=20, ga=2, bank_at=10), "vad.log")
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['fgdiag', 'report', {str(path)!r}, '--out', {str(tmp_path / 'r')!r}, '--json']\n"
        "try:\n    runpy.run_module('fgdiag.cli.app', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('HEAVY=' + ','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in proc.stdout, proc.stdout[-500:] + proc.stderr[-2000:]
    assert (tmp_path / "r" / "report.html").is_file()
