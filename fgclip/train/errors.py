"""How `python -m fgclip.train` stops before training: a message for the user and an exit code, no traceback.

Exit codes follow the project's convention: 2 for a usage or input problem (bad value, unreadable file,
data the losses cannot use, output folder in use), 0 when there is nothing to do (the run already reached
its plan).
"""

from __future__ import annotations

USAGE = 2
NOTHING_TO_DO = 0


class TrainingRefused(Exception):
    """Raised before step 0; `main` prints the message to stderr (stdout for exit 0) and returns the code."""

    def __init__(self, message: str, exit_code: int = USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


__all__ = ["NOTHING_TO_DO", "USAGE", "TrainingRefused"]
