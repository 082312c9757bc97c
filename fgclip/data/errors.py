"""Error types of the data package: every message names the file, the line or record index and the field.

Kept free of torch so that `fgdiag data-audit` starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where a problem sits: file, 1-based line (when known), 0-based record index, field path."""

    source: str
    index: int | None = None
    line: int | None = None
    field: str | None = None

    def at(self, field: str) -> Location:
        """The same record, a (deeper) field path."""
        return Location(self.source, self.index, self.line, field)

    def __str__(self) -> str:
        text = self.source if self.line is None else f"{self.source}:{self.line}"
        if self.index is not None:
            text += f" (record {self.index})"
        if self.field:
            text += f" {self.field}"
        return text


class DataFormatError(ValueError):
    """The input cannot be read: malformed JSON, a record without a required field, a missing media file."""

    def __init__(self, location: Location | str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")


class BoxValidationError(ValueError):
    """An invalid box under `box_policy="error"`; `reason` is one of `fgclip.data.boxes.ALL_REASONS`."""

    def __init__(self, location: Location, reason: str, detail: str = "") -> None:
        self.location = location
        self.reason = reason
        self.detail = detail
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"{location}: invalid box: {reason}{suffix}")


__all__ = ["BoxValidationError", "DataFormatError", "Location"]
