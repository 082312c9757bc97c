"""Chance level per judged loss: ln K for one row, and where K came from.

The judged losses ("tracks") are the unweighted loss of each contrastive head, and a log's main `loss` when
it has no head loss (a foreign log). K is read in this order: the log's own count (`chance/<head>`,
`candidates/<head>`: our callback and the fork's [DIAG] blocks print it), the user's `--candidates` (the
region head, or the main loss of a log without heads), the memory bank's fill plus a batch's regions (the
region head; the regions per sample are bounded, so this gives a range of K), and for the in-batch global
head the batch per device times the world size stated in the log's header. Every K that was not printed
says where it came from; a K known only as a range (or with an assumed world size) can say "at chance" but
never "above chance". The last resort, a loss sitting on ln n for a small integer n, is judged by the chance
check over a whole run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from fgdiag import events as ev
from fgdiag.facts import GLOBAL, HARDNEG, REGION
from fgdiag.rules.series import finite

Row = Mapping[str, float | None]
MAIN = "loss"  # the track of a log's main loss (no head losses in the log)
TRACKS = (GLOBAL, REGION, HARDNEG, MAIN)
HEAD_LOSSES = {h: ev.head_metric(ev.HEAD_LOSS, h) for h in (GLOBAL, REGION, HARDNEG)}
GLOBAL_PARTS = ("global_short_loss", "global_long_loss")  # weighted 1 by default (fgclip and upstream)
REGION_PART = "region_loss"
CHANCES = {h: ev.head_metric(ev.CHANCE, h) for h in (GLOBAL, REGION, HARDNEG)}
COUNTS = {h: ev.head_metric(ev.CANDIDATES, h) for h in (GLOBAL, REGION, HARDNEG)}
READS = (*HEAD_LOSSES.values(), *GLOBAL_PARTS, REGION_PART, ev.LOSS)
REGIONS_PER_SAMPLE = (1, 4)  # FG-CLIP and the fork keep at most 4 boxes per sample (max_anns)
NARROW = 1.1  # a range of K is used only while ln K_hi / ln K_lo stays within 10 %


class Level(NamedTuple):
    """ln K of one row: [lo, hi] (equal when K is known), whether it is exact, and where it came from."""

    lo: float
    hi: float
    exact: bool
    source: str


def loss_of(track: str, m: Row, info: Mapping[str, Any]) -> float | None:
    """The unweighted loss of a track in a row (None when the row has none; 0.0 means "no region" in the
    fork's logs and an absent head elsewhere)."""
    if track == MAIN:
        value = m.get(ev.LOSS)
    else:
        value = m.get(HEAD_LOSSES[track])
        if value is None and track == GLOBAL:  # the short-caption loss is CLIP's own; long captions next
            part = next((p for p in GLOBAL_PARTS if m.get(p) is not None), None)
            if part is not None and info.get(f"{part}_weight", 1.0) == 1.0:
                value = m.get(part)
        elif value is None and track == REGION:
            weighted, weight = m.get(REGION_PART), info.get("region_loss_weight")
            if weighted is not None and finite(weight) and weight > 0:
                value = weighted / weight
    if value is None or not math.isfinite(value) or value == 0.0:
        return None
    return value


def _exact(k: float, source: str) -> Level | None:
    if not (finite(k) and k > 1):
        return None
    c = math.log(k)
    return Level(c, c, True, source)


def batch_k(info: Mapping[str, Any]) -> tuple[float, bool, str] | None:
    """(K, exact, source) of an in-batch loss from the header facts: batch per device x world size."""
    per_device = info.get("per_device_train_batch_size")
    if not (finite(per_device) and per_device > 0):
        return None
    where = info.get("facts_from") or {}
    world, total, accum = (
        info.get(k) for k in ("world_size", "total_train_batch_size", "gradient_accumulation_steps")
    )
    said = f"per-device batch {per_device:g} ({where.get('per_device_train_batch_size', 'run info')})"
    if finite(world) and world >= 1:
        return per_device * world, True, f"{said} x world size {world:g}"
    if finite(total) and total > 0:
        derived = total / (per_device * (accum if finite(accum) and accum >= 1 else 1))
        if derived >= 1 and derived == int(derived):
            return per_device * derived, True, f"{said} x world size {derived:g} (total batch {total:g})"
    return per_device, False, f"{said} x world size 1 (assumed: not stated in the log)"


class Resolver:
    """ln K per track and row; header-derived levels are computed once per run-info version."""

    def __init__(self) -> None:
        self.info: Mapping[str, Any] = {}
        self.global_level: Level | None = None
        self.per_device: float | None = None

    def configure(self, info: Mapping[str, Any]) -> None:
        self.info = info
        found = batch_k(info)
        self.global_level = None
        self.per_device = info.get("per_device_train_batch_size")
        if found is not None:
            k, exact, source = found
            level = _exact(k, f"K = {k:g} from the {source}")
            if level is not None:
                self.global_level = level._replace(exact=exact)

    def level(self, track: str, m: Row) -> Level | None:
        if track != MAIN:
            c = m.get(CHANCES[track])
            if c is not None and 0 < c < math.inf:  # NaN fails both comparisons
                return Level(c, c, True, "ln K printed in the log")
            k = m.get(COUNTS[track])
            if k is not None:
                return _exact(k, "K printed in the log")
        info = self.info
        if track in (REGION, MAIN):
            given = info.get("candidates")
            if finite(given):
                return _exact(given, f"K = {given:g} given (--candidates)")
        if track == REGION:
            return self._bank(m)
        if track == GLOBAL:
            return self.global_level
        return None

    def _bank(self, m: Row) -> Level | None:
        """K = the bank's filled entries + the batch's regions (counted, or bounded by the batch)."""
        fill, active = m.get(ev.MB_FILL), m.get(ev.MB_ACTIVE)
        if fill is None or not finite(fill) or (active is not None and active <= 0):
            fill = 0.0
        valid = m.get(ev.REGIONS_VALID)
        if valid is not None and finite(valid) and valid > 0:
            return _exact(valid + fill, f"K = regions in the batch {valid:g} + memory-bank entries {fill:g}")
        b = self.per_device
        if not fill or not (finite(b) and b > 0):
            return None
        lo_k, hi_k = fill + b * REGIONS_PER_SAMPLE[0], fill + b * REGIONS_PER_SAMPLE[1]
        lo, hi = math.log(lo_k), math.log(hi_k)
        if hi > NARROW * lo:
            return None
        return Level(
            lo,
            hi,
            False,
            f"K = {lo_k:g}-{hi_k:g}: memory-bank entries {fill:g} + {REGIONS_PER_SAMPLE[0]}-"
            f"{REGIONS_PER_SAMPLE[1]} regions for each of the {b:g} samples of a batch",
        )
