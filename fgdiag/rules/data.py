"""FGD3xx, data and boxes: docs, static checks over the data audit (invalid boxes, repeated captions) and the
runtime checks over region features and candidate counts."""

from __future__ import annotations

import math

from fgdiag import events as ev
from fgdiag.diagnostic import Finding
from fgdiag.facts import MB_NEAR_DUP_SHARE, REGION, UNMASKED_DUP_SHARE
from fgdiag.facts.audit import invalid_counts, repeated_captions
from fgdiag.facts.run import RunFacts
from fgdiag.facts.values import Field, as_bool
from fgdiag.rules.batch import Batch, finite_values
from fgdiag.rules.engine import Check, Row
from fgdiag.rules.registry import get, register, runtime_check, static_check
from fgdiag.rules.series import finite

register(
    "FGD301",
    "invalid-boxes-or-region-features",
    "warning",
    what="Invalid boxes above a threshold in the data (zero area, inverted, out of range, non-finite), or "
    "zero-norm / non-finite region features in a batch.",
    why="RoIAlign returns zeros for empty boxes; zero features normalise to NaN or a constant and poison "
    "the region loss and the queue.",
    example="a box [0.4, 0.4, 0.4, 0.6] (zero width)",
    fix="Validate boxes with a policy (drop, clip or error) and audit the data: fgdiag data-audit DATA.",
)
register(
    "FGD302",
    "repeated-captions",
    "warning",
    what="Captions repeated so often that they become false negatives in contrastive losses: in the data, in "
    "a queue where most entries carry the positive's caption or a near-duplicate of it, or among the "
    "negatives the region loss used (more than 5 % duplicates: masking off).",
    why="Two regions with the same caption are pushed apart; the loss floor rises above what targets assume.",
    example="'People and vehicles pass on city streets.' 36 times among 1,559 records",
    fix="De-duplicate captions or mask them among negatives (memory_bank_mask_duplicates, "
    "mask_near_duplicates, "
    "mask_contained_captions).",
)

FALSE_NEGATIVE_SHARE = 0.05  # expected copies of a caption among one query's negatives that count
DUPLICATE_SHARE_MAX = 0.5  # D5: most queued entries share the positive's caption
REGION_K = ev.head_metric(ev.CANDIDATES, REGION)


# --- static ------------------------------------------------------------------------------------------------
@static_check("FGD301")
def invalid_boxes(facts: RunFacts) -> list[Finding]:
    """Invalid boxes in the audited data above the --max-invalid-ratio threshold."""
    if facts.data_report is None:
        return []
    invalid, boxes, ratio = invalid_counts(facts.data_report)
    limit = facts.max_invalid_ratio
    if ratio is None or ratio <= limit:
        return []
    counts = f"{invalid} of {boxes} boxes, " if invalid is not None and boxes else ""
    return [
        get("FGD301").finding(
            f"invalid boxes: {counts}{100 * ratio:.1f} % (threshold {100 * limit:.1f} %, "
            "--max-invalid-ratio); fgdiag data-audit lists them",
            location=facts.data_location,
            evidence={"invalid_ratio": ratio, "invalid": invalid, "boxes": boxes},
        )
    ]


@static_check("FGD302")
def repeated(facts: RunFacts) -> list[Finding]:
    """Captions repeated enough to be false negatives.

    A caption repeated c times among N is a false negative for a query holding it whenever a copy lands among
    its K - 1 negatives: about (K - 1)(c - 1)/(N - 1) copies per query for uniform sampling. Region captions
    compete in the region loss (batch regions + queue), global captions in the global batch.
    """
    if facts.data_report is None:
        return []
    s, plan = facts.settings, facts.plan
    region_k = (plan.regions_per_forward + (plan.memory_bank_candidates or 0)) if plan else 8
    global_k = plan.per_device_train_batch_size * plan.world_size if plan else 8
    mask = (
        s is not None
        and s.dialect == "fgclip"
        and as_bool(s.values.get("memory_bank_mask_duplicates") or Field("memory_bank_mask_duplicates", True))
        is True
    )
    out = []
    for group, total, repeats in repeated_captions(facts.data_report):
        candidates = global_k if group == "global" else region_k
        if total < 2 or candidates < 2:
            continue
        flagged = [(c, n, (candidates - 1) * (n - 1) / (total - 1)) for c, n in repeats]
        flagged = [item for item in flagged if item[2] >= FALSE_NEGATIVE_SHARE]
        if not flagged:
            continue
        caption, count, expected = flagged[0]
        masked = (
            " (the queue masks equal captions; in-batch copies stay)" if mask and group != "global" else ""
        )
        out.append(
            get("FGD302").finding(
                f"{len(flagged)} {group} caption(s) repeated enough to be false negatives; worst {caption!r} "
                f"x{count} of {total}: ~{expected:.2f} copies among the {candidates - 1} negatives of each "
                f"query holding it{masked}",
                location=facts.data_location,
                evidence={"group": group, "captions": [[c, n] for c, n, _ in flagged[:10]]},
            )
        )
    return out


# --- runtime ------------------------------------------------------------------------------------------------
@runtime_check
class RegionFeatures(Check):
    """FGD301 on a log: zero-norm or non-finite region features (first occurrence only)."""

    codes = ("FGD301",)
    reads = (ev.REGIONS_ZERO_NORM, ev.REGIONS_NONFINITE)
    absent = "no region-feature norms in this log"

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        zero, bad = m.get(ev.REGIONS_ZERO_NORM), m.get(ev.REGIONS_NONFINITE)
        if zero is None and bad is None:
            return
        e.judge("FGD301")
        hit = (finite(zero) and zero > 0) or (bad is not None and (not math.isfinite(bad) or bad > 0))
        if e.gate("FGD301", hit, once=True) and hit:
            e.emit(
                "FGD301",
                f"region features with zero norm ({zero if zero is not None else '?'} per batch) or "
                f"non-finite values ({bad if bad is not None else '?'}) first at step {step}",
                step,
                evidence={"zero_norm": zero, "nonfinite": bad},
            )

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """No zero-norm and no non-finite feature in the batch (or already reported): judged, nothing more."""
        e = self.engine
        zero = batch.column(ev.REGIONS_ZERO_NORM)[1]
        bad = batch.column(ev.REGIONS_NONFINITE)[1]
        if not e.is_open("FGD301"):
            zeros, bads = finite_values(zero), [v for v in bad if v is not None]
            if (zeros and max(zeros) > 0) or (bads and (finite_values(bads) != bads or max(bads) > 0)):
                return None
        if any(v is not None for v in zero) or any(v is not None for v in bad):
            e.judge("FGD301")
        return []


UNMASKED = ev.head_metric(UNMASKED_DUP_SHARE, REGION)
UNMASKED_SHARE_MAX = 0.05  # duplicates among the negatives the loss used (0 with masking on)


def _queue_share(exact: float | None, near: float | None) -> float | None:
    """Exact plus near-duplicate share of the queue pairs (either may be missing from a log)."""
    parts = [v for v in (exact, near) if finite(v)]
    return sum(parts) if parts else None


@runtime_check
class FalseNegatives(Check):
    """FGD302 on a log: the queue (or the batch) is full of the positive's own caption."""

    codes = ("FGD302",)
    reads = (ev.MB_DUP_SHARE, MB_NEAR_DUP_SHARE, UNMASKED, REGION_K, ev.REGIONS_VALID)
    absent = "no duplicate share or candidate count in this log"

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        share, k, valid = (
            _queue_share(m.get(ev.MB_DUP_SHARE), m.get(MB_NEAR_DUP_SHARE)),
            m.get(REGION_K),
            m.get(ev.REGIONS_VALID),
        )
        unmasked = m.get(UNMASKED)
        if not (finite(share) or finite(k) or finite(unmasked)):
            e.why("FGD302", "no duplicate share or candidate count in this log")
            return
        e.judge("FGD302")
        queue_dups = finite(share) and share > DUPLICATE_SHARE_MAX
        batch_dups = finite(k) and finite(valid) and valid >= 4 and k <= 1.5
        left = finite(unmasked) and unmasked > UNMASKED_SHARE_MAX
        if e.gate("FGD302", queue_dups or batch_dups or left):
            if queue_dups:
                what = f"{share:.0%} of the queued negatives carry the positive's caption or a near-duplicate"
            elif batch_dups:
                what = (
                    f"only {k:.1f} candidates for {valid:.0f} regions: every other caption equals the "
                    "positive's"
                )
            else:
                what = (
                    f"{unmasked:.0%} of the negatives the region loss used are the positive's own caption "
                    "or a near-duplicate (masking off?)"
                )
            e.emit(
                "FGD302",
                f"{what}: repeated captions are false negatives and leave no negatives",
                step,
                evidence={
                    "duplicate_share": share,
                    "candidates": k,
                    "regions": valid,
                    "unmasked_share": unmasked,
                },
            )

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """No share above the limit and never a handful of candidates for many regions: nothing fires."""
        e = self.engine
        if e.is_open("FGD302"):
            return None
        columns = [batch.column(name) for name in (ev.MB_DUP_SHARE, MB_NEAR_DUP_SHARE, UNMASKED, REGION_K)]
        exact, near, left, ks = (finite_values(values) for _rows, values in columns)
        valid = finite_values(batch.column(ev.REGIONS_VALID)[1])
        queue_bound = (max(exact) if exact else 0.0) + (max(near) if near else 0.0)  # >= every row's sum
        if queue_bound > DUPLICATE_SHARE_MAX or (left and max(left) > UNMASKED_SHARE_MAX):
            return None
        if ks and valid and min(ks) <= 1.5 and max(valid) >= 4:
            return None
        if exact or near or left or ks:
            e.judge("FGD302")
        if max(map(len, (exact, near, left, ks))) >= len(rows):  # one column finite on as many rows: all
            return []
        have = {i for at, values in columns for i, v in zip(at, values, strict=True) if finite(v)}
        if len(have) < len(rows):
            e.why("FGD302", "no duplicate share or candidate count in this log")
        return []
