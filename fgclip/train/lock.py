"""One training per output folder: an exclusive lock on `output_dir`, held until the process ends.

Two runs into one folder used to overwrite each other's checkpoints (last writer wins). The lock is
`filelock`'s OS lock (flock on POSIX): the kernel releases it when its process dies, so a run killed with
SIGKILL never blocks the next one. Next to it, a small JSON records who holds it (pid, host, start time,
command) so a refused run can say whose run is in the way.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from fgclip.train.errors import TrainingRefused

LOCK_NAME = ".fgclip-train.lock"
HOLDER_NAME = ".fgclip-train.lock.json"


def _holder(folder: Path) -> str:
    try:
        info = json.loads((folder / HOLDER_NAME).read_text(encoding="utf-8"))
        return (
            f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
            f"{info.get('command', '')}"
        ).rstrip(": ")
    except (OSError, ValueError, AttributeError):
        return "its pid, host and start time are unreadable"


class OutputDirLock:
    """Exclusive lock on `output_dir`: `acquire()` or TrainingRefused (exit 2) naming the holder;
    `release()` (also a context manager)."""

    def __init__(self, output_dir: str | Path) -> None:
        self.folder = Path(output_dir)
        self._lock: FileLock | None = None

    def acquire(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.folder / LOCK_NAME), timeout=0)
            lock.acquire()
        except Timeout:
            raise TrainingRefused(
                f"{self.folder}: another training is writing into this output folder "
                f"({_holder(self.folder)}). Wait for it to finish, or pick another --output_dir."
            ) from None
        except OSError as exc:
            raise TrainingRefused(f"{self.folder}: cannot lock the output folder: {exc}") from None
        self._lock = lock
        self._write_holder()

    def _write_holder(self) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
        }
        partial = self.folder / (HOLDER_NAME + ".partial")
        partial.write_text(json.dumps(info) + "\n", encoding="utf-8")
        os.replace(partial, self.folder / HOLDER_NAME)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> OutputDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


__all__ = ["HOLDER_NAME", "LOCK_NAME", "OutputDirLock"]
