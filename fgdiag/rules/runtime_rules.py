"""Runtime rules over metric rows: one streaming `RuleEngine` shared by the live callback and `watch`.

`observe(step, metrics)` is called once per logging step (again with the same step when more of that step's
metrics arrive) and returns only new findings; a code fires once per condition episode and re-arms after the
condition has been clear for a few logging steps, so a flickering metric does not flood the output. Windows
are counted in logging points but sized from the run: a share of the planned steps, at least a few points,
so a 300-step run logging every 5 steps and a 20k-step run both get sensible windows. When a log lacks what a
rule needs, the rule says so in `not_judged()` instead of guessing. Thresholds come from
shared/reference/failure-modes.md (numbers cited in RuleParams).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding, Severity
from fgdiag.rules import registry

LN_100 = math.log(100.0)
CLIP_INIT = 2.6592  # ln(1/0.07), CLIP's from-scratch init
RUNTIME_CODES = (
    "FGD101",
    "FGD102",
    "FGD103",
    "FGD201",
    "FGD301",
    "FGD302",
    "FGD501",
    "FGD601",
    "FGD602",
    "FGD603",
    "FGD604",
    "FGD701",
)
REGION_LOSS = ev.head_metric(ev.HEAD_LOSS, "region")
NONFINITE_WATCH = (ev.LOSS, *ev.LOSS_PARTS, ev.GRAD_NORM)
SERIES_NAMES = frozenset((ev.LOSS, *ev.LOSS_PARTS, "region_loss", ev.GRAD_NORM, ev.LEARNING_RATE))
SERIES_PREFIXES = tuple(
    f"{base}/"
    for base in (
        ev.HEAD_LOSS,
        ev.LOGIT_SCALE,
        ev.LOGIT_SCALE_EXP,
        ev.COS_STD,
        ev.LOGITS_STD,
        ev.GRAD_NORM_GROUP,
        "regions",
    )
)
HEAD_NAMES = {base: tuple((h, ev.head_metric(base, h)) for h in ev.HEADS) for base in ev.PER_HEAD}
COLLAPSE_NAMES = tuple((h, b, ev.head_metric(b, h)) for h in ev.HEADS for b in (ev.COS_STD, ev.LOGITS_STD))


@dataclass
class RuleParams:
    """Thresholds and window sizes (steps are optimizer steps; points are logging steps)."""

    warmup_fraction: float = 0.1  # rules on trends start after this share of the planned steps...
    warmup_min_steps: int = 10  # ...or this many steps, or the lr warm-up, whichever is last
    window_fraction: float = 0.1  # a trend window spans this share of the planned steps,
    window_min_steps: int = 20  # clamped to [min, max] steps (failure-modes A1: 200 steps on long runs)
    window_max_steps: int = 200
    window_min_points: int = 5  # and at least this many logging points
    chance_rel_tol: float = 0.02  # A1: |loss - ln K| < 2 % ln K
    above_chance_margin: float = 0.1  # A2: loss > ln K + 0.1
    above_chance_share: float = 0.8
    frozen_steps: int = 100  # B3: unchanged after 100 optimizer steps (a quarter of shorter runs)
    frozen_tol: float = 1e-6
    clamp_tol: float = 1e-3  # B2: raw >= clamp - 1e-3 counts as saturated
    unclamped_tol: float = 1e-4  # B2: raw > clamp + 1e-4 (exp > 100.01) is unclamped
    saturated_share: float = 0.95
    saturated_steps: int = 500  # ...of the last 500 steps (half of a shorter run)
    flat_rel: float = 0.02  # loss changed by < 2 % over the window: flat
    flat_floor: float = 0.1  # a loss below this is converged, not flat
    learned_drop: float = 0.2  # a loss 20 % below its post-warm-up value has learned: a plateau is not "flat"
    decay_share: float = 0.9  # B4: the scale falls on >= 90 % of consecutive points
    decay_min_drop: float = 0.01
    spike_factor: float = 10.0  # G: grad norm > 10x the running median
    spike_history: int = 20
    spike_min_history: int = 5
    head_grad_ratio: float = 100.0  # G: head group grad norm > 100x the towers'
    cos_std_min: float = 0.005  # collapse: cosine spread / logits std nearly zero
    logits_std_min: float = 0.05
    collapse_points: int = 3
    collapse_chance_share: float = 0.9  # ...and only while the head's loss stays >= 90 % of ln K
    duplicate_share_max: float = 0.5  # D5: most queued entries share the positive's caption
    head_gap: float = 1.0  # B5/FGD101: heads more than 1.0 apart in log space
    clip_init_tol: float = 0.01
    global_at_clamp_tol: float = 0.02  # bf16 stores ln 100 as 4.59375
    mb_slack_steps: int = 2
    smooth_fraction: float = 0.1  # target checkpoints: mean over the last 10 % of the checkpoint step
    clear_points: int = 5  # an episode ends after this many clear logging points


class _Series:
    """(step, value) points of one metric, the last entry replaced when a step is observed again."""

    __slots__ = ("steps", "values")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[float] = []

    def put(self, step: int, value: float) -> None:
        if self.steps and self.steps[-1] == step:
            self.values[-1] = value
        else:
            self.steps.append(step)
            self.values.append(value)

    def since(self, step: float) -> list[tuple[int, float]]:
        out = []
        for i in range(len(self.steps) - 1, -1, -1):
            if self.steps[i] < step:
                break
            out.append((self.steps[i], self.values[i]))
        out.reverse()
        return out

    def last(self, n: int) -> list[tuple[int, float]]:
        return list(zip(self.steps[-n:], self.values[-n:], strict=True))


def median(values: list[float]) -> float:
    """Median without importing `statistics` (it pulls in fractions/decimal: startup time for watch)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class RuleEngine:
    """Judge a run from its metric rows, streaming. See module docstring; `run_info` keys (events.py):
    planned_steps, warmup_steps (lr), memory_bank_size, memory_bank_warmup_steps, logit_scale_max,
    candidates (K when the log has none), region_loss_weight, logging_steps."""

    def __init__(
        self, run_info: Mapping[str, Any] | None = None, targets: Any = None, params: RuleParams | None = None
    ):
        self.run_info: dict[str, Any] = dict(run_info or {})
        self.targets = targets
        self.params = params or RuleParams()
        self.series: dict[str, _Series] = {}
        self.last_step: int | None = None
        self.findings: list[Finding] = []
        self._open: dict[str, int] = {}  # episode key -> clear points seen (-1 while condition holds)
        self._judged: set[str] = set()
        self._why_not: dict[str, str] = {}
        self._extra_not_judged: dict[str, str] = {}
        self._mb_active_step: int | None = None
        self._mb_off_step: int | None = None
        self._mb_seen = False
        self._targets_done: set[int] = set()
        self._scale_target_done: set[str] = set()
        self.target_results: list[dict[str, Any]] = []  # one entry per judged target checkpoint
        self._rpts: list[tuple[int, float, float]] = []  # (step, region loss, ln K)
        self._scale_first: dict[str, tuple[int, float]] = {}
        self._scale_moved: set[str] = set()
        self._lr_positive = False
        self._npoints = 0
        self._last_heavy = 0
        self._heavy = True
        self._warm, self._w, self._raw = 0, 1, {}
        self._watched: dict[str, bool] = {}
        self._post_warm: dict[tuple[str, int], float] = {}
        self._seen_prefix: dict[str, bool] = {}
        self._has_groups = False
        self._keep: dict[str, bool] = {}
        self._interval: tuple[int, float] | None = None

    # --- plumbing ---------------------------------------------------------------------------------------
    def _wanted(self, name: str) -> bool:
        """Series the rules read (others are only looked at in the current row)."""
        if name.startswith(SERIES_PREFIXES) or name in SERIES_NAMES:
            return True
        return self.targets is not None and any(cp.metric == name for cp in self.targets.checkpoints)

    def _s(self, name: str) -> _Series:
        s = self.series.get(name)
        if s is None:
            s = self.series[name] = _Series()
        return s

    def _gate(self, key: str, condition: bool, *, once: bool = False) -> bool:
        """True when `condition` starts a new episode for `key`. An episode ends after `clear_points` clear
        logging points; `once` keys never re-arm (first occurrence only: data problems, first NaN)."""
        state = self._open.get(key)
        if condition:
            self._open[key] = -1
            return state is None
        if state is not None and not once:
            state = (0 if state < 0 else state) + 1
            if state >= self.params.clear_points:
                del self._open[key]
            else:
                self._open[key] = state
        return False

    def _emit(
        self,
        out: list[Finding],
        code: str,
        message: str,
        step: int,
        *,
        severity: Severity | None = None,
        evidence: dict | None = None,
    ) -> None:
        finding = registry.get(code).finding(
            message, location=f"step {step}", step=step, severity=severity, evidence=evidence
        )
        self.findings.append(finding)
        out.append(finding)

    def _not(self, code: str, reason: str, *, absent: str | None = None) -> None:
        """Record why `code` could not be judged (the latest reason wins). `absent`: a metric whose absence is
        the reason; ignored once that metric has been seen, since other rows may simply lack it."""
        if absent is not None:
            seen = self._seen_prefix.get(absent)
            if seen is None:
                seen = any(name.startswith(absent) for name in self._keep)
                if seen:
                    self._seen_prefix[absent] = True
            if seen:
                return
        self._why_not[code] = reason

    def _planned(self) -> int | None:
        planned = self.run_info.get("planned_steps")
        return int(planned) if _finite(planned) and planned > 0 else None

    def interval(self) -> float:
        """Typical steps between logging points (median of recent gaps), refreshed every 8 new points."""
        if self._interval is not None and self._npoints - self._interval[0] < 8:
            return self._interval[1]
        value = self._measure_interval()
        self._interval = (self._npoints, value)
        return value

    def _measure_interval(self) -> float:
        steps = self._s(ev.LOSS).steps if ev.LOSS in self.series else []
        if len(steps) < 2:
            steps = max((s.steps for s in self.series.values()), key=len, default=[])
        tail = steps[-11:]
        gaps = [b - a for a, b in zip(tail, tail[1:], strict=False) if b > a]
        return float(median(gaps)) if gaps else 1.0

    def warmup_end(self) -> int:
        p, planned = self.params, self._planned()
        end = p.warmup_min_steps
        if planned:
            end = max(end, math.ceil(p.warmup_fraction * planned))
        lr_warmup = self.run_info.get("warmup_steps")
        if _finite(lr_warmup):
            end = max(end, int(lr_warmup))
        return end

    def window_points(self) -> int:
        p, planned = self.params, self._planned()
        steps = p.window_fraction * planned if planned else p.window_min_steps
        steps = min(max(steps, p.window_min_steps), p.window_max_steps)
        return max(p.window_min_points, math.ceil(steps / max(self.interval(), 1.0)))

    def clamp(self) -> float:
        value = self.run_info.get("logit_scale_max")
        return float(value) if _finite(value) else LN_100

    # --- public API ---------------------------------------------------------------------------------------
    def observe(self, step: int, metrics: Mapping[str, float | None]) -> list[Finding]:
        """Feed one logging step's metrics (None = missing); returns the findings that are new."""
        step = int(step)
        if self.last_step is None or step > self.last_step:
            self._npoints += 1
        series, keep = self.series, self._keep
        for name, value in metrics.items():
            if value is None:
                continue
            sr = series.get(name)
            if sr is None:
                kept = keep.get(name)
                if kept is None:
                    kept = keep[name] = self._wanted(name)
                if not kept:
                    continue
                sr = series[name] = _Series()
                if name.startswith(ev.GRAD_NORM_GROUP + "/"):
                    self._has_groups = True
            if sr.steps and sr.steps[-1] == step:
                sr.values[-1] = value
            else:
                sr.steps.append(step)
                sr.values.append(value)
        self.last_step = step if self.last_step is None else max(self.last_step, step)
        # per-row constants, computed once; window statistics are recomputed every `stride` new points
        # (5 % of a window), not on every row
        self._warm, self._w = self.warmup_end(), self.window_points()
        self._raw = self._raw_scales(metrics)
        stride = max(1, self._w // 20)
        self._heavy = self._npoints - self._last_heavy >= stride
        if self._heavy:
            self._last_heavy = self._npoints
        if (
            metrics.get(ev.MB_SIZE)
            or metrics.get(ev.MB_ACTIVE) is not None
            or metrics.get(ev.MB_FILL) is not None
        ):
            self._mb_seen = True
        active = metrics.get(ev.MB_ACTIVE)
        if _finite(active) and self._mb_active_step is None:
            if active > 0:
                # switched on somewhere after the last logging step that saw it off (or before the log began)
                activated = metrics.get(ev.MB_ACTIVATED_STEP)
                if _finite(activated) and activated >= 0:
                    self._mb_active_step = int(activated)
                else:
                    off = self._mb_off_step
                    self._mb_active_step = off + 1 if off is not None else 0
            else:
                self._mb_off_step = step
        out: list[Finding] = []
        for check in (
            self._nonfinite,
            self._scales_init,
            self._scales_clamp,
            self._scales_frozen,
            self._memory_bank,
            self._regions,
            self._gradients,
            self._chance,
            self._false_negatives,
            self._collapse,
            self._targets,
        ):
            check(step, metrics, out)
        return out

    def event(self, step: int, kind: str, data: Mapping[str, Any] | None = None) -> list[Finding]:
        """Feed a point event (memory_bank_enabled, crash, ...)."""
        if kind == ev.EVENT_MB_ENABLED:
            self._mb_seen = True
            if self._mb_active_step is None:
                self._mb_active_step = int(step)
        return []

    def finish(self) -> list[Finding]:
        """End of the log or run: judge what can only be judged at the end; returns new findings."""
        out: list[Finding] = []
        step = self.last_step
        if step is not None and self.targets is not None:
            for i, cp in enumerate(self.targets.checkpoints):
                if i not in self._targets_done and cp.step > step:
                    self._extra_not_judged[f"FGD604@{cp.step}:{cp.metric}"] = (
                        f"FGD604: target {cp.describe()} not judged: the log ends at step {step}"
                    )
        return out

    def not_judged(self) -> list[dict[str, str]]:
        """Rules that could not be judged on this log, each with the reason (what to pass to fix it)."""
        out = [
            {
                "code": code,
                "reason": self._why_not.get(code, f"{code}: not judged: the log has no metric it needs"),
            }
            for code in RUNTIME_CODES
            if code not in self._judged and code in self._why_not
        ]
        out += [
            {"code": key.split("@")[0], "reason": reason} for key, reason in self._extra_not_judged.items()
        ]
        return out

    # --- checks -----------------------------------------------------------------------------------------
    def _nonfinite(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        watched = self._watched
        names = []
        for n in m:
            w = watched.get(n)
            if w is None:
                w = watched[n] = n in NONFINITE_WATCH or n.startswith(
                    (ev.HEAD_LOSS + "/", ev.GRAD_NORM_GROUP + "/")
                )
            if w:
                names.append(n)
        if not names:
            return self._not("FGD701", "FGD701: not judged: no loss or grad_norm in this log", absent=ev.LOSS)
        self._judged.add("FGD701")
        bad = [n for n in names if m[n] is not None and not math.isfinite(m[n])]
        if self._gate("FGD701", bool(bad), once=True):
            self._emit(
                out,
                "FGD701",
                f"first non-finite value at step {step}: {', '.join(bad)} "
                f"({', '.join(str(m[n]) for n in bad)})",
                step,
                evidence={"metrics": bad},
            )

    def _heads(self, base: str, m: Mapping[str, float | None]) -> dict[str, float]:
        out = {}
        for h, name in HEAD_NAMES[base]:
            v = m.get(name)
            if v is not None and math.isfinite(v):
                out[h] = float(v)
        return out

    def _raw_scales(self, m: Mapping[str, float | None]) -> dict[str, float]:
        raw = self._heads(ev.LOGIT_SCALE, m)
        for h, s in self._heads(ev.LOGIT_SCALE_EXP, m).items():
            if h not in raw and s > 0:
                raw[h] = math.log(s)
        return raw

    def _scales_init(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        raw = self._raw
        if not raw:
            return self._not(
                "FGD101", "FGD101: not judged: no logit scale in this log", absent=ev.LOGIT_SCALE
            )
        self._judged.add("FGD101")
        p = self.params
        glob = raw.get("global")
        if glob is None and ev.head_metric(ev.LOGIT_SCALE, "global") in self.series:
            glob = self.series[ev.head_metric(ev.LOGIT_SCALE, "global")].values[-1]
        for head in ("region", "hardneg"):
            value = raw.get(head)
            if value is None:
                continue
            at_init = abs(value - CLIP_INIT) < p.clip_init_tol + 0.005  # bf16 stores 2.6592 as 2.65625
            message = severity = None
            if glob is not None and at_init and abs(glob - LN_100) < p.global_at_clamp_tol:
                message = (
                    f"{head} logit scale {value:.6f} is CLIP's from-scratch init ln(1/0.07) while the global "
                    f"scale is {glob:.4f} (ln 100): the {head} logits span only +-{math.exp(value):.1f}"
                )
            elif glob is not None and abs(value - glob) > p.head_gap:
                message = (
                    f"{head} logit scale {value:.4f} is {abs(value - glob):.2f} apart from the global scale "
                    f"{glob:.4f} in log space (exp {math.exp(value):.1f} vs {math.exp(glob):.1f})"
                )
            elif glob is None and at_init:
                message = (
                    f"{head} logit scale {value:.6f} is CLIP's from-scratch init ln(1/0.07) (exp "
                    f"{math.exp(value):.2f}); the global scale is not in this log, check it is not at ln 100"
                )
                severity = Severity.WARNING
            if self._gate(f"FGD101/{head}", message is not None) and message:
                self._emit(
                    out,
                    "FGD101",
                    message,
                    step,
                    severity=severity,
                    evidence={"head": head, "raw": value, "global": glob},
                )

    def _scales_clamp(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        raw = self._raw
        if not raw:
            return self._not(
                "FGD102", "FGD102: not judged: no logit scale in this log", absent=ev.LOGIT_SCALE
            )
        self._judged.add("FGD102")
        p, clamp = self.params, self.clamp()
        for head, value in raw.items():
            over = value > clamp + p.unclamped_tol
            if self._gate(f"FGD102/unclamped/{head}", over):
                self._emit(
                    out,
                    "FGD102",
                    f"{head} logit scale {value:.6f} (exp {math.exp(min(value, 50)):.2f}) is "
                    f"above the clamp {clamp:.4f} (exp {math.exp(clamp):.2f}): the scale is not clamped",
                    step,
                    severity=Severity.ERROR,
                    evidence={"head": head, "raw": value, "clamp": clamp},
                )
            if step <= self._warm or not self._heavy:
                continue
            # B2: saturation is judged over a long span (500 steps, or half of a shorter run): over a few dozen
            # steps a noisy loss at the clamp looks flat in every healthy run
            planned = self._planned()
            span = min(p.saturated_steps, planned * 0.5) if planned else p.saturated_steps
            w = max(self._w, math.ceil(span / max(self.interval(), 1.0)))
            pts = self._s(ev.head_metric(ev.LOGIT_SCALE, head)).values[-w:]
            if len(pts) < w:
                pts = [
                    math.log(v)
                    for v in self._s(ev.head_metric(ev.LOGIT_SCALE_EXP, head)).values[-w:]
                    if v > 0
                ]
            loss = (
                self._s(ev.head_metric(ev.HEAD_LOSS, head))
                if ev.head_metric(ev.HEAD_LOSS, head) in self.series
                else self._s(ev.LOSS)
            )
            if not pts or pts[-1] < clamp - p.clamp_tol:
                self._gate(f"FGD102/saturated/{head}", False)
                continue
            lvals = [v for v in loss.values[-w:] if math.isfinite(v)]
            at_clamp = clamp - p.clamp_tol
            saturated = len(pts) >= w and len([v for v in pts if v >= at_clamp]) >= p.saturated_share * len(
                pts
            )
            flat = False
            key = (head, self._warm)
            start = self._post_warm.get(key)
            if start is None:
                start = next(
                    (
                        v
                        for s, v in zip(loss.steps, loss.values, strict=False)
                        if s > self._warm and math.isfinite(v)
                    ),
                    None,
                )
                if start is not None:
                    self._post_warm[key] = start
            if len(lvals) >= max(4, w) and start is not None:
                half = len(lvals) // 2
                first, second = sum(lvals[:half]) / half, sum(lvals[half:]) / (len(lvals) - half)
                # flat, not converged: still above the floor and never 20 % below where it left warm-up
                flat = (
                    first > p.flat_floor
                    and (first - second) < p.flat_rel * first
                    and second > (1.0 - p.learned_drop) * start
                )
            if self._gate(f"FGD102/saturated/{head}", saturated and flat):
                self._emit(
                    out,
                    "FGD102",
                    f"{head} logit scale sits at the clamp {clamp:.4f} on the last {len(pts)} "
                    f"logging steps while its loss is flat ({lvals[0]:.4f} -> {lvals[-1]:.4f}): the "
                    "temperature is frozen and not the lever",
                    step,
                    evidence={"head": head},
                )

    def _scales_frozen(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        p, clamp = self.params, self.clamp()
        planned = self._planned()
        need = min(p.frozen_steps, max(20, planned // 4)) if planned else p.frozen_steps
        if _finite(m.get(ev.LEARNING_RATE)) and m[ev.LEARNING_RATE] > 0:
            self._lr_positive = True
        for head, value in self._heads(ev.LOGIT_SCALE, m).items():
            first = self._scale_first.setdefault(head, (step, value))
            if abs(value - first[1]) >= p.frozen_tol:
                self._scale_moved.add(head)
            if step - first[0] < need:
                self._not("FGD103", f"FGD103: not judged: the logit scales span fewer than {need} steps")
                continue
            self._judged.add("FGD103")
            lr_pos = self._lr_positive or ev.LEARNING_RATE not in self.series
            frozen = head not in self._scale_moved and first[1] < clamp - p.clamp_tol and lr_pos
            if self._gate(f"FGD103/frozen/{head}", frozen, once=True):
                self._emit(
                    out,
                    "FGD103",
                    f"{head} logit scale has not moved from {first[1]:.6f} in {step - first[0]} "
                    "optimizer steps below the clamp with lr > 0: it is frozen, missing from the optimizer "
                    "or stored in bf16",
                    step,
                    evidence={"head": head, "raw": first[1], "steps": step - first[0]},
                )
            warm = self._warm
            if step <= warm or not self._heavy or self.run_info.get("logit_scales_weight_decay") == 0:
                continue  # a scale the optimizer does not decay may fall: that is the gradient
            w = max(self._w, 10)
            sr = self._s(ev.head_metric(ev.LOGIT_SCALE, head))
            tail = [v for s, v in zip(sr.steps[-w:], sr.values[-w:], strict=True) if s > warm]
            if len(tail) >= w:
                falls = sum(b < a for a, b in zip(tail, tail[1:], strict=False))
                decaying = falls >= p.decay_share * (len(tail) - 1) and tail[0] - tail[-1] >= p.decay_min_drop
                if self._gate(f"FGD103/decay/{head}", decaying):
                    self._emit(
                        out,
                        "FGD103",
                        f"{head} logit scale falls steadily ({tail[0]:.4f} -> {tail[-1]:.4f} "
                        f"over the last {len(tail)} logging steps): weight decay on the scale?",
                        step,
                        evidence={"head": head, "from": tail[0], "to": tail[-1]},
                    )

    def _memory_bank(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        info = self.run_info
        size = info.get("memory_bank_size")
        configured = (_finite(size) and size > 0) or self._mb_seen
        if _finite(size) and size == 0:
            configured = False
        if not configured:
            return self._not(
                "FGD201",
                "FGD201: not judged: no memory-bank lines in this log and no "
                "memory_bank_size in its run info",
            )
        warm = info.get("memory_bank_warmup_steps")
        if _finite(warm):
            expected, why = int(warm) + self.params.mb_slack_steps, f"warm-up {int(warm)} + slack"
        elif self.targets is not None and self.targets.memory_bank_active_by is not None:
            expected, why = self.targets.memory_bank_active_by, f"target profile {self.targets.name}"
        else:
            return self._not(
                "FGD201",
                "FGD201: not judged: no memory-bank warm-up in the run info and no target "
                "profile; pass --targets",
            )
        planned = self._planned()
        if _finite(warm) and planned and int(warm) >= planned and self._mb_active_step is None:
            self._judged.add("FGD201")
            if self._gate("FGD201", True, once=True):
                self._emit(
                    out,
                    "FGD201",
                    f"memory bank cannot activate within the planned run: warm-up "
                    f"{int(warm)} optimizer steps >= {planned} planned",
                    step,
                    evidence={"warmup": int(warm), "planned": planned},
                )
            return None
        if step <= expected and self._mb_active_step is None:
            return self._not("FGD201", f"FGD201: not judged: the log ends before step {expected}")
        self._judged.add("FGD201")
        late = self._mb_active_step is None or self._mb_active_step > expected
        if self._gate("FGD201", late) and late:
            seen = (
                f"not active at step {step}"
                if self._mb_active_step is None
                else f"switched on only after step {self._mb_active_step - 1}"
            )
            self._emit(
                out,
                "FGD201",
                f"memory bank {seen}; expected by step {expected} ({why})",
                step,
                evidence={"expected": expected, "activated": self._mb_active_step},
            )
        if not late:
            self._open.pop("FGD201", None)

    def _regions(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        zero, bad = m.get(ev.REGIONS_ZERO_NORM), m.get(ev.REGIONS_NONFINITE)
        if zero is None and bad is None:
            return self._not(
                "FGD301",
                "FGD301: not judged: no region-feature norms in this log",
                absent=ev.REGIONS_ZERO_NORM,
            )
        self._judged.add("FGD301")
        hit = (_finite(zero) and zero > 0) or (bad is not None and (not math.isfinite(bad) or bad > 0))
        if self._gate("FGD301", hit, once=True) and hit:
            self._emit(
                out,
                "FGD301",
                f"region features with zero norm ({zero if zero is not None else '?'} per batch) "
                f"or non-finite values ({bad if bad is not None else '?'}) first at step {step}",
                step,
                evidence={"zero_norm": zero, "nonfinite": bad},
            )

    def _gradients(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        p = self.params
        gn = m.get(ev.GRAD_NORM)
        groups = {}
        if self._has_groups:
            groups = {
                k.split("/", 1)[1]: v
                for k, v in m.items()
                if k.startswith(ev.GRAD_NORM_GROUP + "/") and _finite(v)
            }
        if gn is None and not groups:
            return self._not("FGD501", "FGD501: not judged: no grad_norm in this log", absent=ev.GRAD_NORM)
        if _finite(gn):
            hist = [v for s, v in self._s(ev.GRAD_NORM).last(p.spike_history + 1)[:-1] if math.isfinite(v)]
            if step > self._warm and len(hist) >= p.spike_min_history:
                self._judged.add("FGD501")
                med = median(hist)
                spike = med > 0 and gn > p.spike_factor * med
                if self._gate("FGD501/spike", spike):
                    self._emit(
                        out,
                        "FGD501",
                        f"grad norm {gn:.4g} at step {step} is {gn / med:.0f}x the running "
                        f"median {med:.4g} of the previous {len(hist)} logging steps",
                        step,
                        evidence={"grad_norm": gn, "median": med},
                    )
            else:
                self._not("FGD501", "FGD501: not judged: too few grad-norm points after warm-up")
        heads = [v for k, v in groups.items() if k.startswith("heads")]
        towers = [v for k, v in groups.items() if k.startswith("towers")]
        if heads and towers and max(towers) > 0:
            self._judged.add("FGD501")
            ratio = max(heads) / max(towers)
            if self._gate("FGD501/ratio", ratio > p.head_grad_ratio):
                self._emit(
                    out,
                    "FGD501",
                    f"head gradient norm {max(heads):.4g} is {ratio:.0f}x the towers' "
                    f"{max(towers):.4g} at step {step}",
                    step,
                    evidence={"ratio": ratio},
                )

    def _region_point(self, step: int, m: Mapping[str, float | None]) -> str | None:
        """Record (step, region loss, ln K) of this row; returns why it cannot, if it cannot."""
        loss = m.get(REGION_LOSS)
        if loss is None:
            weighted, weight = m.get("region_loss"), self.run_info.get("region_loss_weight")
            if weighted is None:
                return "no region head loss in this log"
            if not (_finite(weight) and weight > 0):
                return "the log has only the weighted region_loss; pass the region_loss_weight run info"
            loss = weighted / weight
        chance = m.get(ev.head_metric(ev.CHANCE, "region"))
        if not _finite(chance):
            k = m.get(ev.head_metric(ev.CANDIDATES, "region"))
            if not _finite(k):
                k = self.run_info.get("candidates")
            if not _finite(k):
                return "no candidate count in this log; pass --candidates"
            chance = math.log(k) if k > 1 else None
        if (
            chance is None or chance <= 0 or not math.isfinite(loss) or loss == 0.0
        ):  # 0.0: the fork's "no region"
            return None
        pts = self._rpts
        if pts and pts[-1][0] == step:
            pts[-1] = (step, loss, chance)
        else:
            pts.append((step, loss, chance))
        return None

    def _chance(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        if REGION_LOSS not in m and "region_loss" not in m:
            return
        reason = self._region_point(step, m)
        if reason:
            if self._rpts:  # other rows had what this one lacks
                return None
            self._not("FGD601", f"FGD601: not judged: {reason}")
            return self._not("FGD602", f"FGD602: not judged: {reason}")
        if not self._heavy:
            return
        w, p, warm = self._w, self.params, self._warm
        pts = [pt for pt in self._rpts[-w:] if pt[0] > warm]
        if len(pts) < w:
            why = f"fewer than {w} logging points with a region loss after warm-up (step {self.warmup_end()})"
            self._not("FGD601", f"FGD601: not judged: {why}")
            return self._not("FGD602", f"FGD602: not judged: {why}")
        self._judged.update(("FGD601", "FGD602"))
        tail = pts[-w:]
        ratio_sum = loss_sum = c_sum = 0.0
        above = 0
        margin = p.above_chance_margin
        for _s, v, c in tail:
            ratio_sum += v / c
            loss_sum += v
            c_sum += c
            above += v > c + margin
        ratio = ratio_sum / w
        at_chance = abs(ratio - 1.0) < p.chance_rel_tol
        lo, hi = tail[0][0], tail[-1][0]
        mean_loss, mean_c = loss_sum / w, c_sum / w
        if self._gate("FGD601", at_chance):
            self._emit(
                out,
                "FGD601",
                f"region loss {mean_loss:.4f} is within {abs(ratio - 1) * 100:.1f} % of chance "
                f"ln K_t over steps {lo}-{hi} (mean ln K {mean_c:.4f}, K ~ {math.exp(mean_c):.0f})",
                step,
                evidence={"loss": mean_loss, "chance": mean_c, "from": lo, "to": hi},
            )
        excess = mean_loss - mean_c
        is_above = excess > p.above_chance_margin and above >= p.above_chance_share * w
        if self._gate("FGD602", is_above):
            self._emit(
                out,
                "FGD602",
                f"region loss {mean_loss:.4f} is above chance ln K_t by {excess:.2f} on "
                f"{above} of {w} logging steps {lo}-{hi} (mean ln K {mean_c:.4f})",
                step,
                evidence={"loss": mean_loss, "chance": mean_c, "from": lo, "to": hi},
            )

    def _false_negatives(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        """FGD302: the queue (or the batch) is full of the positive's own caption."""
        p = self.params
        share = m.get(ev.MB_DUP_SHARE)
        k, valid = m.get(ev.head_metric(ev.CANDIDATES, "region")), m.get(ev.REGIONS_VALID)
        queue_dups = _finite(share) and share > p.duplicate_share_max
        batch_dups = _finite(k) and _finite(valid) and valid >= 4 and k <= 1.5
        if not (_finite(share) or _finite(k)):
            return self._not(
                "FGD302", "FGD302: not judged: no duplicate share or candidate count in this log"
            )
        self._judged.add("FGD302")
        if self._gate("FGD302", queue_dups or batch_dups):
            what = (
                f"{share:.0%} of the queued negatives carry the positive's caption"
                if queue_dups
                else f"only {k:.1f} candidates for {valid:.0f} regions: every other caption equals the positive's"
            )
            self._emit(
                out,
                "FGD302",
                f"{what}: repeated captions are false negatives and leave no negatives",
                step,
                evidence={"duplicate_share": share, "candidates": k, "regions": valid},
            )

    def _collapse(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        p = self.params
        for head, base, name in COLLAPSE_NAMES:
            if name in m:
                limit = p.cos_std_min if base == ev.COS_STD else p.logits_std_min
                if step <= self._warm:
                    self._not("FGD603", "FGD603: not judged: the log ends inside the warm-up")
                    continue
                self._judged.add("FGD603")
                pts = self.series[name].values[-p.collapse_points :]
                tiny = len(pts) >= p.collapse_points and all(math.isfinite(v) and v < limit for v in pts)
                # a tight spread is collapse only while the head stays at chance and stops improving over a
                # whole window; early in training (tiny models, small batches) spreads are tight but loss falls
                ratio = self.series.get(ev.head_metric(ev.LOSS_OVER_CHANCE, head))
                if tiny and ratio is not None and ratio.values:
                    w = max(p.collapse_points, self._w)
                    recent = [v for v in ratio.values[-w:] if math.isfinite(v)]
                    tiny = (
                        len(recent) >= w
                        and min(recent) >= p.collapse_chance_share
                        and recent[0] - recent[-1] < 0.05 * recent[0]
                    )
                if self._gate(f"FGD603/{name}", tiny):
                    self._emit(
                        out,
                        "FGD603",
                        f"{base} of the {head} head is {pts[-1]:.4g} (< {limit:g}) on the last "
                        f"{len(pts)} logging steps: embeddings collapsed or logits constant",
                        step,
                        evidence={"metric": name, "value": pts[-1]},
                    )
        if "FGD603" not in self._judged:
            self._not("FGD603", "FGD603: not judged: no cos_std or logits_std in this log", absent=ev.COS_STD)

    def _targets(self, step: int, m: Mapping[str, float | None], out: list[Finding]) -> None:
        t = self.targets
        if t is None:
            return self._not("FGD604", "FGD604: not judged: no target profile; pass --targets")
        if t.logit_scale is not None:
            for head, value in self._raw.items():
                if head in self._scale_target_done:
                    continue
                self._scale_target_done.add(head)
                self._judged.add("FGD604")
                if abs(value - t.logit_scale) > t.logit_scale_tolerance:
                    self._emit(
                        out,
                        "FGD604",
                        f"{head} logit scale starts at {value:.6f}; target profile {t.name} "
                        f"expects {t.logit_scale:.4f} +- {t.logit_scale_tolerance:g}",
                        step,
                        evidence={"head": head, "raw": value, "target": t.logit_scale},
                    )
        for i, cp in enumerate(t.checkpoints):
            if i in self._targets_done or step < cp.step:
                continue
            series = self.series.get(cp.metric)
            if series is None:
                if cp.metric not in m:
                    self._not(
                        "FGD604",
                        f"FGD604: not judged: target {cp.describe()} needs {cp.metric}, absent from this log",
                    )
                continue
            self._targets_done.add(i)
            span = max(2 * self.interval(), self.params.smooth_fraction * cp.step)
            vals = [v for _s, v in series.since(cp.step - span) if math.isfinite(v) and v != 0.0]
            if not vals:
                continue
            self._judged.add("FGD604")
            smoothed = sum(vals) / len(vals)
            self.target_results.append(
                {
                    "metric": cp.metric,
                    "step": cp.step,
                    "threshold": cp.threshold,
                    "below": cp.below,
                    "value": smoothed,
                    "passed": cp.passes(smoothed),
                    "judged_at": step,
                }
            )
            if not cp.passes(smoothed):
                self._emit(
                    out,
                    "FGD604",
                    f"target missed: {cp.describe()} (profile {t.name}); smoothed value "
                    f"{smoothed:.4f} over steps {max(0, int(cp.step - span))}-{step}",
                    step,
                    evidence={
                        "metric": cp.metric,
                        "target": cp.threshold,
                        "value": smoothed,
                        "checkpoint": cp.step,
                    },
                )
