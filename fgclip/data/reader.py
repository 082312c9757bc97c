"""Reading annotation files into raw records that remember their file, line and index.

Accepted inputs (a superset of upstream FG-CLIP's `--data_path`): a JSON array file, a JSON Lines file (either
suffix; a `.jsonl` holding one array also works), a `.txt` listing annotation files, or a directory whose
`*.json` / `*.jsonl` files are read in name order. Malformed JSON raises `DataFormatError` naming the file and
the line. Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fgclip.data.errors import DataFormatError, Location
from fgclip.data.stream import MAX_RECORD, iter_array, iter_lines, iter_values, open_text, require_regular

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
    require_regular(path)
    if path.suffix == ".txt":
        files = []
        try:
            listing = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataFormatError(str(path), f"cannot read file list: {exc}") from None
        for number, line in enumerate(listing, start=1):
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


def _values(handle: IO[str], path: Path) -> Iterator[tuple[int, Any]]:
    """(line, value) of one open file: a JSON array element by element, JSON Lines line by line, a
    pretty-printed object (or several) value by value."""
    source = str(path)
    first = handle.read(4096).lstrip()[:1]
    handle.seek(0)
    if first == "[":
        return iter_array(handle, source)
    if path.suffix == ".json" and first:
        line = handle.readline(MAX_RECORD)
        handle.seek(0)
        try:
            json.loads(line)
        except (ValueError, RecursionError):  # a pretty-printed object (JSON Lines under .json start whole)
            return iter_values(handle, source)
    return iter_lines(handle, source)


def iter_file_records(path: str | Path, tick: Callable[[int], None] | None = None) -> Iterator[RawRecord]:
    """Records of one annotation file, each a dict, in file order, read in bounded memory; `tick(bytes
    read)` every 1024 records."""
    source = str(path)
    with open_text(Path(path)) as handle:
        for index, (line, value) in enumerate(_values(handle, Path(path))):
            location = Location(source, index=index, line=line)
            if not isinstance(value, dict):
                raise DataFormatError(
                    location, f"record is a JSON {type(value).__name__}, expected an object"
                )
            if tick is not None and index % 1024 == 1023:
                tick(handle.buffer.tell())
            yield RawRecord(location, value)


def iter_raw_records(
    path: str | Path, progress: Callable[[int, int], None] | None = None
) -> Iterator[RawRecord]:
    """Every record behind `path` (see `annotation_files`), one at a time; `progress(bytes read, bytes in
    all files)` as they stream."""
    files = annotation_files(path)
    if progress is None:
        for file in files:
            yield from iter_file_records(file)
        return
    total, before = sum(f.stat().st_size for f in files), 0
    for file in files:
        yield from iter_file_records(file, lambda done, base=before: progress(base + done, total))
        before += file.stat().st_size
        progress(before, total)


def read_raw_records(path: str | Path) -> list[RawRecord]:
    """Every record behind `path` (see `annotation_files`), as a list (training indexes them)."""
    return list(iter_raw_records(path))


def detect_format(records: Sequence[RawRecord], data_format: str = "auto") -> str:
    """ "image" or "video": the requested format checked against the first record, or guessed from its
    keys."""
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
    "DATA_FORMATS",
    "RawRecord",
    "annotation_files",
    "default_root",
    "detect_format",
    "iter_file_records",
    "iter_raw_records",
    "read_raw_records",
    "resolve_media",
]
