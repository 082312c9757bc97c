"""`audit(path)`: the data-quality picture of a whole annotation set, the library behind `fgdiag data-audit`.

Runs the same parsing and validation as training (so the counts are what training would drop), and adds what
training does not need but a person does: boxes per sample, repeated captions, missing media, and overlap with
a test list (the fork trained on UCF-Crime test videos). Torch-free; video lengths are probed with PyAV only
when media checks are on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from itertools import chain
from pathlib import Path
from typing import Any

from fgclip.data.boxes import TOLERANCE, GridSize
from fgclip.data.errors import DataFormatError
from fgclip.data.reader import default_root, detect_format, iter_raw_records, resolve_media
from fgclip.data.schema import parse_image_record, parse_video_record
from fgclip.data.stream import require_regular
from fgclip.data.validate import RecordValidator

Progress = Callable[[int, int], None]  # (bytes read, bytes in all files)


def _media_key(name: str) -> str:
    """Test-list matching key: the file name (UCF-Crime names are unique across its folders)."""
    return Path(name.strip().replace("\\", "/")).name.lower()


def read_test_list(path: str | Path) -> list[str]:
    """Media names of a test split: a text file (one path per line) or an annotation file of either format."""
    path = Path(path)
    if path.suffix in (".json", ".jsonl") or path.is_dir():
        names = []
        for raw in iter_raw_records(path):
            name = raw.data.get("f_path") or raw.data.get("video")
            if isinstance(name, str):
                names.append(name)
        return names
    try:
        require_regular(path, "test list")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(str(path), f"cannot read test list: {exc}") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


class CaptionCounts:
    """Caption repetition in memory that grows with the distinct captions, not their text: each caption is
    counted by its hash, and its text kept only once it repeats (a caption seen once never shows in the
    top list)."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.texts: dict[int, str] = {}
        self.total = 0

    def add(self, caption: str) -> None:
        key = hash(caption)
        self.counts[key] += 1
        self.total += 1
        if self.counts[key] == 2:
            self.texts[key] = caption

    def report(self, top_k: int) -> dict[str, Any]:
        distinct = len(self.counts)
        top = [(key, n) for key, n in self.counts.most_common(top_k) if n > 1]
        return {
            "total": self.total,
            "distinct": distinct,
            "duplicate_fraction": 1.0 - distinct / self.total if self.total else 0.0,
            "top": [{"caption": self.texts[key], "count": n} for key, n in top],
        }


@dataclass
class _Media:
    """Media names as far as the report needs them: missing ones (count + examples), test-list overlap."""

    test_keys: set[str] | None
    missing: int = 0
    missing_examples: list[str] = dc_field(default_factory=list)
    hits: int = 0
    hit_media: set[str] = dc_field(default_factory=set)
    hit_examples: list[str] = dc_field(default_factory=list)
    errors: list[str] = dc_field(default_factory=list)

    def seen(self, name: str) -> None:
        if self.test_keys is not None and _media_key(name) in self.test_keys:
            self.hits += 1
            self.hit_media.add(_media_key(name))
            if len(self.hit_examples) < 5:
                self.hit_examples.append(name)

    def lost(self, name: str) -> None:
        self.missing += 1
        if len(self.missing_examples) < 5:
            self.missing_examples.append(name)


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

    Records are streamed (memory follows the distinct captions, not the file). Raises DataFormatError for
    unreadable input (a FIFO or device, malformed JSON, a hostile value: the message names the file, line
    and field) and BoxValidationError under policy "error". check_media: look for each image/video file
    (relative to `image_root`, default the annotation folder) and probe video lengths, which enables the
    `keyframe_beyond_video` check. progress(bytes read, bytes in all files) is called as records stream.
    """
    test_names = read_test_list(test_list) if test_list is not None else None
    media = _Media({_media_key(n) for n in test_names} if test_names is not None else None)
    records = iter_raw_records(path, progress=progress)
    first = next(records, None)
    kind = detect_format([first] if first is not None else [], data_format)
    root = Path(image_root) if image_root is not None else default_root(path)
    validator = RecordValidator(policy, grid_size=grid_size, tolerance=tolerance)
    per_sample: Counter = Counter()
    global_captions, region_captions = CaptionCounts(), CaptionCounts()
    abnormal = hard_boxes = truncated = count = 0
    for raw in chain([first], records) if first is not None else ():
        count += 1
        if kind == "image":
            record = parse_image_record(raw)
            media.seen(record.f_path)
            if check_media and not resolve_media(root, record.f_path).is_file():
                media.lost(record.f_path)
            clean = validator.image(record)
            global_captions.add(record.caption)
            for r in record.regions:
                if r.short_expr or r.long_expr:
                    region_captions.add(r.short_expr or r.long_expr)
            hard_boxes += sum(
                1 for r in clean.regions if r.short_expr and len(r.negatives) >= num_hard_negatives
            )
        else:
            record = parse_video_record(raw)
            media.seen(record.video)
            frame_range = None
            if check_media:
                frame_range = _probe(resolve_media(root, record.video), record.timestamps, media)
            clean = validator.video(record, frame_range)
            abnormal += record.abnormal
            global_captions.add(record.global_caption)
            for r in record.regions:
                if r.caption:
                    region_captions.add(r.caption)
        kept = len(clean.regions)
        per_sample[kept] += 1
        if max_boxes_per_sample is not None:
            truncated += max(0, kept - max_boxes_per_sample)
    report = validator.report
    report.truncated_regions = truncated
    result: dict[str, Any] = {"path": str(path), "format": kind, "grid_size": grid_size, **report.to_dict()}
    result["boxes_per_sample"] = {str(k): per_sample[k] for k in sorted(per_sample)}
    result["caption_repetition"] = {
        "global": global_captions.report(top_k),
        "region": region_captions.report(top_k),
    }
    if check_media:
        result["missing_media"] = media.missing
        result["missing_examples"] = media.missing_examples
        if kind == "video":
            result["media_errors"] = media.errors[:5]
    if kind == "video":
        result["abnormal_records"], result["normal_records"] = abnormal, count - abnormal
    else:
        result["hard_boxes"] = hard_boxes
    if test_list is not None and test_names is not None:
        result["test_overlap"] = {
            "test_list": str(test_list),
            "test_items": len(test_names),
            "overlapping_records": media.hits,
            "overlapping_media": len(media.hit_media),
            "examples": media.hit_examples,
        }
    return result


def _probe(path: Path, timestamps: tuple[float, float] | None, media: _Media):
    """[start, end) frames of the clip, or None (counted as missing / unreadable) when it cannot be probed."""
    from fgclip.data.frames import clip_range, probe_video

    if not path.exists():
        media.lost(str(path))
        return None
    try:
        info = probe_video(path)
    except DataFormatError as exc:
        if len(media.errors) < 5:
            media.errors.append(str(exc))
        return None
    return clip_range(info, timestamps)


__all__ = ["audit", "read_test_list"]
