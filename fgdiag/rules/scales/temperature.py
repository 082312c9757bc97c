"""FGD104: the temperature, not the features, limits a head's learning: its loss stays far above the loss the
same cosines give at the clamp scale (`loss_at_max_scale`, the model's own statistic) while the features
separate each positive from its hardest negative (`hardest_gap` > 0, cosine units).

This is what the seed's arm shows in its first 50 steps whatever its settings: region loss 1.61-1.66 against
0.25-0.27 at the clamp scale (6x), a hardest gap of only ~0.03 in both arms (so the gate is gap > 0, not a
margin), the region logits held within +-9 by exp(2.656) = 14.2 (benchmarks/results/embedded_ab.md).

Severity warning: the finding explains why a loss stays high (the error-level causes are FGD101, a head at
CLIP's from-scratch init, and FGD103, a scale that cannot move); and when CLIP is trained from scratch the
scale starts at 14.3 and is meant to grow, so the first windows of such a run show this by design.
"""

from __future__ import annotations

from fgdiag import events as ev
from fgdiag.facts import HARDEST_GAP, LOSS_AT_MAX_SCALE
from fgdiag.rules.engine import Check, Row, RuleEngine
from fgdiag.rules.registry import register, runtime_check
from fgdiag.rules.scales.names import RAW
from fgdiag.rules.series import exp_or_inf, finite

register(
    "FGD104",
    "temperature-limited",
    "warning",
    what="A head's loss stays far above its loss at the clamp scale (loss_at_max_scale: the same cosines "
    "scored at exp(logit_scale_max)), by at least 0.3 nats and 25 % of the loss, on >= 80 % of a window's "
    "logging points after the warm-up, while its positives beat their hardest negative (hardest_gap > 0) "
    "and its scale sits below the clamp.",
    why="The features already rank the positive first; a low scale (a high temperature) flattens the softmax "
    "so the loss cannot fall: the head learns as if it were at chance. The seed's region head at 2.6592 "
    "(exp 14.3) beside a global head at 100 does exactly this.",
    example="head_loss/region 1.71, loss_at_max_scale/region 0.04, hardest_gap/region 0.38, "
    "logit_scale/region 2.6562",
    fix="Start the head's scale at the global head's (ln 100 when fine-tuning a released CLIP), keep it "
    "trainable and out of weight decay; see FGD101 and FGD103.",
)

LOSS = {h: ev.head_metric(ev.HEAD_LOSS, h) for h in ev.HEADS}
AT_MAX = {h: ev.head_metric(LOSS_AT_MAX_SCALE, h) for h in ev.HEADS}
GAP = {h: ev.head_metric(HARDEST_GAP, h) for h in ev.HEADS}
MIN_EXCESS = 0.3  # nats above the loss at the clamp scale...
MIN_SHARE_OF_LOSS = 0.25  # ...and a quarter of the loss
MIN_GAP = 0.0  # positives beat their hardest negative (on average over the rows)
BELOW_CLAMP = 0.1  # log-space distance below the clamp (at the clamp both losses are equal)
SHARE = 0.8
MIN_POINTS = 5


@runtime_check
class TemperatureLimited(Check):
    """FGD104 per head on windows of logging points (a short log: once at its end)."""

    codes = ("FGD104",)
    reads = (LOSS_AT_MAX_SCALE + "/",)
    absent = "no loss_at_max_scale in this log (written by fgclip's model statistics)"

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        self.points: dict[str, list[tuple[int, bool, float, float, float, float]]] = {h: [] for h in ev.HEADS}
        self.judged: set[str] = set()

    def _point(self, head: str, m: Row) -> tuple[bool, float, float, float, float] | None:
        """(limited?, loss, loss at the clamp, hardest gap, raw scale) of one row, None when it cannot say."""
        loss, at_max, gap, raw = m.get(LOSS[head]), m.get(AT_MAX[head]), m.get(GAP[head]), m.get(RAW[head])
        if not (finite(loss) and finite(at_max) and loss > 0):
            return None
        gap = gap if finite(gap) else float("nan")
        raw = raw if finite(raw) else float("nan")
        below = not finite(raw) or raw < self.engine.clamp() - BELOW_CLAMP
        excess = loss - at_max
        limited = below and excess >= max(MIN_EXCESS, MIN_SHARE_OF_LOSS * loss) and gap > MIN_GAP
        return limited, loss, at_max, gap, raw

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        found: list = []
        for head in ev.HEADS:
            point = self._point(head, m)
            if point is None:
                continue
            pts = self.points[head]
            if pts and pts[-1][0] == step:
                pts.pop()
            pts.append((step, *point))
            if len(pts) > 4096:
                del pts[:2048]
            if e.heavy:
                window = [p for p in pts[-e.window :] if p[0] > e.start]
                if len(window) >= e.window:
                    self.judged.add(head)
                    found += self._judge(head, window)
                else:
                    e.why("FGD104", f"fewer than {e.window} logging points after step {e.start} (warm-up)")
        e.emit_heads("FGD104", found, step)

    def finish(self) -> None:
        start = self.engine.trend_start()
        found: list = []
        last = 0
        for head, pts in self.points.items():
            window = [p for p in pts if p[0] > start]
            if head not in self.judged and len(window) >= MIN_POINTS:
                found += self._judge(head, window)
                last = max(last, window[-1][0])
        self.engine.emit_heads("FGD104", found, last)

    def _judge(self, head: str, window: list[tuple[int, bool, float, float, float, float]]) -> list:
        e = self.engine
        e.judge("FGD104")
        hits = [p for p in window if p[1]]
        if not e.gate(f"FGD104/{head}", len(hits) >= SHARE * len(window)):
            return []
        n = len(hits)
        loss = sum(p[2] for p in hits) / n
        at_max = sum(p[3] for p in hits) / n
        gap = sum(p[4] for p in hits) / n
        raw = hits[-1][5]
        scale = f"scale {raw:.4f} (exp {exp_or_inf(raw):.1f})" if finite(raw) else "its scale"
        message = (
            f"{head} loss {loss:.3f} is {loss - at_max:.2f} nats above the {at_max:.3f} the same cosines "
            f"give at the clamp scale exp({e.clamp():.4f}) on {n} of {len(window)} logging steps "
            f"{window[0][0]}-{window[-1][0]}, while positives beat their hardest negative by {gap:.2f} in "
            f"cosine: {scale} limits learning, not the features"
        )
        return [(head, message, None, {"head": head, "loss": loss, "at_max": at_max, "hardest_gap": gap})]
