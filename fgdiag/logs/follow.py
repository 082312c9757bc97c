"""Follow a growing file like `tail -F`: it may appear later, be truncated (copytruncate) or rotated
(renamed and recreated). Polling keeps it portable and dependency-free; each poll is a stat and one read.

`poll()` returns a list of (kind, data) with kind in {"data", "reset"}: "reset" means the file was truncated
or replaced, so a half-read line must be dropped. A poll reads at most `limit` bytes, so memory stays bounded
whatever the file's size: `more` says the poll stopped at the limit and the caller should poll again at once.
The rest of a rotated file is read before the new one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

READ_MAX = 1 << 22


class NotAFile(OSError):
    """The path is a FIFO, a device or a socket: it may never end, so it is not followed."""


def regular_file(path: Path) -> bool:
    """True for a regular file (False for a FIFO, a device, a socket, a directory or nothing)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class Follower:
    def __init__(self, path: str | Path, *, from_start: bool = True, limit: int = READ_MAX):
        self.path = Path(path)
        self.from_start = from_start
        self.limit = limit
        self.more = False  # the last poll stopped at the limit: there is more to read now
        self._fh: BinaryIO | None = None
        self._ino: tuple[int, int] | None = None
        self._pos = 0
        self.resets = 0

    @property
    def is_open(self) -> bool:
        return self._fh is not None

    def _open(self) -> bool:
        try:
            if os.path.exists(self.path) and not regular_file(self.path):
                raise NotAFile(f"{self.path}: not a regular file (a FIFO, a device or a socket): not read")
            fh = self.path.open("rb")
        except NotAFile:
            raise
        except OSError:
            return False
        st = os.fstat(fh.fileno())
        self._fh, self._ino = fh, (st.st_dev, st.st_ino)
        self._pos = 0 if self.from_start else st.st_size
        fh.seek(self._pos)
        self.from_start = True  # a file that appears or is recreated later is read from its start
        return True

    def _read(self, out: list[tuple[str, bytes]]) -> None:
        assert self._fh is not None
        data = self._fh.read(self.limit)
        self.more = len(data) >= self.limit
        if data:
            self._pos += len(data)
            out.append(("data", data))

    def poll(self) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        self.more = False
        if self._fh is None and not self._open():
            return out
        assert self._fh is not None
        try:
            st = os.stat(self.path)
        except OSError:
            st = None  # rotated away and not recreated yet: keep reading the old one
        if st is not None and (st.st_dev, st.st_ino) != self._ino:
            self._read(out)  # the tail of the rotated file first, a limit at a time
            if out:
                self.more = True
                return out
            self._fh.close()
            self._fh = None
            self.resets += 1
            out.append(("reset", b""))
            if self._open():
                self._read(out)
            return out
        if st is not None and st.st_size < self._pos:
            self._fh.seek(0)
            self._pos = 0
            self.resets += 1
            out.append(("reset", b""))
        self._read(out)
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
