"""Annotation files read as a stream of top-level JSON values, in bounded memory, each with its line.

A 200 MB annotation file used to cost about 1.3 GB to audit: the whole text, then every record as a dict, then
the list of them. Here the file is read in 1 MB chunks and each record is decoded on its own (a JSON array
element by element, JSON Lines line by line), so memory follows the largest record, not the file. What a
reader cannot end on is refused before it is opened (a FIFO, `/dev/zero`, a character device), and what
Python's JSON decoder raises on hostile input besides `JSONDecodeError` (a 5,000-digit integer, nesting
100,000 deep) becomes a `DataFormatError` naming the file, the line and the field. Torch-free.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fgclip.data.errors import DataFormatError, Location

CHUNK = 1 << 20  # characters read at a time
MAX_RECORD = 64 << 20  # one record (or one line) larger than this is refused: nothing real is that big
TAIL = 64  # a decode error this close to the end of the buffer may only mean the record continues
_DECODER = json.JSONDecoder()
_LONG_DIGITS = re.compile(r"\d{4000,}")
_KEY_BEFORE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*[\[\s\d.,+-]*$')


def require_regular(path: Path, what: str = "annotation file") -> None:
    """Refuse anything but a regular file (after symlinks): a FIFO or a device has no end to read to."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DataFormatError(str(path), f"cannot read {what}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a character device"
            if stat.S_ISCHR(mode)
            else "a block device"
            if stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise DataFormatError(
            str(path), f"{kind}, not a regular {what}: refusing to read an input that may never end"
        )


def hostile_value(source: str, text: str, start: int, first_line: int, exc: Exception) -> DataFormatError:
    """The error for a value json rejects outside JSONDecodeError, naming the line and, when found, the
    field: an integer beyond Python's digit limit (ValueError) or nesting too deep (RecursionError)."""
    if isinstance(exc, RecursionError):
        return DataFormatError(
            Location(source, line=first_line),
            "invalid JSON: nested too deeply for Python's decoder (a hostile or corrupt file)",
        )
    match = _LONG_DIGITS.search(text, start)
    if match is None:
        return DataFormatError(Location(source, line=first_line), f"invalid JSON: {exc}")
    line = first_line + text.count("\n", start, match.start())
    key = _KEY_BEFORE.search(text, max(start, match.start() - 4096), match.start())
    where = Location(source, line=line, field=key.group(1) if key else None)
    return DataFormatError(
        where,
        f"holds an integer of {len(match.group(0))} digits: no annotation value is that long (a corrupt or "
        "hostile file)",
    )


class _Buffer:
    """A text window over a file: `text[pos:]` is unread; `line` is the line number at `text[0]`."""

    def __init__(self, handle: IO[str], source: str) -> None:
        self.handle, self.source = handle, source
        self.text, self.pos, self.line, self.eof = "", 0, 1, False
        self._mark = (0, 1)  # (position, its line): line numbers are counted on from the last one asked

    def more(self, amount: int = CHUNK) -> bool:
        """Append up to `amount` characters; False at the end of the file."""
        if self.eof:
            return False
        try:
            piece = self.handle.read(amount)
        except UnicodeDecodeError as exc:
            where = Location(self.source, line=self.line_at(len(self.text)))
            raise DataFormatError(
                where, f"not UTF-8 text ({exc.reason} at byte {exc.start} of a chunk)"
            ) from None
        if not piece:
            self.eof = True
            return False
        if self.pos > CHUNK:  # drop what was read, keeping the line count of the dropped part
            self.line = self.line_at(self.pos)
            self.text, self.pos, self._mark = self.text[self.pos :], 0, (0, self.line)
        self.text += piece
        return True

    def skip_space(self) -> str:
        """The next non-whitespace character ('' at the end), reading as needed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def line_at(self, pos: int) -> int:
        """The line of `text[pos]` (counting from the last position asked, so a scan stays linear)."""
        at, line = self._mark if self._mark[0] <= pos else (0, self.line)
        line += self.text.count("\n", at, pos)
        self._mark = (pos, line)
        return line

    def value(self) -> tuple[int, Any]:
        """Decode the JSON value starting at `pos` (reading more while it may continue); (line, value)."""
        start_line = self.line_at(self.pos)
        want = CHUNK
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                maybe_cut = exc.pos >= len(self.text) - TAIL or exc.msg.startswith("Unterminated string")
                if maybe_cut and len(self.text) - self.pos < MAX_RECORD and self.more(want):
                    want *= 2
                    continue
                if maybe_cut and not self.eof:
                    raise DataFormatError(
                        Location(self.source, line=start_line),
                        f"invalid JSON: a record longer than {MAX_RECORD >> 20} MB (or a string that never "
                        "ends)",
                    ) from None
                raise DataFormatError(
                    Location(self.source, line=self.line_at(exc.pos)),
                    f"invalid JSON: {exc.msg} (column {exc.colno})",
                ) from None
            except (ValueError, RecursionError) as exc:
                raise hostile_value(self.source, self.text, self.pos, start_line, exc) from None
            cut = end >= len(self.text) - TAIL and self.text[end - 1] not in '}]"el'
            if cut and self.more(want):  # a number may continue in the next chunk (`12` of `123`)
                continue
            self.pos = end
            return start_line, value


def iter_array(handle: IO[str], source: str) -> Iterator[tuple[int, Any]]:
    """(line, element) of the top-level array the handle holds, one element in memory at a time."""
    buf = _Buffer(handle, source)
    buf.more()
    if buf.skip_space() != "[":
        raise DataFormatError(Location(source, line=buf.line_at(buf.pos)), "invalid JSON: expected '['")
    buf.pos += 1
    if buf.skip_space() == "]":
        buf.pos += 1
    else:
        while True:
            if buf.skip_space() == "":
                raise DataFormatError(
                    Location(source, line=buf.line_at(buf.pos)), "invalid JSON: the array never closes"
                )
            yield buf.value()
            nxt = buf.skip_space()
            buf.pos += 1 if nxt else 0
            if nxt == ",":
                continue
            if nxt == "]":
                break
            raise DataFormatError(
                Location(source, line=buf.line_at(buf.pos - 1)),
                "invalid JSON: expected ',' or ']' after an array element",
            )
    if buf.skip_space():
        raise DataFormatError(
            Location(source, line=buf.line_at(buf.pos)), "invalid JSON: extra data after the top-level array"
        )


def iter_values(handle: IO[str], source: str) -> Iterator[tuple[int, Any]]:
    """(line, value) of whitespace-separated top-level values (a pretty-printed object, or several)."""
    buf = _Buffer(handle, source)
    buf.more()
    while buf.skip_space():
        yield buf.value()


def iter_lines(handle: IO[str], source: str) -> Iterator[tuple[int, Any]]:
    """(line, value) of a JSON Lines file, one line in memory at a time (a line over 64 MB is refused)."""
    number = 0
    while True:
        try:
            line = handle.readline(MAX_RECORD + 1)
        except UnicodeDecodeError as exc:
            where = Location(source, line=number + 1)
            raise DataFormatError(where, f"not UTF-8 text ({exc.reason})") from None
        if not line:
            return
        number += 1
        if len(line) > MAX_RECORD and not line.endswith("\n"):
            raise DataFormatError(
                Location(source, line=number), f"a line longer than {MAX_RECORD >> 20} MB: not JSON Lines"
            )
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                Location(source, line=number), f"invalid JSON: {exc.msg} (column {exc.colno})"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise hostile_value(source, line, 0, number, exc) from None


def open_text(path: Path) -> IO[str]:
    """The file as text (a UTF-8 byte-order mark skipped); refuses non-regular files first."""
    require_regular(path)
    try:
        return path.open("r", encoding="utf-8-sig")
    except OSError as exc:
        raise DataFormatError(str(path), f"cannot read file: {exc}") from None


__all__ = ["MAX_RECORD", "iter_array", "iter_lines", "iter_values", "open_text", "require_regular"]
