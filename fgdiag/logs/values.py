"""Numbers as logs print them: `1.5`, `nan`, `inf`, `np.float64(1.2)`, `tensor(0.5, device='cuda:0')`,
`True`. One tolerant converter so every parser treats them alike, and never `eval`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_WRAPPED = re.compile(r"^(?:[A-Za-z_][\w.]*)?\(\s*([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|nan|inf\w*))")
_BOOLS = {"True": 1.0, "true": 1.0, "False": 0.0, "false": 0.0}
_NONE = {"None", "null", "none"}


class NotANumber(ValueError):
    """The text is a value, but not a number (a string, a list...): callers skip it."""


def to_float(text: str) -> float | None:
    """Parse one printed value; None for None/null; raises NotANumber for anything else.

    float() already reads `nan`, `NaN`, `inf`, `-Infinity` and `1e-06`; wrappers such as `np.float64(1.2)`,
    `tensor(1.2, device='cuda:0')` or `float32(3)` are unwrapped to their first argument.
    """
    text = text.strip()
    if len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]:
        text = text[1:-1].strip()  # transformers 5 prints log values as formatted strings: {'loss': '24.07'}
    try:
        return float(text)
    except ValueError:
        pass
    if text in _BOOLS:
        return _BOOLS[text]
    if text in _NONE:
        return None
    if len(text) < 200:
        m = _WRAPPED.match(text)
        if m is not None:
            try:
                return float(m.group(1))
            except ValueError:
                pass
    raise NotANumber(text[:40])


def floats(column: Sequence[Any]) -> list[float]:
    """float() of each text of a column (str or bytes: a bulk reader's captures); a column of one text (a
    steady loss, the learning rate between two changes) is converted once. Raises ValueError as float()."""
    if column.count(column[0]) == len(column):
        return [float(column[0])] * len(column)
    return list(map(float, column))
