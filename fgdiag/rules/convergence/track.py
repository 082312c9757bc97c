"""The points of one judged loss for FGD601/FGD602 (`Track`) and the at/above-chance judgement of a window of
them (`verdict`): the bookkeeping `chance.LossVsChance` streams rows into, kept apart from the rule.

A point is at chance when its loss lies within [ln K (1 - TOL), ln K + margin]; a window is at chance (or
above it) when SHARE of its points are.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, compress, islice, repeat
from operator import gt, is_not, itemgetter, lt, mul, not_
from typing import Any, cast

from fgdiag.rules.convergence.candidates import Level
from fgdiag.rules.series import SERIES_CAP, superseded

TOL = 0.02  # A1: |loss - ln K| < 2 % ln K; the band's lower edge
MARGIN = 0.1  # A2: ln K + 0.1 is clearly above chance (10 % of ln K for small K)
SHARE = 0.8


def printed(c: float) -> Level:
    return Level(c, c, True, "ln K printed in the log")


def margin(c: float) -> float:
    return min(MARGIN, 0.1 * c)


class Track:
    """One judged loss: every point (step, loss: the ln n inference reads them) and, apart, the points whose
    K is known (step, loss, ln K range, exact, source): a window is the last of those, whatever lies between.
    `steps`/`losses` and the `k_` lists each keep their newest 2 x SERIES_CAP points."""

    __slots__ = (
        "evaluated",
        "exact",
        "hi",
        "index",
        "judged",
        "k_added",
        "k_losses",
        "k_steps",
        "lo",
        "losses",
        "name",
        "source",
        "sources",
        "steps",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.k_steps: list[int] = []
        self.k_losses: list[float] = []
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.exact: list[bool] = []
        self.source: list[int] = []  # per known point: index into `sources`
        self.sources: list[str] = []  # where K came from
        self.index: dict[str, int] = {}  # source -> its index in `sources`
        self.judged = False  # a full window was judged while streaming
        self.k_added = 0  # points with a known K ever added (a step logged again does not count)
        self.evaluated: tuple[int, int, int] | None = None  # (k_added, start, size) of the last window judged

    def add(self, step: int, loss: float, level: Level | None) -> None:
        steps, k_steps = self.steps, self.k_steps
        cut = superseded(steps, step)  # the newest values replace those of the steps logged again
        del steps[cut:], self.losses[cut:]
        cut = superseded(k_steps, step)
        replaced = cut < len(k_steps)  # a known point of this step was there: it is not a new one
        for lst in (k_steps, self.k_losses, self.lo, self.hi, self.exact, self.source):
            del lst[cut:]
        steps.append(step)
        self.losses.append(loss)
        if level is not None:
            if not replaced:
                self.k_added += 1
            k_steps.append(step)
            self.k_losses.append(loss)
            self.lo.append(level.lo)
            self.hi.append(level.hi)
            self.exact.append(level.exact)
            j = self.index.get(level.source)
            if j is None:
                j = self.index[level.source] = len(self.sources)
                self.sources.append(level.source)
            self.source.append(j)
            if len(k_steps) > 2 * SERIES_CAP:
                for lst in (k_steps, self.k_losses, self.lo, self.hi, self.exact, self.source):
                    del lst[:SERIES_CAP]
        if len(steps) > 2 * SERIES_CAP:
            del steps[:SERIES_CAP], self.losses[:SERIES_CAP]

    def extend(self, steps: list[int], losses: list[float]) -> None:
        """Points without a known K, steps rising (the first may be the last one's, logged again)."""
        if steps and self.steps and self.steps[-1] == steps[0]:
            self.add(steps[0], losses[0], None)
            steps, losses = steps[1:], losses[1:]
        self.steps += steps
        self.losses += losses
        n = len(self.steps)
        if n > 2 * SERIES_CAP:  # what `add` keeps cutting the oldest SERIES_CAP, in one cut
            cut = n - (SERIES_CAP + 1 + (n - 2 * SERIES_CAP - 1) % SERIES_CAP)
            del self.steps[:cut], self.losses[:cut]

    def extend_points(
        self, steps: list[int], losses: list[float], levels: list[Level | None]
    ) -> tuple[int, int, list[int]]:
        """Append points of strictly rising steps (after the last one) at once, untrimmed (`trim` follows),
        column-wise (C-level loops: this is the hot path of a long log). Returns (known points, points with a
        known K ever added) before them and, per point, the known points among them up to it: the window as
        of that point."""
        self.steps += steps
        self.losses += losses
        mask = list(map(is_not, levels, repeat(None)))
        known = cast("list[Level]", list(compress(levels, mask)))
        sources = list(map(itemgetter(3), known))
        index = self.index
        for source in dict.fromkeys(sources):  # first-seen order, as point by point
            if source not in index:
                index[source] = len(self.sources)
                self.sources.append(source)
        k0, a0 = len(self.k_steps), self.k_added
        self.k_steps += compress(steps, mask)
        self.k_losses += compress(losses, mask)
        self.lo += map(itemgetter(0), known)
        self.hi += map(itemgetter(1), known)
        self.exact += map(itemgetter(2), known)
        self.source += map(index.__getitem__, sources)
        self.k_added += len(known)
        return k0, a0, list(accumulate(mask))

    def trim(self, before: int, k_before: int) -> None:
        """After `extend_points` (and the windows judged on the untrimmed lists), keep what a point-by-point
        `add` would have kept: it cuts the oldest SERIES_CAP whenever 2 x SERIES_CAP is passed."""
        cap = SERIES_CAP
        for lists, start in (
            ((self.steps, self.losses), before),
            ((self.k_steps, self.k_losses, self.lo, self.hi, self.exact, self.source), k_before),
        ):
            n = len(lists[0])
            keep = n if n <= 2 * cap or start > 2 * cap else cap + 1 + (n - 2 * cap - 1) % cap
            for lst in lists:
                del lst[: n - keep]

    def mark(self) -> tuple[Any, ...]:
        """A copy of the state (a few thousand points at most: cheap once per batch)."""
        lists = (
            self.steps,
            self.losses,
            self.k_steps,
            self.k_losses,
            self.lo,
            self.hi,
            self.exact,
            self.source,
        )
        copies = tuple(list(lst) for lst in lists)
        return (*copies, list(self.sources), dict(self.index), self.judged, self.evaluated, self.k_added)

    def rollback(self, mark: tuple[Any, ...]) -> None:
        """Back to the state of `mark`."""
        (self.steps, self.losses, self.k_steps, self.k_losses, self.lo, self.hi, self.exact, self.source) = (
            mark[:8]
        )
        self.sources, self.index, self.judged, self.evaluated, self.k_added = mark[8:]

    def where(self, idx: Sequence[int]) -> str:
        """Where K came from for the known points `idx`, most frequent first."""
        counts: dict[int, int] = {}
        for i in idx:
            counts[self.source[i]] = counts.get(self.source[i], 0) + 1
        return "; ".join(self.sources[j] for j in sorted(counts, key=lambda j: -counts[j])) or "K unknown"

    def known(self, start: int, last: int | None = None, end: int | None = None) -> range:
        """Indices (into the `k_` lists) of the known points after the trend start (the last `last` of the
        first `end`: the window as of an earlier point); a range, not a list: windows are judged often."""
        k_steps = self.k_steps
        n = len(k_steps) if end is None else end
        j = 0 if last is None else max(0, n - last)
        while j < n and k_steps[j] <= start:
            j += 1
        return range(j, n)

    def infer(self, idx: list[int], c: float, source: str) -> list[int]:
        """Make the points `idx` (into `steps`) the known points, all at ln K = c; returns their indices."""
        self.k_steps = [self.steps[i] for i in idx]
        self.k_losses = [self.losses[i] for i in idx]
        self.lo, self.hi, self.exact = [c] * len(idx), [c] * len(idx), [False] * len(idx)
        self.sources, self.index = [source], {source: 0}
        self.source = [0] * len(idx)
        return list(range(len(idx)))


def verdict(track: Track, idx: Sequence[int]) -> dict[str, Any]:
    """At/above-chance judgement of the points `idx` and the numbers a finding states.

    At chance: 80 % of the points in the band, or the window's mean loss in the band of its mean ln K with
    fewer than half the points below it (where K is a sample of the step's forward passes, as in the fork's
    [DIAG] blocks, single points scatter around ln K both ways; their level is what sits at chance)."""
    a, b = idx[0], idx[-1] + 1  # known points are contiguous: slices (C-level)
    losses, los, his = track.k_losses[a:b], track.lo[a:b], track.hi[a:b]
    exact = all(track.exact[a:b])
    n = len(losses)
    h0, l0 = his[0], los[0]
    if his.count(h0) == n and los.count(l0) == n:  # one K over the window (the common case): C-level counts
        top, floor = h0 + (MARGIN if h0 >= 1.0 else MARGIN * h0), l0 * (1 - TOL)
        above = sum(map(top.__lt__, losses))
        below = sum(map(floor.__gt__, losses))
    else:
        tops = [h + (MARGIN if h >= 1.0 else MARGIN * h) for h in his]  # margin(h), inlined: this is hot
        floors = [x * (1 - TOL) for x in los]
        above = sum(map(gt, losses, tops))
        below = sum(map(lt, losses, floors))
    at = n - above - below
    mean_loss = sum(losses) / n
    mean_lo = sum(los) / n
    mean_hi = sum(his) / n
    level_at = mean_lo * (1 - TOL) <= mean_loss <= mean_hi + margin(mean_hi) and below < 0.5 * n
    return {
        "at": at >= SHARE * n or level_at,
        "above": exact and above >= SHARE * n and mean_loss - mean_hi > margin(mean_hi),
        "exact": exact,
        "n_at": at,
        "n_above": above,
        "points": n,
        "from": track.k_steps[idx[0]],
        "to": track.k_steps[idx[-1]],
        "loss": mean_loss,
        "chance": (mean_lo + mean_hi) / 2,
    }


def below_counts(track: Track, base: int = 0) -> tuple[list[int], list[int], int]:
    """Prefix counts, from the known point `base` on, of the known points below their band (loss < ln K_lo x
    (1 - TOL), as `verdict` counts them) and of those with an inexact K: the counts of any window from there
    at once, while the known points stay as they are."""
    floors = map(mul, islice(track.lo, base, None), repeat(1 - TOL))
    below = list(accumulate(map(lt, islice(track.k_losses, base, None), floors), initial=0))
    return below, list(accumulate(map(not_, islice(track.exact, base, None)), initial=0)), base


def settled(
    track: Track, idx: Sequence[int], counts: tuple[list[int], list[int], int]
) -> dict[str, Any] | None:
    """`verdict`'s at/above/exact when half the window's points or more lie below their band: then neither
    holds (at most half are at or above it, SHARE > 0.5; the level needs fewer than half below), whatever
    the means. None: judge the window with `verdict`."""
    below, inexact, base = counts
    a, b = idx[0] - base, idx[-1] + 1 - base
    if below[b] - below[a] < 0.5 * (b - a):
        return None
    return {"at": False, "above": False, "exact": inexact[b] == inexact[a]}
