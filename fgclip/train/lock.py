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
    """Context manager: exclusive lock on `output_dir` or TrainingRefused (exit 2) naming the holder."""

    def __init__(self, output_dir: str | Path, enabled: bool = True) -> None:
        self.folder = Path(output_dir)
        self.enabled = enabled
        self._lock: FileLock | None = None

    def __enter__(self) -> OutputDirLock:
        if not self.enabled:
            return self
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
        return self

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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


__all__ = ["OutputDirLock", "LOCK_NAME", "HOLDER_NAME"]
