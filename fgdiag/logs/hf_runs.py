"""`HfRuns`: runs of canonical Trainer logging steps read a chunk at a time instead of a line at a time.

A Trainer log captured to a file is mostly one unit repeated: a line of `\\r`-separated tqdm redraws, the
dict line, then lines that carry nothing (a warning printed every step, a blank line). Once the per-line path
has learned the dict line's layout (`HfParser.recent`) and the training bar's total, one regex finds such
units in a buffer; a run of units that follow each other is applied column-wise: the values go through
`map(float, ...)`, the rows straight to the sink. A buffer that is one run (`split`: one `Pattern.split`,
over undecoded bytes when it holds no fork text) is checked column by column and applied whole; over bytes
the dict values are taken loosely (the bytes a plain number holds: sre's general repeats in the number
pattern cost a third of the match) and checked by float() a column at a time (`_floats`), and the gap most
units share is matched as a literal (no copy per unit). Each unit
gives exactly what the per-line path gives (`bars` then `dict_line`, the other lines counted); whatever
deviates (a bar going back, unsorted redraws, another layout, a line that may carry state,
`--logging-steps`) is left to the per-line path. A test reads logs both ways and compares rows, events and
counters.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import islice
from operator import le, lt
from typing import Any, overload

from fgdiag.logs.hf import VALUE, HfParser, Layout
from fgdiag.logs.sink import LogSink
from fgdiag.logs.values import floats

REDRAWS = 4  # redraws on one line the unit regex accepts (more: the per-line path)
# one redraw of the training bar (a subset of what `hf.BARS_LINE_RE` accepts), the total fixed per pattern
# (the rate ends at the first `/` of the brackets: no backtracking to find it)
_BAR = (
    r" *\d+%\|[^|\r\n\[]*+\| *(\d+)/{total} "
    r"\[[^\[\]\r\n|/]{{0,80}}+/(?:(?<=it/)s|(?<=s/)it)[^\[\]\r\n|]{{0,20}}+\]"
)
# a dict value read loosely over bytes: the bytes a plain number may hold (`_floats` checks the number)
_LOOSE_VALUE = r"['\"]?([-+.0-9eE]*+)['\"]?"
_GAP = r"((?:[^\r\n{][^\n]*+\n|\n)*+)"  # lines that are neither bars nor dicts (checked in apply)
SMALL = 1 << 16  # a buffer without units this short (the line a chunk left open) says nothing of the next
COMMON_GAP = 2000  # the longest gap text the bytes regex learns as a literal
Gap = Callable[[str], tuple[int, int, int] | None]


def as_text(data: str | bytes | memoryview) -> str:
    """Text of a buffer read as bytes (decoded as `LogReader.feed` decodes)."""
    return data if isinstance(data, str) else str(data, "utf-8", "replace")


class HfRuns:
    """Finds canonical units in a buffer (`pattern`) and applies runs of them (`apply`)."""

    def __init__(self, hf: HfParser, sink: LogSink) -> None:
        self.hf = hf
        self.sink = sink
        self._key: tuple[Layout, int] | None = None
        self._re: re.Pattern[str] | None = None
        self._re_bytes: re.Pattern[bytes] | None = None  # the same over undecoded bytes (see `split`)
        self._common: bytes | None = None  # the gap text the bytes regex matches uncaptured (see `split`)
        self._names: list[str] = []
        self.refused = False  # the last bytes `split` with units gave None (the reader looks for marks first)

    def pattern(self) -> re.Pattern[str] | None:
        """The unit regex for the layout and bar seen last; None until both are known (or with a fixed
        logging_steps, whose step arithmetic stays on the per-line path)."""
        hf = self.hf
        layout, total = hf.recent, hf.bar_total
        if layout is None or layout.names is None or layout.end or total is None or hf.logging_steps:
            return None
        if self._key is None or self._key[0] is not layout or self._key[1] != total:
            bar = _BAR.format(total=total)
            first, more = rf"\r{bar}", rf"(?:\r{bar})?+" * (REDRAWS - 1)
            dict_re = layout.regex.pattern
            self._re = re.compile(rf"{first}{more}\n{dict_re}\n{_GAP}")
            self._key, self._names = (layout, total), list(layout.names)
            self._bytes_re(None)
        return self._re

    def _bytes_re(self, common: bytes | None) -> None:
        """The unit regex over bytes; `common` (a gap text of whole lines): matched as a literal, its group
        then None (a text copied per unit costs a tenth of the match). The literal matches where the gap
        pattern would match exactly it: what follows cannot continue a gap (a bar, a dict line, the end)."""
        assert self._re is not None
        text = self._re.pattern.replace(VALUE, _LOOSE_VALUE).encode()
        if common is not None:
            text = text[: -len(_GAP)] + b"(?:" + re.escape(common) + rb"(?![^\r{])|" + _GAP.encode() + b")"
        self._re_bytes, self._common = re.compile(text), common

    def ready(self) -> bool:
        """No state is held that a unit's `settle`/`at` would change beyond what `apply` does."""
        sink, hf = self.sink, self.hf
        return (
            sink.pure_put_row()
            and hf.bar_n == sink.step == sink.max_step == hf.last_step
            and (sink.announced is None or sink.announced <= sink.step)
        )

    def apply(self, units: list[tuple[Any, ...]], first: int, gap: Gap) -> tuple[int, int, int, int]:
        """Apply units[first:] of a contiguous run (each `match.groups()`) while they are canonical;
        `gap(text)` gives (lines, blank, unparsed) for the lines after a dict line, None when one may carry
        state. Returns (units applied, lines, blank, unparsed): 0 units when the first must take the
        per-line path."""
        if first >= len(units) or not self.ready():
            return 0, 0, 0, 0
        cols = list(zip(*islice(units, first, None), strict=True))
        fast = self._uniform(cols, gap)
        if fast is not None:
            lasts, (lines, blank, unparsed) = fast
        else:
            k, lasts, lines, blank, unparsed = self._one_by_one(units, first, gap)
            if not k:
                return 0, 0, 0, 0
            cols = [col[:k] for col in cols]
        floats = self._floats(cols)
        if floats is None:
            return 0, 0, 0, 0
        self._put(lasts, floats)
        return len(lasts), lines, blank, unparsed

    @overload
    def split(self, text: str) -> tuple[str, list[list[str]], str] | None: ...
    @overload
    def split(
        self, text: memoryview, marks: tuple[bytes, ...]
    ) -> tuple[bytes, list[list[bytes]], bytes] | None: ...
    def split(
        self, text: str | memoryview, marks: tuple[bytes, ...] = ()
    ) -> tuple[Any, list[list[Any]], Any] | None:
        """A buffer (ending in a newline) that holds lines, then units that follow each other, then lines:
        (the text before the units, the units' columns as `apply` numbers them, the text after). None when
        there is no unit, or the units do not all follow each other (`pattern().finditer` reads it). Bytes
        are read undecoded: `\\d` and the bar's bounds accept less there (ASCII digits, bytes not
        characters), never more, and numbers and the newlines around units read the same; the dict values
        are read loosely there (`_floats` checks them). A memoryview of bytes is read in place; None too
        when one of `marks` (single lines, or a line ending as no unit line ends and the next) is in the
        text around the units or in a gap: no bar or dict line of a unit can hold one. A gap text most units
        share is learned (`_bytes_re`): the gap column then holds None for it."""
        if self.pattern() is None:
            return None
        pattern: Any = self._re if isinstance(text, str) else self._re_bytes
        pieces = pattern.split(text)  # text before, each unit's groups, text between, ..., text after
        stride = pattern.groups + 1
        inner, pre = pieces[stride:-1:stride], pieces[0]
        newline = "\n" if isinstance(text, str) else b"\n"
        if not isinstance(text, str) and (len(pieces) > 1 or len(text) > SMALL):
            self.refused = True  # (until a buffer is taken)
        if len(pieces) == 1:
            return None
        if inner.count(newline[:0]) != len(inner) or (pre and pre[-1:] != newline):
            return None
        cols = [pieces[j::stride] for j in range(1, stride)]
        if isinstance(text, str):
            return pre, cols, pieces[-1]
        gaps = cols[-1]
        first = gaps.count(gaps[0])
        texts = {gaps[0]} if first == len(gaps) else set(gaps)
        texts.discard(None)
        names = "".join(self._names).encode()
        self.refused = any(m in t for m in marks for t in (pre, pieces[-1], names, *texts))
        if self.refused:
            return None
        if gaps[0] is not None and 2 * first > len(gaps) and 0 < len(gaps[0]) <= COMMON_GAP:
            self._bytes_re(gaps[0])  # most units' gap
        return pre, cols, pieces[-1]

    def apply_columns(self, cols: Sequence[Sequence[Any]], gap: Gap) -> tuple[int, int, int] | None:
        """All the units of `split` at once, or none (None) when one is not canonical: (lines, blank,
        unparsed)."""
        fast = self._uniform(cols, gap) if self.ready() else None
        floats = self._floats(cols) if fast is not None else None
        if fast is None or floats is None:
            return None
        self._put(fast[0], floats)
        return fast[1]

    def _floats(self, cols: Sequence[Sequence[Any]]) -> list[list[float]] | None:
        """The dict values of `split`'s units, a list per name; None when one is not what the layout's
        regex accepts. Bytes values were read loosely (only digits and `.eE+-`): one that float() takes is
        a number `hf.VALUE` accepts (float() adds only `_`, spaces, letters)."""
        try:
            return [floats(col) for col in cols[REDRAWS : REDRAWS + len(self._names)]]
        except ValueError:
            return None

    def _put(self, lasts: list[int], floats: list[list[float]]) -> None:
        """The rows of units whose last redraws are `lasts` and whose values are `floats` (a column per
        name), to the sink as columns (no dict per row)."""
        self.sink.put_columns(lasts, tuple(self._names), floats)
        hf = self.hf
        hf.bar_n = hf.last_step = lasts[-1]
        hf.dict_lines += len(lasts)

    def _uniform(
        self, cols: Sequence[Sequence[Any]], gap: Gap
    ) -> tuple[list[int], tuple[int, int, int]] | None:
        """The common run, checked column-wise: every unit has the same number of redraws, rising past the
        step before and never going back, and no gap line may carry state. Returns (last redraw of each
        unit, (lines, blank, unparsed)) when all units are canonical, else None (`_one_by_one` finds where
        the run stops)."""
        bars = cols[:REDRAWS]  # a unit's missing redraws are its last groups (each the same optional pattern)
        m = next((j for j, col in enumerate(bars) if col[0] is None), REDRAWS)
        if m == 0 or any(col.count(None) != len(col) for col in bars[m:]):
            return None
        try:  # a None here is a unit with fewer redraws (so are the columns before: None trails)
            lasts = list(map(int, bars[m - 1]))
        except TypeError:
            return None
        if not all(map(lt, [self.sink.step, *lasts[:-1]], lasts)):
            return None
        ns, rising = lasts, True  # the redraw column after (ints), whether it never goes down
        for k in range(m - 2, -1, -1):  # each redraw column at most its next one, unit by unit
            if rising and bars[k][1:] == bars[k + 1][:-1]:  # tqdm drew the unit before's redraw again
                if int(bars[k][0]) > ns[0]:
                    return None
                ns = [int(bars[k][0]), *ns[:-1]]  # (stays rising)
            else:
                col = list(map(int, bars[k]))
                if not all(map(le, col, ns)):
                    return None
                ns, rising = col, False
        total = [2 * len(lasts), 0, 0]  # lines, blank, unparsed
        gaps = cols[-1]  # mostly one text (a warning printed every step): no hashing then
        same = gaps.count(gaps[0]) == len(gaps)
        for text, times in [(gaps[0], len(gaps))] if same else Counter(gaps).items():
            counts = gap(as_text(text if text is not None else self._common or b""))
            if counts is None:
                return None
            for i, c in enumerate(counts):
                total[i] += c * times
        return lasts, (total[0], total[1], total[2])

    def _one_by_one(
        self, units: list[tuple[Any, ...]], first: int, gap: Gap
    ) -> tuple[int, list[int], int, int, int]:
        """Units from `first` while canonical: (count, each one's last redraw, lines, blank, unparsed)."""
        prev = self.sink.step
        lasts: list[int] = []
        lines = blank = unparsed = 0
        known: dict[str, tuple[int, int, int] | None] = {}
        for g in islice(units, first, None):
            ns = [int(n) for n in g[:REDRAWS] if n is not None]
            last = ns[-1]
            if last <= prev or (len(ns) > 1 and ns != sorted(ns)):
                break  # the bar did not move past the last step, or went back within the line
            text = g[-1]
            counts = known.get(text, ...)
            if counts is ...:
                counts = known[text] = gap(text)
            if counts is None:
                break
            lasts.append(last)
            lines += 2 + counts[0]
            blank += counts[1]
            unparsed += counts[2]
            prev = last
        return len(lasts), lasts, lines, blank, unparsed
