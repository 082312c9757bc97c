"""Runs of units in a buffer: the matches of a unit regex grouped where each starts at the previous one's end.

The reader applies such runs in bulk (`HfRuns`, `VadSteps`) and reads the text between them line by line.
The cuts are found over the flattened spans at once (a fork buffer is a few runs of many units: a Python
step per match cost ~0.1 s on a 1,000,000-line log).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import chain, compress, pairwise
from operator import ne


def unit_runs(pattern: re.Pattern[str], text: str) -> Iterator[tuple[int, list[re.Match[str]]]]:
    """(start, matches) of each run of units in `text`, in order. A match that starts after other text on
    its line is no unit (the line path reads it) and cuts the run."""
    matches = list(pattern.finditer(text))
    if not matches:
        return
    spans = list(chain.from_iterable(map(re.Match.span, matches)))
    cuts = [0, *compress(range(1, len(matches)), map(ne, spans[2::2], spans[1:-1:2])), len(matches)]
    for a, b in pairwise(cuts):
        start = spans[2 * a]
        if start and text[start - 1] != "\n":
            a += 1  # the match after it is contiguous to it, so starts a line
            if a == b:
                continue
            start = spans[2 * a]
        yield start, matches[a:b]
