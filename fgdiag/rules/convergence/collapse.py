"""FGD603, embedding collapse, from what logs print: the logits' range at a known scale (every logit of a
head above half the scale, or a narrow range where positives and negatives score alike while the head is at
chance), and a tiny cosine spread (`cos_std`) at chance. Zero-norm region features are FGD301's, never
collapse: rows that hold them are left out of the region head's window."""

from __future__ import annotations

import math
from itertools import compress, repeat
from operator import ge, is_not, itemgetter, mul, sub
from typing import Any

from fgdiag import events as ev
from fgdiag.rules.batch import Batch, all_finite, finite_values
from fgdiag.rules.engine import Check, Row, RuleEngine
from fgdiag.rules.registry import register, runtime_check
from fgdiag.rules.series import finite

register(
    "FGD603",
    "embedding-collapse",
    "warning",
    what="Embeddings collapsed onto one direction: every logit of a head above half its scale (all cosines "
    ">= 0.5), or all logits within a narrow band while positives and negatives score alike and the head "
    "stays at chance, on >= 80 % of a window's logging points at a known scale; or a tiny cosine spread "
    "(std < 0.005) at chance. Rows with zero-norm region features are left to FGD301.",
    why="Collapsed embeddings carry no information and the loss cannot go below chance.",
    example="region logits between 72 and 100 at scale 100 (every cosine >= 0.72); cosine std 0.002",
    fix="Lower the learning rate, check the temperature and that features are not detached.",
)


@runtime_check
class Collapse(Check):
    """FGD603: a tiny cosine spread (or logits std) on consecutive points while the head stays at chance."""

    codes = ("FGD603",)
    reads = (ev.COS_STD + "/", ev.LOGITS_STD + "/")
    keeps = (ev.COS_STD + "/", ev.LOGITS_STD + "/", ev.LOSS_OVER_CHANCE + "/")
    absent = "no cos_std or logits_std in this log"
    COS_STD_MIN = 0.005  # collapse: cosine spread / logits std nearly zero
    LOGITS_STD_MIN = 0.05
    POINTS = 3
    CHANCE_SHARE = 0.9  # ...and only while the head's loss stays >= 90 % of ln K
    NAMES = tuple((h, b, ev.head_metric(b, h)) for h in ev.HEADS for b in (ev.COS_STD, ev.LOGITS_STD))

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        for head, base, name in self.NAMES:
            if m.get(name) is None or m.get(LOGIT_NAMES[head][0]) is not None:
                continue  # with the logits' range the row is judged by CollapseFromLogits
            if step <= e.start:
                e.why("FGD603", "the log ends before trends are judged")
                continue
            e.judge("FGD603")
            limit = self.COS_STD_MIN if base == ev.COS_STD else self.LOGITS_STD_MIN
            pts = e.tail(name, self.POINTS)[1]
            tiny = len(pts) >= self.POINTS and all(math.isfinite(v) and v < limit for v in pts)
            # a tight spread is collapse only while the head stays at chance and stops improving over a whole
            # window; early in training (tiny models, small batches) spreads are tight but the loss falls
            w = max(self.POINTS, e.window)
            ratio = e.tail(ev.head_metric(ev.LOSS_OVER_CHANCE, head), w)[1]
            if tiny and ratio:
                recent = [v for v in ratio if math.isfinite(v)]
                tiny = (
                    len(recent) >= w
                    and min(recent) >= self.CHANCE_SHARE
                    and recent[0] - recent[-1] < 0.05 * recent[0]
                )
            if e.gate(f"FGD603/{name}", tiny):
                e.emit(
                    "FGD603",
                    f"{base} of the {head} head is {pts[-1]:.4g} (< {limit:g}) on the last {len(pts)} "
                    "logging steps: embeddings collapsed or logits constant",
                    step,
                    evidence={"metric": name, "value": pts[-1]},
                )

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """No spread below its limit in the batch: a collapse needs POINTS tiny points in a row."""
        e = self.engine
        if e.is_open("FGD603/"):
            return None
        present: list[int] = []
        for _head, base, name in self.NAMES:
            idx, vals = batch.column(name)
            values = finite_values(vals)
            limit = self.COS_STD_MIN if base == ev.COS_STD else self.LOGITS_STD_MIN
            if len(values) < len(vals) or (values and min(values) < limit):
                return None
            present += [i for i, v in zip(idx, vals, strict=True) if v is not None]
        steps, start = batch.steps, batch.start
        if any(steps[i] > start for i in present):
            e.judge("FGD603")
        if any(steps[i] <= start for i in present):
            e.why("FGD603", "the log ends before trends are judged")
        return []


HIGH_COSINE = 0.5  # every cosine above this: all pairs point the same way
NARROW = 0.1  # logits within 10 % of the scale...
GAP = 0.02  # ...and positives within 2 % of the scale of the negatives
AT_CHANCE = 0.9  # ...while the head's loss stays >= 90 % of ln K...
STILL = 0.05  # ...and stops falling (less than 5 % over the window): early in training spreads are tight
SHARE = 0.8
MIN_POINTS = 5
LOGIT_NAMES = {
    h: tuple(ev.head_metric(b, h) for b in (ev.LOGITS_MIN, ev.LOGITS_MAX, ev.POS_MEAN, ev.NEG_MEAN))
    for h in ev.HEADS
}
SCALE_NAMES = {
    h: (ev.head_metric(ev.LOGIT_SCALE_EXP, h), ev.head_metric(ev.LOGIT_SCALE, h)) for h in ev.HEADS
}
LOSS_NAMES = {
    h: tuple(ev.head_metric(b, h) for b in (ev.LOSS_OVER_CHANCE, ev.HEAD_LOSS, ev.CHANCE)) for h in ev.HEADS
}
INF = math.inf


def scale_of(head: str, m: Row) -> float | None:
    """exp(scale) of a head in a row (from the raw scale when only that is logged; absurd raw values give
    None rather than an overflow)."""
    s = m.get(SCALE_NAMES[head][0])
    if s is not None and 0 < s < INF:  # NaN fails both comparisons
        return s
    raw = m.get(SCALE_NAMES[head][1])
    if raw is not None and -50 < raw < 50:
        return math.exp(raw)
    return None


def collapsed(head: str, m: Row, scale: float) -> tuple[str, str] | None:
    """(kind, why) of one row from its logits at `scale`: kind "high" (every cosine above 0.5), "narrow"
    (a narrow range, positives like negatives, the loss at chance) or "" (not collapsed); None when the row
    cannot say."""
    lo_name, hi_name, pos_name, neg_name = LOGIT_NAMES[head]
    lo, hi = m.get(lo_name), m.get(hi_name)
    if lo is None or hi is None or not (-INF < lo < INF and -INF < hi < INF):
        return None
    if lo >= HIGH_COSINE * scale:
        return (
            "high",
            f"every logit between {lo:.4g} and {hi:.4g} at scale {scale:.4g} "
            f"(all cosines >= {lo / scale:.2f})",
        )
    if hi - lo >= NARROW * scale:
        return "", ""
    pos, neg = m.get(pos_name), m.get(neg_name)
    if pos is not None and neg is not None and finite(pos) and finite(neg) and pos - neg >= GAP * scale:
        return "", ""
    ratio_name, loss_name, chance_name = LOSS_NAMES[head]
    ratio, loss, chance = m.get(ratio_name), m.get(loss_name), m.get(chance_name)
    if ratio is None and loss is not None and chance is not None and finite(chance) and chance > 0:
        ratio = loss / chance
    if ratio is None or not finite(ratio) or ratio < AT_CHANCE:
        return "", ""
    return "narrow", (
        f"every logit between {lo:.4g} and {hi:.4g} at scale {scale:.4g} "
        f"(cosines within {(hi - lo) / scale:.3f}) "
        f"with the loss at {ratio:.2f} x ln K"
    )


@runtime_check
class CollapseFromLogits(Check):
    """FGD603 from the logits' range at a known scale, per head, on >= 80 % of a window's points."""

    codes = ("FGD603",)
    reads = (ev.LOGITS_MIN + "/",)

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        # per head: (step, kind, why, head loss or NaN) of each point
        self.points: dict[str, list[tuple[int, str, str, float]]] = {h: [] for h in ev.HEADS}
        self.judged: set[str] = set()

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        for head in ev.HEADS:
            if m.get(LOGIT_NAMES[head][0]) is None:
                continue
            if head == "region" and (m.get(ev.REGIONS_ZERO_NORM) or 0.0) > 0:
                continue  # zero-norm features put zeros among the logits: FGD301's finding
            scale = scale_of(head, m)
            found = collapsed(head, m, scale) if scale is not None else None
            if found is None:
                e.why("FGD603", "logits without the scale they were computed at")
                continue
            pts = self.points[head]
            if pts and pts[-1][0] == step:
                pts.pop()
            loss = m.get(LOSS_NAMES[head][1])
            pts.append(
                (step, found[0], found[1], loss if loss is not None and -INF < loss < INF else math.nan)
            )
            if len(pts) > 4096:
                del pts[:2048]
            if e.heavy:
                window = pts[-e.window :]
                if window and window[0][0] <= e.start:  # steps rise: only a window reaching back filters
                    window = [p for p in window if p[0] > e.start]
                if len(window) >= e.window:
                    self.judged.add(head)
                    self._judge(head, window, step)
                else:
                    e.why("FGD603", f"fewer than {e.window} logging points with logits after step {e.start}")

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Steps rising, no episode open and no collapsed point the batch's windows reach: when every new
        point has a finite range of logits at least NARROW x its (logged) scale, its lowest logit below half
        of it, the points go in column-wise and a due window cannot fire: it only counts as judged (or says
        why not). Otherwise None: row by row."""
        e = self.engine
        steps, start, windows = batch.steps, batch.start, batch.windows
        if not batch.rises or e.is_open("FGD603/logits/"):
            return None
        due: list[tuple[int, int, str, bool]] = []  # (row, head's rank, head, window full) of heavy points
        new: dict[str, list[tuple[int, str, str, float]]] = {}
        for rank, head in enumerate(ev.HEADS):
            pts = self.points[head]
            at, column = batch.column(LOGIT_NAMES[head][0])  # the rows routed here that hold it (`reads`)
            lo: list[Any] = column
            if None in lo:
                held = list(map(is_not, lo, repeat(None)))
                at, lo = list(compress(at, held)), list(compress(lo, held))
            if head == "region" and at:
                zero = batch.values_at(ev.REGIONS_ZERO_NORM, at)
                if any(zero):
                    held = [not (z or 0.0) > 0 for z in zero]
                    at, lo = list(compress(at, held)), list(compress(lo, held))
            if not at:
                continue
            hi: list[Any] = batch.values_at(LOGIT_NAMES[head][1], at)
            scale: list[Any] = batch.values_at(SCALE_NAMES[head][0], at)
            if (
                not (all_finite(lo) and all_finite(hi) and all_finite(scale) and min(scale) > 0)
                or any(map(ge, lo, map(mul, repeat(HIGH_COSINE), scale)))
                or not all(map(ge, map(sub, hi, lo), map(mul, repeat(NARROW), scale)))
                or any(map(itemgetter(1), pts[-max(windows) :]))
                or (pts and pts[-1][0] >= steps[at[0]])
            ):
                return None  # a point that may be collapsed, or lacks its scale: row by row
            losses: list[Any] = batch.values_at(LOSS_NAMES[head][1], at)
            if not all_finite(losses):
                losses = [v if v is not None and -INF < v < INF else math.nan for v in losses]
            at_steps = list(map(steps.__getitem__, at))
            new[head] = list(zip(at_steps, repeat(""), repeat(""), losses, strict=False))
            heavy, n0 = batch.heavy, len(pts)
            for k, i in enumerate(at):
                if heavy[i]:
                    end, w = n0 + k + 1, windows[i]
                    first = None if end < w else pts[end - w][0] if end - w < n0 else at_steps[end - w - n0]
                    due.append((i, rank, head, first is not None and first > start))
        for head, got in new.items():
            pts = self.points[head]
            pts += got
            if len(pts) > 4096:  # what one `observe` per point keeps: it cuts the oldest 2048 past 4096
                del pts[: len(pts) - (2049 + (len(pts) - 4097) % 2048)]
        for i, _rank, head, full in sorted(due):
            if full:
                self.judged.add(head)
                e.judge("FGD603")
            else:
                e.why("FGD603", f"fewer than {windows[i]} logging points with logits after step {start}")
        return []

    def finish(self) -> None:
        start = self.engine.trend_start()
        for head, pts in self.points.items():
            window = [p for p in pts if p[0] > start]
            if head not in self.judged and len(window) >= MIN_POINTS:
                self._judge(head, window, window[-1][0])

    def _judge(self, head: str, window: list[Any], step: int) -> None:
        e = self.engine
        e.judge("FGD603")
        kinds = list(map(itemgetter(1), window))
        high, narrow = kinds.count("high"), kinds.count("narrow")
        if narrow:  # a narrow range counts only while the head's loss has stopped falling
            losses = [v for v in map(itemgetter(3), window) if v == v]  # NaN: no loss at that point
            third = max(1, len(losses) // 3)
            if len(losses) >= 2 and sum(losses[-third:]) < (1 - STILL) * sum(losses[:third]):
                narrow = 0
        fire = high + narrow >= SHARE * len(window)
        if e.gate(f"FGD603/logits/{head}", fire):
            hits = [p for p in window if p[1] == "high" or (p[1] == "narrow" and narrow)]
            e.emit(
                "FGD603",
                f"{head} embeddings collapsed on {len(hits)} of {len(window)} logging steps "
                f"{window[0][0]}-{window[-1][0]}: {hits[-1][2]}",
                step,
                evidence={"head": head, "points": len(window), "collapsed": len(hits), "from": window[0][0]},
            )
