"""`write_report` and `fgdiag report`: real PNGs of the expected size, panels skipped with a note when their
metrics are absent, report.md / report.html that reference every image, and the overlay of two runs."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from logs_fixtures import hf_trainer_log, our_log, vad_log
from typer.testing import CliRunner

from fgdiag import read_log, write_report
from fgdiag.cli.app import app
from fgdiag.render.panels import DPI, FIGSIZE

SIZE = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))


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
        assert png_size(image) == SIZE
    html = result.html.read_text()
    md = result.markdown.read_text()
    for image in result.images:
        assert f'src="{image.name}"' in html and f"]({image.name})" in md
    assert "FGD201" in html and "FGD201" in md
    assert "<table>" in html and html.startswith("<!DOCTYPE html>")


def test_report_skips_panels_without_metrics(tmp_path):
    read = read_log(log(tmp_path, hf_trainer_log(), "hf.log"))
    result = write_report(read, tmp_path / "out")
    assert sorted(p.stem for p in result.images) == ["grad_norms", "losses"]
    assert any(note.startswith("region_loss: needs") for note in result.skipped)
    assert "skipped region_loss" in result.markdown.read_text()


def test_report_overlay_of_two_runs(tmp_path):
    a = read_log(log(tmp_path, our_log(), "a.log"))
    b = read_log(log(tmp_path, our_log(region=lambda s: 1.0), "b.log"))
    result = write_report({"fixed": a, "seed": b}, tmp_path / "cmp", title="fixed vs seed")
    assert (tmp_path / "cmp" / "region_loss.png").exists()
    md = result.markdown.read_text()
    assert md.startswith("# fixed vs seed") and "fixed: run" in md and "seed: run" in md


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
