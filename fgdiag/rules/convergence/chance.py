"""FGD601 (a loss at chance ln K) and FGD602 (above chance), for every contrastive head and a foreign log's
main loss, judged on windows of optimizer steps that hold at least a few logging points.

Chance is ln K_t of each logging step (K changes when the memory bank switches on), with K from
`candidates.Resolver`. A point is at chance when its loss lies within [ln K (1 - 2 %), ln K + margin]: below
that band the head has learnt something, above it the loss is worse than guessing. A window is at chance (or
above it) when at least 80 % of its points are. A short log is judged once at its end on the points it has
(at least 5 after the warm-up); a loss whose K nobody printed is judged there too when it sits on ln n for a
small integer n on 80 % of the points after the warm-up (two candidates per batch: ln 2; ten classes: ln 10).
Every finding states its evidence: points, steps, share, margin and where K came from.
"""

from __future__ import annotations

import math
from typing import Any

from fgdiag.rules.convergence.candidates import MAIN, READS, TRACKS, Level, Resolver, loss_of
from fgdiag.rules.engine import Check, Row, RuleEngine
from fgdiag.rules.registry import register, runtime_check
from fgdiag.rules.series import SERIES_CAP, median

register(
    "FGD601",
    "loss-at-chance",
    "error",
    what="A contrastive loss (region, global or hard-negative head, or a log's only loss) sits at chance "
    "ln K on >= 80 % of the logging points of a window after the warm-up (at least 5 points; a short log "
    "is judged on what it has). K is printed by the log, given with --candidates, or inferred (batch per "
    "device x world size, memory-bank fill + regions, or the loss sitting on ln n for a small n).",
    why="At chance the head learns nothing; K changes when the bank activates, so the line is ln K_t. A loss "
    "at ln K at step 0 is normal (random init); one that stays there is not.",
    example="region_loss 1.386 for 200 steps with K = 4; global loss 0.693 for a whole run at batch 2",
    fix="Check the head's scale (FGD101), the boxes (FGD301), the pairing of boxes and captions, and that "
    "the features reach the loss (not detached, not zero).",
)
register(
    "FGD602",
    "loss-above-chance",
    "error",
    what="A contrastive loss sits above chance ln K (by 0.1, or 10 % of ln K for small K) on >= 80 % of the "
    "logging points of a window, with K known (printed, given, or the batch with a stated world size).",
    why="Above chance means the model is worse than guessing: the targets point to the wrong column "
    "(misaligned labels), negatives duplicate the positive, or training diverges.",
    example="region_loss 5.1 with K = 132 (ln K = 4.88)",
    fix="Check the pairing of boxes and captions, mask duplicate captions in the queue, check gradient "
    "scale (FGD502) and learning rate.",
)

TOL = 0.02  # A1: |loss - ln K| < 2 % ln K; the band's lower edge
MARGIN = 0.1  # A2: ln K + 0.1 is clearly above chance (10 % of ln K for small K)
SHARE = 0.8
MIN_POINTS = 5
SMALL_N = 20  # ln n inferred only for n <= 20 (ln 2 ... ln 20: their bands do not overlap)
PRECISE = 0.01  # at chance a softmax loss sits on ln K within about 1 %


def margin(c: float) -> float:
    return min(MARGIN, 0.1 * c)


class Track:
    """Points of one judged loss (parallel lists; `lo` is None where K is unknown)."""

    __slots__ = ("exact", "hi", "index", "judged", "lo", "losses", "name", "source", "sources", "steps")

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.lo: list[float | None] = []
        self.hi: list[float] = []
        self.exact: list[bool] = []
        self.source: list[int] = []  # per point: index into `sources` (-1: K unknown)
        self.sources: list[str] = []  # where K came from
        self.index: dict[str, int] = {}  # source -> its index in `sources`
        self.judged = False  # a full window was judged while streaming

    def add(self, step: int, loss: float, level: Level | None) -> None:
        lists = (self.steps, self.losses, self.lo, self.hi, self.exact, self.source)
        if self.steps and self.steps[-1] == step:
            for lst in lists:
                lst.pop()
        self.steps.append(step)
        self.losses.append(loss)
        self.lo.append(level.lo if level is not None else None)
        self.hi.append(level.hi if level is not None else math.nan)
        self.exact.append(level is not None and level.exact)
        if level is None:
            self.source.append(-1)
        else:
            j = self.index.get(level.source)
            if j is None:
                j = self.index[level.source] = len(self.sources)
                self.sources.append(level.source)
            self.source.append(j)
        if len(self.steps) > 2 * SERIES_CAP:
            for lst in lists:
                del lst[:SERIES_CAP]

    def where(self, idx: list[int]) -> str:
        """Where K came from for the points `idx`, most frequent first."""
        counts: dict[int, int] = {}
        for i in idx:
            if self.source[i] >= 0:
                counts[self.source[i]] = counts.get(self.source[i], 0) + 1
        return "; ".join(self.sources[j] for j in sorted(counts, key=lambda j: -counts[j])) or "K unknown"

    def known(self, start: int, last: int | None = None) -> list[int]:
        """Indices of the points after the trend start with a known K (only the last `last` of them: walked
        from the end, so a window costs its own length)."""
        steps, lo = self.steps, self.lo
        if last is None:
            return [i for i in range(len(steps)) if steps[i] > start and lo[i] is not None]
        out: list[int] = []
        i = len(steps) - 1
        while i >= 0 and steps[i] > start and len(out) < last:
            if lo[i] is not None:
                out.append(i)
            i -= 1
        out.reverse()
        return out


def verdict(track: Track, idx: list[int]) -> dict[str, Any]:
    """At/above-chance judgement of the points `idx` and the numbers a finding states.

    At chance: 80 % of the points in the band, or the window's mean loss in the band of its mean ln K with
    fewer than half the points below it (where K is a sample of the step's forward passes, as in the fork's
    [DIAG] blocks, single points scatter around ln K both ways; their level is what sits at chance)."""
    at = above = below = 0
    exact = all(track.exact[i] for i in idx)
    for i in idx:
        loss, lo, hi = track.losses[i], track.lo[i], track.hi[i]
        assert lo is not None
        if loss > hi + margin(hi):
            above += 1
        elif loss >= lo * (1 - TOL):
            at += 1
        else:
            below += 1
    n = len(idx)
    mean_loss = sum(track.losses[i] for i in idx) / n
    mean_lo = sum(track.lo[i] or 0.0 for i in idx) / n
    mean_hi = sum(track.hi[i] for i in idx) / n
    level_at = mean_lo * (1 - TOL) <= mean_loss <= mean_hi + margin(mean_hi) and below < 0.5 * n
    return {
        "at": at >= SHARE * n or level_at,
        "above": exact and above >= SHARE * n and mean_loss - mean_hi > margin(mean_hi),
        "n_at": at,
        "n_above": above,
        "points": n,
        "from": track.steps[idx[0]],
        "to": track.steps[idx[-1]],
        "loss": mean_loss,
        "chance": (mean_lo + mean_hi) / 2,
    }


@runtime_check
class LossVsChance(Check):
    """FGD601 / FGD602 per track (see the module docstring)."""

    codes = ("FGD601", "FGD602")
    reads = READS

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        self.tracks = {name: Track(name) for name in TRACKS}
        self.resolver = Resolver()
        self.heads_seen = False  # a head loss appeared: the main loss is not judged

    def configure(self) -> None:
        self.resolver.configure(self.engine.run_info)

    def observe(self, step: int, m: Row) -> None:
        e, info = self.engine, self.engine.run_info
        for name, track in self.tracks.items():
            if name == MAIN and self.heads_seen:
                continue
            loss = loss_of(name, m, info)
            if loss is None:
                continue
            if name != MAIN:
                self.heads_seen = True
            track.add(step, loss, self.resolver.level(name, m))
            if e.heavy:
                idx = track.known(e.start, e.window)
                if len(idx) >= e.window:
                    track.judged = True
                    self._report(track, idx, verdict(track, idx), step)
                elif not track.judged:
                    why = f"fewer than {e.window} logging points with a known K after step {e.start} so far"
                    e.why("FGD601", why)
                    e.why("FGD602", why)

    def finish(self) -> None:
        e = self.engine
        start = e.trend_start()
        for name, track in self.tracks.items():
            if not track.steps or (name == MAIN and self.heads_seen):
                continue
            idx = track.known(start)
            if not track.judged and len(idx) >= MIN_POINTS:
                self._report(track, idx, verdict(track, idx), track.steps[-1])
            elif not track.judged:
                self._ln_n(track, start)
        if not any(t.judged or t.steps for t in self.tracks.values()):
            reason = "no head loss or loss in this log"
            e.why("FGD601", reason)
            e.why("FGD602", reason)

    def _ln_n(self, track: Track, start: int) -> None:
        """The last resort for a loss whose K nobody printed: at chance a softmax loss sits on ln K to a
        fraction of a percent, so a loss whose last window sits on ln n (n <= 20) within -1/+3 %, that
        never went below ln n and held its band on most points after the warm-up, gives K = n."""
        e = self.engine
        idx = [i for i, s in enumerate(track.steps) if s > start]
        w = max(MIN_POINTS, min(e.window_points(), len(idx) // 2))
        if len(idx) < MIN_POINTS:
            reason = f"fewer than {MIN_POINTS} logging points after step {start} (warm-up)"
            e.why("FGD601", reason)
            e.why("FGD602", reason)
            return
        losses = [track.losses[i] for i in idx]
        level = median(losses[-w:])
        n = round(math.exp(level)) if level < math.log(SMALL_N + 1) else 0
        c = math.log(n) if 2 <= n <= SMALL_N else 0.0
        sits = c > 0 and all(c * (1 - PRECISE) <= v <= c * (1 + 3 * PRECISE) for v in losses[-w:])
        if not sits or min(losses) < c * (1 - TOL):
            e.why("FGD601", "no candidate count in this log; pass --candidates")
            e.why("FGD602", "no candidate count in this log; pass --candidates")
            return
        for i in idx:
            track.lo[i], track.hi[i], track.exact[i] = c, c, False
        track.sources.append(
            f"K = {n} inferred: the loss sits on ln {n} = {c:.4f} (confirm with --candidates)"
        )
        track.index[track.sources[-1]] = len(track.sources) - 1
        for i in idx:
            track.source[i] = len(track.sources) - 1
        found = verdict(track, idx)
        e.judge("FGD601")
        e.why("FGD602", "K inferred from the loss level: above chance is not judged")
        if found["n_at"] >= 0.5 * len(idx):
            tail = idx[-w:]
            self._report(track, tail, verdict(track, tail), track.steps[-1])

    def _report(self, track: Track, idx: list[int], found: dict[str, Any], step: int) -> None:
        e = self.engine
        e.judge("FGD601")
        if found["above"] or all(track.exact[i] for i in idx):
            e.judge("FGD602")
        else:
            e.why("FGD602", f"{track.name}: K known only as a lower bound or range")
        label = "loss" if track.name == MAIN else f"{track.name} loss"
        where = track.where(idx)
        evidence = {
            "track": track.name,
            "loss": found["loss"],
            "chance": found["chance"],
            "points": found["points"],
            "from": found["from"],
            "to": found["to"],
            "k_source": where,
        }
        span = f"{found['points']} logging steps {found['from']}-{found['to']}"
        if e.gate(f"FGD601/{track.name}", found["at"]):
            e.emit(
                "FGD601",
                f"{label} {found['loss']:.4f} sits at chance (mean ln K {found['chance']:.4f}, "
                f"band -{TOL:.0%} "
                f"to +{margin(found['chance']):.2g}; {found['n_at']} points in it) over {span}; {where}",
                step,
                evidence={**evidence, "share": found["n_at"] / found["points"]},
            )
        if e.gate(f"FGD602/{track.name}", found["above"]):
            e.emit(
                "FGD602",
                f"{label} {found['loss']:.4f} is above chance ln K {found['chance']:.4f} by "
                f"{found['loss'] - found['chance']:.2f} on {found['n_above']} of {span}; {where}",
                step,
                evidence={**evidence, "share": found["n_above"] / found["points"]},
            )
