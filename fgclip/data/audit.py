"""`audit(path)`: the data-quality picture of a whole annotation set, the library behind `fgdiag data-audit`.

Runs the same parsing and validation as training (so the counts are what training would drop), and adds what
training does not need but a person does: boxes per sample, repeated captions, missing media, and overlap with
a test list (the fork trained on UCF-Crime test videos). Torch-free; video lengths are probed with PyAV only
when media checks are on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fgclip.data.boxes import TOLERANCE, GridSize
from fgclip.data.errors import DataFormatError
from fgclip.data.reader import default_root, detect_format, read_raw_records, resolve_media
from fgclip.data.schema import parse_image_record, parse_video_record
from fgclip.data.validate import RecordValidator

Progress = Callable[[int, int], None]  # (records done, records total)


def _media_key(name: str) -> str:
    """Test-list matching key: the file name (UCF-Crime names are unique across its folders)."""
    return Path(name.strip().replace("\\", "/")).name.lower()


def read_test_list(path: str | Path) -> list[str]:
    """Media names of a test split: a text file (one path per line) or an annotation file of either format."""
    path = Path(path)
    if path.suffix in (".json", ".jsonl") or path.is_dir():
        names = []
        for raw in read_raw_records(path):
            name = raw.data.get("f_path") or raw.data.get("video")
            if isinstance(name, str):
                names.append(name)
        return names
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(str(path), f"cannot read test list: {exc}") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _repetition(counter: Counter, top_k: int) -> dict[str, Any]:
    total, distinct = sum(counter.values()), len(counter)
    return {
        "total": total,
        "distinct": distinct,
        "duplicate_fraction": 1.0 - distinct / total if total else 0.0,
        "top": [{"caption": text, "count": n} for text, n in counter.most_common(top_k) if n > 1],
    }


def audit(
    path: str | Path,
    *,
    data_format: str = "auto",
    policy: str = "drop",
    grid_size: GridSize = None,
    image_root: str | Path | None = None,
    check_media: bool = True,
    test_list: str | Path | None = None,
    max_boxes_per_sample: int | None = None,
    num_hard_negatives: int = 10,
    tolerance: float = TOLERANCE,
    top_k: int = 10,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Audit every record behind `path`; returns a JSON-ready dict (see `fgdiag data-audit --json`).

    Raises DataFormatError for unreadable input and BoxValidationError under policy "error".
    check_media: look for each image/video file (relative to `image_root`, default the annotation folder) and
    probe video lengths, which enables the `keyframe_beyond_video` check.
    """
    records = read_raw_records(path)
    kind = detect_format(records, data_format)
    root = Path(image_root) if image_root is not None else default_root(path)
    validator = RecordValidator(policy, grid_size=grid_size, tolerance=tolerance)
    per_sample: Counter = Counter()
    global_captions: Counter = Counter()
    region_captions: Counter = Counter()
    media: list[str] = []
    missing: list[str] = []
    media_errors: list[str] = []
    abnormal = hard_boxes = truncated = 0
    total = len(records)
    for done, raw in enumerate(records, start=1):
        if kind == "image":
            record = parse_image_record(raw)
            media.append(record.f_path)
            if check_media and not resolve_media(root, record.f_path).is_file():
                missing.append(record.f_path)
            clean = validator.image(record)
            global_captions[record.caption] += 1
            region_captions.update(
                r.short_expr or r.long_expr for r in record.regions if r.short_expr or r.long_expr
            )
            hard_boxes += sum(
                1 for r in clean.regions if r.short_expr and len(r.negatives) >= num_hard_negatives
            )
        else:
            record = parse_video_record(raw)
            media.append(record.video)
            frame_range = None
            if check_media:
                frame_range = _probe(
                    resolve_media(root, record.video), record.timestamps, missing, media_errors
                )
            clean = validator.video(record, frame_range)
            abnormal += record.abnormal
            global_captions[record.global_caption] += 1
            region_captions.update(r.caption for r in record.regions if r.caption)
        kept = len(clean.regions)
        per_sample[kept] += 1
        if max_boxes_per_sample is not None:
            truncated += max(0, kept - max_boxes_per_sample)
        if progress is not None:
            progress(done, total)
    report = validator.report
    report.truncated_regions = truncated
    result: dict[str, Any] = {"path": str(path), "format": kind, "grid_size": grid_size, **report.to_dict()}
    result["boxes_per_sample"] = {str(k): per_sample[k] for k in sorted(per_sample)}
    result["caption_repetition"] = {
        "global": _repetition(global_captions, top_k),
        "region": _repetition(region_captions, top_k),
    }
    if check_media:
        result["missing_media"] = len(missing)
        result["missing_examples"] = missing[:5]
        if kind == "video":
            result["media_errors"] = media_errors[:5]
    if kind == "video":
        result["abnormal_records"], result["normal_records"] = abnormal, len(records) - abnormal
    else:
        result["hard_boxes"] = hard_boxes
    if test_list is not None:
        result["test_overlap"] = _overlap(media, test_list)
    return result


def _probe(path: Path, timestamps: tuple[float, float] | None, missing: list[str], errors: list[str]):
    """[start, end) frames of the clip, or None (counted as missing / unreadable) when it cannot be probed."""
    from fgclip.data.frames import clip_range, probe_video

    if not path.exists():
        missing.append(str(path))
        return None
    try:
        info = probe_video(path)
    except DataFormatError as exc:
        errors.append(str(exc))
        return None
    return clip_range(info, timestamps)


def _overlap(media: list[str], test_list: str | Path) -> dict[str, Any]:
    test_names = read_test_list(test_list)
    test_keys = {_media_key(n) for n in test_names}
    hits = [name for name in media if _media_key(name) in test_keys]
    return {
        "test_list": str(test_list),
        "test_items": len(test_names),
        "overlapping_records": len(hits),
        "overlapping_media": len({_media_key(n) for n in hits}),
        "examples": hits[:5],
    }


__all__ = ["audit", "read_test_list"]
