"""audit() over generated sets with planted defects: the counts must be exactly the planted ones."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from fgclip.data import stream
from fgclip.data.audit import audit, read_test_list
from fgclip.data.errors import BoxValidationError, DataFormatError
from fgclip.data.reader import iter_raw_records
from fgclip.data.synthetic import IMAGE_DEFECTS, VIDEO_DEFECTS

from .data_helpers import DEFECTS, GRID, image_record, write_records

IMAGE_INVALID = {k: v for k, v in DEFECTS.items() if k in IMAGE_DEFECTS and k != "clipped"}
VIDEO_INVALID = {k: v for k, v in DEFECTS.items() if k in VIDEO_DEFECTS}


def test_image_audit_reports_exactly_the_planted_defects(defective):
    result = audit(defective.images_json, grid_size=GRID, test_list=defective.test_list)
    truth = defective.truth
    assert result["format"] == "image" and result["records"] == truth["images"] == 30
    assert result["boxes"] == truth["image_boxes"]
    assert result["invalid"] == IMAGE_INVALID and result["dropped"] == IMAGE_INVALID
    assert result["clipped"] == DEFECTS["clipped"] and result["repaired"] == 0
    assert result["invalid_total"] == sum(IMAGE_INVALID.values())
    assert result["invalid_ratio"] == pytest.approx(sum(IMAGE_INVALID.values()) / truth["image_boxes"])
    assert sum(result["boxes_per_sample"].values()) == 30
    kept = sum(int(k) * v for k, v in result["boxes_per_sample"].items())
    assert kept == truth["image_boxes"] - result["invalid_total"]
    assert result["missing_media"] == 0
    overlap = result["test_overlap"]
    assert overlap["overlapping_records"] == 3 and overlap["test_items"] == 4
    json.dumps(result)  # JSON-ready


def test_video_audit_reports_exactly_the_planted_defects(defective):
    result = audit(defective.videos_jsonl, grid_size=GRID)
    truth = defective.truth
    assert result["format"] == "video" and result["records"] == truth["videos"]
    assert result["boxes"] == truth["video_boxes"]
    assert result["invalid"] == VIDEO_INVALID
    assert result["regions_dropped"] == {"no_keyframe": DEFECTS["no_keyframe"]}
    assert result["abnormal_records"] == truth["abnormal_videos"]
    assert result["normal_records"] == truth["videos"] - truth["abnormal_videos"]
    without_media = audit(defective.videos_jsonl, grid_size=GRID, check_media=False)
    assert without_media["invalid"] == {
        "no_keyframe": DEFECTS["no_keyframe"]
    }  # lengths unknown: no range check


def test_clean_set_and_policies(embedded, defective):
    clean = audit(embedded.images_jsonl, grid_size=GRID)
    assert clean["invalid"] == {} and clean["invalid_ratio"] == 0.0 and clean["clipped"] == 0
    assert clean["hard_boxes"] > 0
    clipped = audit(defective.images_jsonl, grid_size=GRID, policy="clip")
    assert clipped["invalid"] == IMAGE_INVALID  # what is wrong does not depend on the policy
    assert clipped["repaired"] == DEFECTS["out_of_range"] and "out_of_range" not in clipped["dropped"]
    with pytest.raises(BoxValidationError):
        audit(defective.images_jsonl, grid_size=GRID, policy="error")
    assert audit(defective.images_jsonl)["invalid"].get("sub_cell") is None  # no grid: no sub-cell check


def test_caption_repetition_and_truncation(tmp_path, one_image):
    records = [image_record(one_image, [[0.1, 0.1, 0.5, 0.5]] * 5) for _ in range(3)]
    path = write_records(tmp_path / "d.json", records)
    result = audit(path, max_boxes_per_sample=4, top_k=2)
    global_rep = result["caption_repetition"]["global"]
    assert (
        global_rep["top"] == [{"caption": records[0]["caption"], "count": 3}] and global_rep["distinct"] == 1
    )
    region_rep = result["caption_repetition"]["region"]
    assert len(region_rep["top"]) == 2 and region_rep["top"][0]["count"] == 3 and region_rep["total"] == 15
    assert result["truncated_regions"] == 3 and result["boxes_per_sample"] == {"5": 3}


def test_missing_media_and_unreadable_input(tmp_path):
    path = write_records(tmp_path / "d.jsonl", [image_record("nowhere.png", [])])
    assert audit(path)["missing_media"] == 1
    path.write_text("{broken\n")
    with pytest.raises(DataFormatError, match=r"d\.jsonl:1"):
        audit(path)


def test_test_list_forms(tmp_path, defective):
    names = read_test_list(defective.test_list)
    assert len(names) == 4
    assert len(read_test_list(defective.images_jsonl)) == 30  # an annotation file works as a test list
    result = audit(defective.images_jsonl, test_list=defective.images_json, check_media=False)
    assert result["test_overlap"]["overlapping_records"] == 30


# --- hostile and unbounded inputs (issue 14 items 6 and 10) ------------------------------------------------


def _data_audit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fgdiag.cli.app", "data-audit", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_non_regular_files_are_refused_before_reading(tmp_path):
    """/dev/zero used to grow without bound (2.6 GB in 20 s); a FIFO blocked forever: both exit 2 at once."""
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    for path, kind in ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device"), (link, "character")):
        done = _data_audit(str(path), "--no-media", timeout=30)
        assert done.returncode == 2, done.stderr
        assert f"{path}: " in done.stderr and kind in done.stderr and "Traceback" not in done.stderr
    listing = tmp_path / "test.txt"
    listing.write_text("a.png\n")
    good = write_records(tmp_path / "d.jsonl", [image_record("a.png", [[0.1, 0.1, 0.5, 0.5]])])
    done = _data_audit(str(good), "--no-media", "--test-list", str(fifo), timeout=30)
    assert done.returncode == 2 and "FIFO" in done.stderr


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_hostile_json_exits_2_naming_file_line_and_field(tmp_path, suffix):
    record = image_record("a.png", [[0.1, 0.1, 0.5, 0.5]])
    text = json.dumps(record).replace("[0.1, 0.1, 0.5, 0.5]", "[" + "7" * 5000 + ", 0.1, 0.5, 0.5]")
    path = tmp_path / f"big{suffix}"
    ok = json.dumps(image_record("b.png", []))
    path.write_text(f"[\n{ok},\n{text}\n]\n" if suffix == ".json" else f"{ok}\n{text}\n")
    done = _data_audit(str(path), "--no-media")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{path}:{3 if suffix == '.json' else 2}" in done.stderr
    assert "bbox" in done.stderr and "5000 digits" in done.stderr
    deep = tmp_path / f"deep{suffix}"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    done = _data_audit(str(deep), "--no-media")
    assert done.returncode == 2 and f"{deep}:1" in done.stderr and "nested too deeply" in done.stderr


def _reference(path: Path) -> list[tuple[int, dict]]:
    return [(r.location.line, r.data) for r in iter_raw_records(path)]


@pytest.mark.parametrize("chunk", [1, 3, 17, 4096])
def test_streamed_array_matches_json_whatever_the_chunk(tmp_path, monkeypatch, chunk):
    """Records, numbers and strings cut at every chunk boundary decode as json.loads decodes the file."""
    records = [
        {"f_path": f"{i}.png", "caption": "x" * (i % 7) + 'é"q', "n": 123456789 * i, "f": -1.5e-3 * i}
        for i in range(40)
    ]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(records, indent=1))
    expected = _reference(path)
    monkeypatch.setattr(stream, "CHUNK", chunk)
    monkeypatch.setattr(stream, "TAIL", min(stream.TAIL, chunk))
    assert _reference(path) == expected
    assert [data for _, data in expected] == records
    lines = path.read_text().splitlines()
    assert all(lines[line - 1].strip() == "{" for line, _ in expected)


def test_streaming_keeps_memory_below_the_file_size(tmp_path):
    """A 16 MB array is read with a Python-heap peak well below its size: the old reader held the whole
    text (the file's size) and then every record (several times more); a stream holds 1-2 MB chunks."""
    path = tmp_path / "big.json"
    record = json.dumps(image_record("a.png", [[0.1, 0.1, 0.5, 0.5]] * 4))
    count = 16_000_000 // (len(record) + 2)
    path.write_text("[\n" + ",\n".join([record] * count) + "\n]\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        seen = sum(1 for _ in iter_raw_records(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < size / 2, (peak, size)


def test_audit_progress_reports_bytes_and_plain_lines_without_a_terminal(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from fgdiag.cli import data_audit
    from fgdiag.cli.app import app

    path = write_records(tmp_path / "d.jsonl", [image_record(f"{i}.png", []) for i in range(5000)])
    calls: list[tuple[int, int]] = []
    audit(path, check_media=False, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (path.stat().st_size, path.stat().st_size)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    monkeypatch.setattr(data_audit, "PROGRESS_MIN_BYTES", 0)
    result = CliRunner().invoke(app, ["data-audit", str(path), "--no-media"])
    assert result.exit_code == 0, result.output
    assert f"data-audit: {path}: 100% of" in result.stderr and "\x1b[" not in result.stderr


def test_a_coordinate_beyond_float_range_is_non_finite(tmp_path):
    """Found by tests/fuzz: a 400-digit integer in a box raised OverflowError in the box check."""
    path = write_records(tmp_path / "d.jsonl", [image_record("a.png", [[0, 0, 0, 10**400]])])
    result = audit(path, check_media=False)
    assert result["invalid"] == {"non_finite": 1} and result["dropped"] == {"non_finite": 1}
