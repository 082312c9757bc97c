"""The points of one judged loss for FGD601/FGD602 (`Track`) and the at/above-chance judgement of a window of
them (`verdict`): the bookkeeping `chance.LossVsChance` streams rows into, kept apart from the rule.

A point is at chance when its loss lies within [ln K (1 - TOL), ln K + margin]; a window is at chance (or
above it) when SHARE of its points are.
"""

from __future__ import annotations

from itertools import accumulate
from operator import gt, lt
from typing import Any

from fgdiag.rules.convergence.candidates import Level
from fgdiag.rules.series import SERIES_CAP

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
        replaced = False  # a known point of this step was there: it is not a new one
        if steps and steps[-1] == step:  # the step logged again: its newest values replace the point
            steps.pop()
            self.losses.pop()
            if k_steps and k_steps[-1] == step:
                replaced = True
                for lst in (k_steps, self.k_losses, self.lo, self.hi, self.exact, self.source):
                    lst.pop()
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
        while len(self.steps) > 2 * SERIES_CAP:  # as `add` trims, a block at a time
            del self.steps[:SERIES_CAP], self.losses[:SERIES_CAP]

    def extend_points(self, points: list[tuple[int, float, Level | None, int]]) -> list[tuple[int, int]]:
        """Append points of strictly rising steps (after the last one) at once, untrimmed (`trim` follows);
        returns, per point, (known points, points with a known K ever added) after it, for its window as of
        that point."""
        known = [(p[0], p[1], p[2]) for p in points if p[2] is not None]
        self.steps += [p[0] for p in points]
        self.losses += [p[1] for p in points]
        levels = [lv for _s, _v, lv in known if lv is not None]
        index = self.index
        for level in levels:
            if level.source not in index:
                index[level.source] = len(self.sources)
                self.sources.append(level.source)
        k0, a0 = len(self.k_steps), self.k_added
        self.k_steps += [p[0] for p in known]
        self.k_losses += [p[1] for p in known]
        self.lo += [lv.lo for lv in levels]
        self.hi += [lv.hi for lv in levels]
        self.exact += [lv.exact for lv in levels]
        self.source += [index[lv.source] for lv in levels]
        self.k_added += len(known)
        after = list(accumulate(p[2] is not None for p in points))
        return [(k0 + c, a0 + c) for c in after]

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

    def where(self, idx: list[int]) -> str:
        """Where K came from for the known points `idx`, most frequent first."""
        counts: dict[int, int] = {}
        for i in idx:
            counts[self.source[i]] = counts.get(self.source[i], 0) + 1
        return "; ".join(self.sources[j] for j in sorted(counts, key=lambda j: -counts[j])) or "K unknown"

    def known(self, start: int, last: int | None = None, end: int | None = None) -> list[int]:
        """Indices (into the `k_` lists) of the known points after the trend start (the last `last` of the
        first `end`: the window as of an earlier point)."""
        k_steps = self.k_steps
        n = len(k_steps) if end is None else end
        j = 0 if last is None else max(0, n - last)
        while j < n and k_steps[j] <= start:
            j += 1
        return list(range(j, n))

    def infer(self, idx: list[int], c: float, source: str) -> list[int]:
        """Make the points `idx` (into `steps`) the known points, all at ln K = c; returns their indices."""
        self.k_steps = [self.steps[i] for i in idx]
        self.k_losses = [self.losses[i] for i in idx]
        self.lo, self.hi, self.exact = [c] * len(idx), [c] * len(idx), [False] * len(idx)
        self.sources, self.index = [source], {source: 0}
        self.source = [0] * len(idx)
        return list(range(len(idx)))


def verdict(track: Track, idx: list[int]) -> dict[str, Any]:
    """At/above-chance judgement of the points `idx` and the numbers a finding states.

    At chance: 80 % of the points in the band, or the window's mean loss in the band of its mean ln K with
    fewer than half the points below it (where K is a sample of the step's forward passes, as in the fork's
    [DIAG] blocks, single points scatter around ln K both ways; their level is what sits at chance)."""
    a, b = idx[0], idx[-1] + 1  # known points are contiguous: slices (C-level)
    losses, los, his = track.k_losses[a:b], track.lo[a:b], track.hi[a:b]
    exact = all(track.exact[a:b])
    n = len(losses)
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
