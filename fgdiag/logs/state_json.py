"""A transformers `trainer_state.json`, whole or cut short (a copy interrupted mid-write, a file truncated by
a full disk): what it holds up to the cut.

A cut file is not valid JSON, but its `log_history` entries before the cut are: they are decoded one object
at a time, and the top-level numbers around the array (`global_step`, `max_steps`, `logging_steps`,
`train_batch_size`) are read where they survived.
"""

from __future__ import annotations

import json
import re
from typing import Any

TOP_LEVEL_RE = re.compile(r'^\s{0,2}"(\w+)"\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*,?\s*$', re.MULTILINE)


def load(text: str) -> tuple[dict[str, Any], bool] | None:
    """(the state, whether it was cut), or None when the text is not a trainer state at all."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        return (data, False) if "log_history" in data else None
    if data is not None:
        return None
    key = text.find('"log_history"')
    start = text.find("[", key) if key >= 0 else -1
    if start < 0 or not text.lstrip().startswith("{"):
        return None
    entries, end = _entries(text, start + 1)
    state: dict[str, Any] = {
        name: float(value) for name, value in TOP_LEVEL_RE.findall(text[:key] + "\n" + text[end:])
    }
    state["log_history"] = entries
    return state, True


def _entries(text: str, pos: int) -> tuple[list[Any], int]:
    """The objects of the array starting at `pos`, up to its end or the first one the cut broke."""
    decoder = json.JSONDecoder()
    out: list[Any] = []
    size = len(text)
    while pos < size:
        while pos < size and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= size or text[pos] == "]":
            return out, min(pos + 1, size)
        try:
            item, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return out, size
        out.append(item)
    return out, size
