"""Typed records for the two annotation formats, parsed from raw JSON objects.

Image records follow upstream FG-CLIP (FineHARD): `f_path`, `caption` (long), `short_caption`, `bbox_info`.
Video records follow the fgclip-vad fork (UCF-Crime): `video`, `global_caption`, `region_captions`,
`box_infos` (per region, keyframes `{frame, bbox}` on absolute frame numbers), `timestamps`.

Parsing checks structure only (a missing caption or a wrong type raises `DataFormatError` naming the field);
box values are kept raw here and judged by `fgclip.data.validate` under the box policy. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, overload

from fgclip.data.errors import DataFormatError, Location
from fgclip.data.reader import RawRecord

MISSING: Any = object()  # a field that is absent (distinct from JSON null)


@dataclass(frozen=True)
class ImageRegion:
    """One `bbox_info` entry. `bbox` is raw (MISSING when absent); `negatives` only when flagged."""

    field: str
    bbox: Any
    short_expr: str | None
    long_expr: str | None
    negatives: tuple[str, ...]


@dataclass(frozen=True)
class ImageRecord:
    location: Location
    f_path: str
    caption: str
    short_caption: str
    regions: tuple[ImageRegion, ...]


@dataclass(frozen=True)
class Keyframe:
    """One `{frame, bbox}` entry; both raw. `field` is its path, e.g. `box_infos[0][3]`."""

    field: str
    frame: Any
    bbox: Any


@dataclass(frozen=True)
class VideoRegion:
    """A region caption paired by index with its keyframes; a side is None when the lists differ in length."""

    index: int
    caption: str | None
    keyframes: tuple[Keyframe, ...] | None


@dataclass(frozen=True)
class VideoRecord:
    location: Location
    video: str
    global_caption: str
    regions: tuple[VideoRegion, ...]
    timestamps: tuple[float, float] | None

    @property
    def abnormal(self) -> bool:
        """The fork has no label field: a record is abnormal iff some region has keyframes."""
        return any(region.keyframes for region in self.regions)


@overload
def _text(
    data: dict[str, Any], key: str, location: Location, required: Literal[True] = True, prefix: str = ""
) -> str: ...
@overload
def _text(
    data: dict[str, Any], key: str, location: Location, required: bool, prefix: str = ""
) -> str | None: ...
def _text(
    data: dict[str, Any], key: str, location: Location, required: bool = True, prefix: str = ""
) -> str | None:
    value = data.get(key, MISSING)
    if value is MISSING or value is None:
        if required:
            raise DataFormatError(location.at(prefix + key), "required text field is missing")
        return None
    if not isinstance(value, str):
        raise DataFormatError(location.at(prefix + key), f"expected a string, found {type(value).__name__}")
    return value


def _negatives(entry: dict[str, Any], location: Location, field: str) -> tuple[str, ...]:
    if not entry.get("flag_short_neg"):
        return ()
    negs = entry.get("short_expr_negs") or {}
    values = list(negs.values()) if isinstance(negs, dict) else negs  # dict key order fixes the order
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DataFormatError(location.at(f"{field}.short_expr_negs"), "expected a dict (or list) of strings")
    return tuple(values)


def parse_image_record(raw: RawRecord) -> ImageRecord:
    """An upstream FG-CLIP record; raises DataFormatError for missing/ill-typed fields."""
    data, loc = raw.data, raw.location
    f_path = _text(data, "f_path", loc)
    caption = _text(data, "caption", loc)
    short_caption = _text(data, "short_caption", loc)
    entries = data.get("bbox_info") or []
    if not isinstance(entries, list):
        raise DataFormatError(loc.at("bbox_info"), f"expected a list, found {type(entries).__name__}")
    regions = []
    for i, entry in enumerate(entries):
        field = f"bbox_info[{i}]"
        if not isinstance(entry, dict):  # judged as a malformed box under the policy
            regions.append(ImageRegion(field, entry, None, None, ()))
            continue
        regions.append(
            ImageRegion(
                field,
                entry.get("bbox", MISSING),
                _text(entry, "short_expr", loc, required=False, prefix=f"{field}.") or None,
                _text(entry, "long_expr", loc, required=False, prefix=f"{field}.") or None,
                _negatives(entry, loc, field),
            )
        )
    return ImageRecord(loc, f_path, caption, short_caption, tuple(regions))


def _timestamps(value: Any, loc: Location) -> tuple[float, float] | None:
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    ok = ok and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )
    if not ok or not 0 <= value[0] < value[1]:
        raise DataFormatError(loc.at("timestamps"), f"expected null or [start, end] seconds, found {value!r}")
    return float(value[0]), float(value[1])


def parse_video_record(raw: RawRecord) -> VideoRecord:
    """A fgclip-vad record; raises DataFormatError for missing/ill-typed fields."""
    data, loc = raw.data, raw.location
    video = _text(data, "video", loc)
    global_caption = _text(data, "global_caption", loc)
    captions = data.get("region_captions") or []
    box_infos = data.get("box_infos") or []
    for key, value in (("region_captions", captions), ("box_infos", box_infos)):
        if not isinstance(value, list):
            raise DataFormatError(loc.at(key), f"expected a list, found {type(value).__name__}")
    regions = []
    for r in range(max(len(captions), len(box_infos))):
        caption = captions[r] if r < len(captions) else None
        if caption is not None and not isinstance(caption, str):
            raise DataFormatError(loc.at(f"region_captions[{r}]"), "expected a string")
        keyframes = None
        if r < len(box_infos):
            entries = box_infos[r]
            if not isinstance(entries, list):
                raise DataFormatError(loc.at(f"box_infos[{r}]"), "expected a list of {frame, bbox} keyframes")
            keyframes = tuple(
                Keyframe(
                    f"box_infos[{r}][{k}]",
                    *(
                        (e.get("frame", MISSING), e.get("bbox", MISSING))
                        if isinstance(e, dict)
                        else (MISSING, e)
                    ),
                )
                for k, e in enumerate(entries)
            )
        regions.append(VideoRegion(r, caption, keyframes))
    return VideoRecord(loc, video, global_caption, tuple(regions), _timestamps(data.get("timestamps"), loc))


__all__ = [
    "MISSING",
    "ImageRecord",
    "ImageRegion",
    "Keyframe",
    "VideoRecord",
    "VideoRegion",
    "parse_image_record",
    "parse_video_record",
]
