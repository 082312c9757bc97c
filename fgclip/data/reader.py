"""Reading annotation files into raw records that remember their file, line and index.

Accepted inputs (a superset of upstream FG-CLIP's `--data_path`): a JSON array file, a JSON Lines file (either
suffix; a `.jsonl` holding one array also works), a `.txt` listing annotation files, or a directory whose
`*.json` / `*.jsonl` files are read in name order. Malformed JSON raises `DataFormatError` naming the file and
the line. Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgclip.data.errors import DataFormatError, Location

IMAGE_MARKERS = ("f_path", "bbox_info")
VIDEO_MARKERS = ("video", "box_infos", "global_caption")
DATA_FORMATS = ("image", "video", "auto")
UPSTREAM_PREFIXES = ("grit-20m/data-12m/",)  # upstream strips this from f_path before joining image_folder


@dataclass(frozen=True)
class RawRecord:
    """One annotation object as parsed, with where it came from (index counts records within its file)."""

    location: Location
    data: dict[str, Any]


def annotation_files(path: str | Path) -> list[Path]:
    """The annotation files behind `path` (file, `.txt` listing, or directory), in reading order."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file())
        if not files:
            raise DataFormatError(str(path), "directory holds no *.json or *.jsonl annotation file")
        return files
    if not path.exists():
        raise DataFormatError(str(path), "no such file or directory")
    if path.suffix == ".txt":
        files = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            listed = Path(name) if Path(name).is_absolute() else path.parent / name
            if not listed.is_file():
                raise DataFormatError(
                    Location(str(path), line=number), f"listed file {name!r} does not exist"
                )
            files.append(listed)
        return files
    return [path]


def _json_error(source: str, exc: json.JSONDecodeError) -> DataFormatError:
    return DataFormatError(Location(source, line=exc.lineno), f"invalid JSON: {exc.msg} (column {exc.colno})")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _iter_array(text: str, source: str, start: int) -> Iterator[tuple[int, Any]]:
    """Yield (line, value) for each element of the top-level array that opens at `start`."""
    decoder = json.JSONDecoder()
    line, counted = 1, 0
    pos = _skip_ws(text, start + 1)
    if pos < len(text) and text[pos] == "]":
        pos += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise _json_error(source, exc) from None
            line += text.count("\n", counted, pos)
            counted = pos
            yield line, value
            pos = _skip_ws(text, end)
            if pos < len(text) and text[pos] == ",":
                pos = _skip_ws(text, pos + 1)
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            where = Location(source, line=text.count("\n", 0, pos) + 1)
            raise DataFormatError(where, "invalid JSON: expected ',' or ']' after an array element")
    pos = _skip_ws(text, pos)
    if pos < len(text):
        where = Location(source, line=text.count("\n", 0, pos) + 1)
        raise DataFormatError(where, "invalid JSON: extra data after the top-level array")


def _iter_lines(text: str, source: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                Location(source, line=number), f"invalid JSON: {exc.msg} (column {exc.colno})"
            ) from None


def iter_file_records(path: str | Path) -> Iterator[RawRecord]:
    """Records of one annotation file, each a dict, in file order."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # tolerates a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(source, f"cannot read file: {exc}") from None
    start = _skip_ws(text, 0)
    if start < len(text) and text[start] == "[":
        values = _iter_array(text, source, start)
    elif Path(path).suffix == ".json" and "\n" in text.strip():
        # a pretty-printed single object, or JSON Lines under a .json name
        try:
            whole = json.loads(text)
        except json.JSONDecodeError as exc:
            try:  # JSON Lines if the first line is a complete value on its own
                json.loads(text[start:].splitlines()[0])
            except json.JSONDecodeError:
                raise _json_error(source, exc) from None
            values = _iter_lines(text, source)
        else:
            values = iter([(text.count("\n", 0, start) + 1, whole)])
    else:
        values = _iter_lines(text, source)
    for index, (line, value) in enumerate(values):
        location = Location(source, index=index, line=line)
        if not isinstance(value, dict):
            raise DataFormatError(location, f"record is a JSON {type(value).__name__}, expected an object")
        yield RawRecord(location, value)


def read_raw_records(path: str | Path) -> list[RawRecord]:
    """Every record behind `path` (see `annotation_files`)."""
    return [record for file in annotation_files(path) for record in iter_file_records(file)]


def detect_format(records: list[RawRecord], data_format: str = "auto") -> str:
    """ "image" or "video": the requested format checked against the first record, or guessed from its keys."""
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format={data_format!r}: must be one of {DATA_FORMATS}")
    if not records:
        return "image" if data_format == "auto" else data_format
    first = records[0]
    is_image = any(key in first.data for key in IMAGE_MARKERS)
    is_video = any(key in first.data for key in VIDEO_MARKERS)
    guessed = "image" if is_image and not is_video else "video" if is_video and not is_image else None
    if data_format == "auto":
        if guessed is None:
            raise DataFormatError(
                first.location,
                f"cannot tell image from video records: expected keys {IMAGE_MARKERS} (image) or "
                f"{VIDEO_MARKERS} (video), found {sorted(first.data)}",
            )
        return guessed
    if guessed is not None and guessed != data_format:
        raise DataFormatError(
            first.location, f"data_format={data_format!r} but the record looks like {guessed} data"
        )
    return data_format


def default_root(data_path: str | Path) -> Path:
    """Media paths are relative to this when no root is given: the annotation file's folder."""
    path = Path(data_path)
    return path if path.is_dir() else path.parent


def resolve_media(root: Path, name: str) -> Path:
    """`root / name`, or with upstream's `grit-20m/data-12m/` prefix stripped when only that exists."""
    path = Path(name) if Path(name).is_absolute() else root / name
    if not path.exists():
        for prefix in UPSTREAM_PREFIXES:
            if name.startswith(prefix) and (root / name[len(prefix) :]).exists():
                return root / name[len(prefix) :]
    return path


__all__ = [
    "default_root",
    "resolve_media",
    "RawRecord",
    "annotation_files",
    "iter_file_records",
    "read_raw_records",
    "detect_format",
    "DATA_FORMATS",
]
