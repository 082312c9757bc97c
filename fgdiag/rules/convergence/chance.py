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
from collections.abc import Mapping, Sequence
from itertools import compress, repeat
from operator import eq, le, ne
from typing import Any, NamedTuple

from fgdiag import events as ev
from fgdiag.rules.batch import Batch, all_finite, finite_values
from fgdiag.rules.convergence.candidates import (
    CHANCES,
    COUNTS,
    GLOBAL_PARTS,
    HEAD_LOSSES,
    MAIN,
    READS,
    REGION,
    REGION_PART,
    TRACKS,
    Level,
    Resolver,
    loss_of,
)
from fgdiag.rules.convergence.track import TOL, Track, below_counts, margin, printed, settled, verdict
from fgdiag.rules.engine import Check, Row, RuleEngine
from fgdiag.rules.registry import register, runtime_check
from fgdiag.rules.series import finite, median

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

MIN_POINTS = 5
STRIDE = 10  # a window is judged again after a tenth of a window of new points
SMALL_N = 20  # ln n inferred only for n <= 20 (ln 2 ... ln 20: their bands do not overlap)
PRECISE = 0.01  # at chance a softmax loss sits on ln K within about 1 %


FALLBACKS = frozenset((*GLOBAL_PARTS, REGION_PART))


class Columns(NamedTuple):
    """A track's points of a batch, column-wise: their steps (rising), losses and levels (None: K unknown),
    the batch rows they came from, and per row its point (None: one point per row)."""

    track: Track
    steps: list[int]
    losses: list[float]
    levels: list[Level | None]
    rows: list[int]
    point_of: list[int] | None

    def point(self, row: int) -> int:
        return row if self.point_of is None else self.point_of[row]


def due(track: Track, start: int, w: int, added: int) -> bool:
    """The track's last window is judged (again): a new trend start or window, or a tenth of a window of new
    points with a known K since it was judged (`added`: points with a known K ever added)."""
    last = track.evaluated
    return last is None or last[1:] != (start, w) or added - last[0] >= max(1, w // STRIDE)


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
        # the quick path's `below_counts` per track, built once per batch
        self.below: dict[str, tuple[list[int], list[int], int]] | None = None
        self.reach = 0  # the largest window of the batch (the known points its windows can reach back)

    def configure(self) -> None:
        self.resolver.configure(self.engine.run_info)

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        for track in self._add(step, m):
            if e.heavy:
                self._window(track, e.start, e.window, step)

    def _add(self, step: int, m: Row) -> list[Track]:
        """Record the row's point on every track it holds a loss for; returns those tracks."""
        info, out = self.engine.run_info, []
        for name, track in self.tracks.items():
            if name == MAIN and self.heads_seen:
                continue
            loss = loss_of(name, m, info)
            if loss is None:
                continue
            if name != MAIN:
                self.heads_seen = True
            track.add(step, loss, self.resolver.level(name, m))
            out.append(track)
        return out

    def _columns(self, batch: Batch) -> list[Columns] | None:
        """Each track's points of the batch, read from its columns (see `Columns`); None when the batch
        needs the row-by-row path: losses only in fallback names (weighted parts), the first head losses of
        the log, or a step logged again with other values."""
        names = batch.names()
        if FALLBACKS & names:
            return None
        heads = [h for h in TRACKS if h != MAIN and HEAD_LOSSES[h] in names]
        if heads and not self.heads_seen and not self._heads_first(batch, heads):
            return None
        wanted = heads if heads or self.heads_seen else [MAIN]
        steps, rows, out = batch.steps, batch.rows, []
        inf, resolver, info = math.inf, self.resolver, self.engine.run_info
        for name in wanted:
            gi, values = batch.column(ev.LOSS if name == MAIN else HEAD_LOSSES[name])
            losses = finite_values(values)  # the list itself when all are finite (the common case)
            if losses is not values or 0.0 in losses:  # missing, non-finite or 0.0 values are dropped
                kept = list(filter(None, values))  # None and 0.0 are falsy: dropped at C level
                if all_finite(kept):
                    gi, losses = list(compress(gi, values)), kept
                else:
                    good = [
                        (i, v)
                        for i, v in zip(gi, values, strict=True)
                        if v is not None and -inf < v < inf and v
                    ]
                    gi, losses = [i for i, _ in good], [v for _, v in good]
            at = list(map(steps.__getitem__, gi))
            c_idx, c_vals = batch.column(CHANCES[name]) if name != MAIN else ([], [])
            if c_idx != gi:  # the rows' printed ln K (None: not printed), by row
                c_vals = list(map(dict(zip(c_idx, c_vals, strict=True)).get, gi))
            given: dict[float | None, Level | None] = {
                c: printed(c) for c in set(c_vals) if c is not None and 0 < c < inf
            }
            same = resolver.level(name, {})
            levels: list[Level | None]
            if name != MAIN and self._row_levels(name, names, info):
                levels = list(map(given.get, c_vals))  # ln K printed on the row, else its own K
                if None in levels:
                    levels = [
                        lv if lv is not None else resolver.level(name, rows[i][1])
                        for i, lv in zip(gi, levels, strict=True)
                    ]
            elif given:
                levels = list(map(given.get, c_vals, repeat(same)))
            else:
                levels = [same] * len(gi)
            point_of = None
            if any(map(eq, at, at[1:])):  # a step logged again: one point, with the same values
                kept_at: list[int] = []
                kept_loss: list[float] = []
                kept_levels: list[Level | None] = []
                point_of = []
                for step, loss, level in zip(at, losses, levels, strict=True):
                    if kept_at and kept_at[-1] == step:
                        if kept_loss[-1] != loss or kept_levels[-1] != level:
                            return None
                    else:
                        kept_at.append(step)
                        kept_loss.append(loss)
                        kept_levels.append(level)
                    point_of.append(len(kept_at) - 1)
                at, losses, levels = kept_at, kept_loss, kept_levels
            track = self.tracks[name]
            if at and track.steps and at[0] <= track.steps[-1]:
                return None
            out.append(Columns(track, at, losses, levels, gi, point_of))
        if heads:
            self.heads_seen = True
        return out

    def _heads_first(self, batch: Batch, heads: list[str]) -> bool:
        """The log's first head loss comes in this batch no later than its first main loss: row by row the
        main loss would be skipped from that row on (heads come first in TRACKS), as the columns skip it."""

        def first(name: str) -> int | None:
            gi, values = batch.column(name)
            return next((i for i, v in zip(gi, values, strict=True) if v and -math.inf < v < math.inf), None)

        firsts = [i for h in heads if (i := first(HEAD_LOSSES[h])) is not None]
        if not firsts:
            return False  # head losses only 0 or missing: no head is seen yet
        main = first(ev.LOSS)
        return main is None or main >= min(firsts)

    def _row_levels(self, name: str, names: set[str], info: Mapping[str, Any]) -> bool:
        """Whether a row without a printed ln K can still have its own K (a count, or the bank's fill with
        the regions it holds or a known batch per device)."""
        if COUNTS[name] in names:
            return True
        if name != REGION or finite(info.get("candidates")):
            return False
        return ev.REGIONS_VALID in names or (
            ev.MB_FILL in names and finite(info.get("per_device_train_batch_size"))
        )

    def _window(
        self,
        track: Track,
        start: int,
        w: int,
        step: int,
        ops: list[tuple[str, bool]] | None = None,
        at: tuple[int, int] | None = None,
    ) -> None:
        """Judge the last window of a track; with `ops` (the quick path) the episode gates are only recorded
        there, and nothing is emitted; `at` (known points, points ever added): the window as of an earlier
        point of a batch appended at once."""
        e = self.engine
        added = track.k_added if at is None else at[1]
        if not due(track, start, w, added):
            return
        track.evaluated = (added, start, w)
        idx = track.known(start, w, None if at is None else at[0])
        if len(idx) < w:
            if not track.judged:
                why = f"fewer than {w} logging points with a known K after step {start} so far"
                e.why("FGD601", why)
                e.why("FGD602", why)
            return
        track.judged = True
        if ops is None:
            self._report(track, idx, verdict(track, idx), step)
            return
        found = None
        if self.below is not None:  # the track's known points are fixed while its windows are judged
            below = self.below.get(track.name)
            if below is None:
                end = len(track.k_steps) if at is None else at[0]  # windows end there or later
                below = self.below[track.name] = below_counts(track, max(0, end - self.reach))
            found = settled(track, idx, below)
        if found is None:
            found = verdict(track, idx)
        self._judged(track, idx, found)
        ops += [(f"FGD601/{track.name}", found["at"]), (f"FGD602/{track.name}", found["above"])]

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Steps rising: the rows' points go in and the windows due on heavy rows are judged here; when a
        window would start a finding the batch is rolled back for `observe`, otherwise its episode gates
        are replayed as they were (an episode that stays open or clears emits nothing)."""
        e = self.engine
        steps = batch.steps
        last = max((t.steps[-1] for t in self.tracks.values() if t.steps), default=None)
        routed = list(map(steps.__getitem__, rows))
        if (last is not None and routed[0] < last) or not (batch.rises or all(map(le, routed, routed[1:]))):
            return None  # a step going back (a restart): row by row
        marks = {name: t.mark() for name, t in self.tracks.items()}
        heads_seen = self.heads_seen
        heavy, windows, start = batch.heavy, batch.windows, batch.start
        ops: list[tuple[str, bool]] = []
        columns = self._columns(batch)
        if columns is not None:  # a track at a time from the batch's columns (the common case)
            self.below, self.reach = {}, max(windows)
            for c in columns:
                track, at = c.track, c.steps
                heavy_rows = list(compress(range(len(c.rows)), map(heavy.__getitem__, c.rows)))
                if c.levels.count(None) == len(c.levels):  # no K: no window changes
                    track.extend(at, c.losses)
                    added = track.k_added  # it stays: a window is due again only where its size changes
                    sizes = list(map(windows.__getitem__, map(c.rows.__getitem__, heavy_rows)))
                    for r in compress(heavy_rows, map(ne, sizes, [None, *sizes[:-1]])):
                        w = windows[c.rows[r]]
                        if due(track, start, w, added):  # `_window`'s own check, without the call
                            self._window(track, start, w, at[c.point(r)], ops)
                    continue
                before, k_before = len(track.steps), len(track.k_steps)
                k0, a0, known = track.extend_points(at, c.losses, c.levels)
                for r in heavy_rows:  # the track's window as of that row's point
                    j, w = c.point(r), windows[c.rows[r]]
                    if due(track, start, w, a0 + known[j]):
                        self._window(track, start, w, at[j], ops, (k0 + known[j], a0 + known[j]))
                track.trim(before, k_before)
            self.below = None
        else:
            for i in rows:
                for track in self._add(steps[i], batch.rows[i][1]):
                    if heavy[i]:
                        self._window(track, start, windows[i], steps[i], ops)
        if e.gates_fire(ops):
            for name, t in self.tracks.items():
                t.rollback(marks[name])
            self.heads_seen = heads_seen
            return None
        e.apply_gates(ops)
        return []

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
        known = track.infer(
            idx, c, f"K = {n} inferred: the loss sits on ln {n} = {c:.4f} (confirm with --candidates)"
        )
        found = verdict(track, known)
        e.judge("FGD601")
        e.why("FGD602", "K inferred from the loss level: above chance is not judged")
        if found["n_at"] >= 0.5 * len(known):
            tail = known[-w:]
            self._report(track, tail, verdict(track, tail), track.steps[-1])

    def _judged(self, track: Track, idx: Sequence[int], found: dict[str, Any]) -> None:
        e = self.engine
        e.judge("FGD601")
        if found["above"] or found["exact"]:
            e.judge("FGD602")
        else:
            e.why("FGD602", f"{track.name}: K known only as a lower bound or range")

    def _report(self, track: Track, idx: Sequence[int], found: dict[str, Any], step: int) -> None:
        e = self.engine
        self._judged(track, idx, found)
        at = e.gate(f"FGD601/{track.name}", found["at"])
        above = e.gate(f"FGD602/{track.name}", found["above"])
        if not (at or above):
            return  # the common case: nothing new, no message to build
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
        if at:
            e.emit(
                "FGD601",
                f"{label} {found['loss']:.4f} sits at chance (mean ln K {found['chance']:.4f}, "
                f"band -{TOL:.0%} "
                f"to +{margin(found['chance']):.2g}; {found['n_at']} points in it) over {span}; {where}",
                step,
                evidence={**evidence, "share": found["n_at"] / found["points"]},
            )
        if above:
            e.emit(
                "FGD602",
                f"{label} {found['loss']:.4f} is above chance ln K {found['chance']:.4f} by "
                f"{found['loss'] - found['chance']:.2f} on {found['n_above']} of {span}; {where}",
                step,
                evidence={**evidence, "share": found["n_above"] / found["points"]},
            )
