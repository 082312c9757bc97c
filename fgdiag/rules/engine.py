"""The streaming judge: metric rows in, findings out, through every registered runtime check.

`observe_rows(rows)` (or `observe(step, metrics)` for one row) is called as logging steps arrive (again with
the same step when more of that step's metrics arrive) and returns only new findings. The engine owns what
every rule shares and knows no rule by name: the bounded series the checks ask it to keep, the run's clock
(logging points, the typical interval between them, the trend start and the window sized from the run), the
episode gate (a condition fires once and re-arms after `clear_points` clear logging points), and the "not
judged" bookkeeping.

Speed: rows come in batches (a chunk of a log). A row is routed only to the checks that read one of its
metrics (plus those that need every row, such as a deadline); a check may settle a whole batch from its
columns (`Check.quick`) and ask `observe` only for the rows where something can happen. The findings and
their order are those of one `observe` per row, whatever the batch boundaries (tests feed one log in many
chunkings).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, ClassVar

from fgdiag import events as ev
from fgdiag.diagnostic import Finding, Severity
from fgdiag.facts import LN_100
from fgdiag.rules import registry
from fgdiag.rules.batch import Batch, Extra
from fgdiag.rules.clock import clock_batch
from fgdiag.rules.gates import Gates
from fgdiag.rules.series import SeriesStore, finite

Row = Mapping[str, float | None]
ROUTE_CACHE = 512


@dataclass
class RuleParams:
    """The run's clock (steps are optimizer steps; points are logging steps). Thresholds of the rules live in
    their own classes."""

    trend_start_fraction: float = 0.1  # rules on trends start after this share of the planned steps...
    trend_start_min_steps: int = 10  # ...or this many steps, or the lr warm-up, whichever is last
    window_fraction: float = 0.1  # a trend window spans this share of the planned steps,
    window_min_steps: int = 20  # clamped to [min, max] steps (failure-modes A1: 200 steps on long runs)
    window_max_steps: int = 200
    window_min_points: int = 5  # and at least this many logging points
    clear_points: int = 5  # an episode ends after this many clear logging points


class Check:
    """Base of a runtime check: a small class that owns its state and judges the rows routed to it.

    codes: what it may emit. reads: metric names it judges (a trailing "/" makes a prefix): a row holding one
    is routed to `observe`. every_row: also route rows without them (deadlines); may change in `configure`,
    which runs at start and whenever the run info changes. keeps: series the engine must store for it.
    absent: why its codes are not judged when no row ever held what it reads ("" = say nothing).
    """

    codes: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()
    keeps: tuple[str, ...] = ()
    absent: ClassVar[str] = ""
    every_row: bool = False

    def __init__(self, engine: RuleEngine) -> None:
        self.engine = engine

    def configure(self) -> None:
        """Recompute run-info-dependent settings (`every_row` among them)."""

    def observe(self, step: int, m: Row) -> None:
        """Judge one row (a check emits through `self.engine.emit`)."""

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Settle the batch's routed `rows` in bulk where that gives exactly what `observe` would (no finding,
        the same state), and return the rows that still need `observe`; None (the default): all of them.
        Runs before the batch reaches the engine's series, so those hold the rows before the batch."""
        return None

    def event(self, step: int, kind: str, data: Mapping[str, Any]) -> None:
        """A point event of the log (memory_bank_enabled, crash, ...)."""

    def finish(self) -> None:
        """The log or run ended: judge what can only be judged at the end."""


def _matcher(patterns: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """(exact names, prefixes) of patterns where a trailing "/" marks a prefix."""
    given = list(patterns)
    return frozenset(p for p in given if not p.endswith("/")), tuple(p for p in given if p.endswith("/"))


class RuleEngine:
    """Judge a run from its metric rows, streaming. `run_info` keys (events.py): planned_steps, warmup_steps
    (lr), memory_bank_size, memory_bank_warmup_steps, logit_scale_max, candidates (K when the log has none),
    region_loss_weight, logging_steps, logit_scales_weight_decay."""

    def __init__(
        self,
        run_info: Mapping[str, Any] | None = None,
        targets: Any = None,
        params: RuleParams | None = None,
        checks: Iterable[type[Check]] | None = None,
    ):
        self.run_info: dict[str, Any] = dict(run_info or {})
        self.targets = targets
        self.params = params or RuleParams()
        self.store = SeriesStore()
        self.series = self.store.series  # name -> Series, the points the checks asked to keep
        self.last_step: int | None = None
        self.npoints = 0
        self.findings: list[Finding] = []
        self.target_results: list[dict[str, Any]] = []  # target points judged so far (checks append)
        self.judged: set[str] = set()
        self.recoveries: list[dict[str, Any]] = []  # crashes the log trained on after (checks append)
        self.why_not: dict[str, str] = {}
        self.extra_not_judged: dict[str, str] = {}
        self.heavy = True  # window statistics are due on this row (every 5 % of a window, not every row)
        gates = self.gates = Gates(self.params.clear_points)  # the episode gate, its methods on the engine
        self.gate, self.gates_fire, self.apply_gates = gates.gate, gates.fire, gates.apply
        self.close, self.is_open = gates.close, gates.is_open
        self._out: list[Finding] = []
        self._rules: dict[str, registry.Rule] = {}
        self._loss_steps: deque[int] = deque(maxlen=11)
        self._row_steps: deque[int] = deque(maxlen=11)
        self._last_heavy = 0
        self._interval: tuple[int, float] = (-8, 1.0)  # (npoints when measured, value)
        self._clock: tuple[int, float] | None = None  # (info version, interval) of _start and _w
        self._start, self._w, self._now_interval = 0, 1, 1.0
        self._version = 0
        self._raw: tuple[Row, dict[str, float]] | None = None
        classes = list(checks) if checks is not None else registry.checks("runtime")
        self.checks: list[Check] = [cls(self) for cls in classes]
        self._reads = [_matcher(c.reads) for c in self.checks]
        self._seen = [False] * len(self.checks)
        self._routes: dict[tuple[str, ...], tuple[list[int], list[str]]] = {}
        self._keep_names, self._keep_prefixes = _matcher(k for c in self.checks for k in c.keeps)
        for check in self.checks:
            check.configure()

    # --- run info and clock ------------------------------------------------------------------------------
    def update_info(self, info: Mapping[str, Any]) -> None:
        """Merge run facts (a `run` record, trainer_state.json, the user's options); checks reconfigure."""
        changed = {k: v for k, v in info.items() if self.run_info.get(k, ...) != v}
        if not changed:
            return
        self.run_info.update(changed)
        self._version += 1
        for check in self.checks:
            check.configure()
        self._routes.clear()

    def planned(self) -> int | None:
        planned = self.run_info.get("planned_steps")
        return int(planned) if finite(planned) and planned > 0 else None

    def clamp(self) -> float:
        value = self.run_info.get("logit_scale_max")
        return float(value) if finite(value) else LN_100

    def interval(self) -> float:
        """Typical steps between logging points (median of recent gaps, refreshed every 8 new points), as of
        the current row."""
        return self._now_interval

    def trend_start(self) -> int:
        """The optimizer step after which trend rules judge (the start of training is noisy by design)."""
        p, planned = self.params, self.planned()
        end = p.trend_start_min_steps
        if planned:
            end = max(end, math.ceil(p.trend_start_fraction * planned))
        lr_warmup = self.run_info.get("warmup_steps")
        if finite(lr_warmup):
            end = max(end, int(lr_warmup))
        return end

    def window_points(self) -> int:
        p, planned = self.params, self.planned()
        steps = p.window_fraction * planned if planned else p.window_min_steps
        steps = min(max(steps, p.window_min_steps), p.window_max_steps)
        return max(p.window_min_points, math.ceil(steps / max(self.interval(), 1.0)))

    @property
    def start(self) -> int:
        """`trend_start()` as of the current row."""
        return self._start

    @property
    def window(self) -> int:
        """Logging points of a trend window as of the current row."""
        return self._w

    # --- shared views of a row ---------------------------------------------------------------------------
    def raw_scales(self, m: Row) -> dict[str, float]:
        """Raw (log-space) scale per head in this row; from exp(scale) when only that is logged."""
        cached = self._raw
        if cached is not None and cached[0] is m:
            return cached[1]
        raw = {}
        for h in ev.HEADS:
            v = m.get(ev.head_metric(ev.LOGIT_SCALE, h))
            if v is not None and math.isfinite(v):
                raw[h] = float(v)
        for h in ev.HEADS:
            s = m.get(ev.head_metric(ev.LOGIT_SCALE_EXP, h))
            if h not in raw and s is not None and math.isfinite(s) and s > 0:
                raw[h] = math.log(s)
        self._raw = (m, raw)  # holds the row: an id() could be reused by the next row's dict
        return raw

    # --- routing and reporting -----------------------------------------------------------------------
    def reroute(self) -> None:
        """A check changed `every_row` outside `configure`: rows are routed afresh."""
        self._routes.clear()

    def emit(
        self,
        code: str,
        message: str,
        step: int,
        *,
        severity: Severity | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        rule = self._rules.get(code)
        if rule is None:
            rule = self._rules[code] = registry.get(code)
        finding = rule.finding(
            message, location=f"step {step}", step=step, severity=severity, evidence=evidence
        )
        self.findings.append(finding)
        self._out.append(finding)

    def emit_heads(
        self,
        code: str,
        found: list[tuple[str, str, Severity | None, dict[str, Any]]],
        step: int,
    ) -> None:
        """One finding for what several heads show at the same step (the seed's region and hard-negative heads
        share a cause): `found` holds (head, message, severity, evidence); messages that differ only by the
        head's name read as one sentence naming the heads."""
        if not found:
            return
        heads = [h for h, _m, _s, _e in found]
        shapes = {m.replace(h, "{head}") for h, m, _s, _e in found}
        if len(found) > 1 and len(shapes) == 1:
            message = shapes.pop().replace("{head}", " and ".join(heads), 1).replace("{head}", "their")
        else:
            message = "; ".join(m for _h, m, _s, _e in found)
        ranked = [s for _h, _m, s, _e in found if s is not None]
        severity = None if len(ranked) < len(found) else max(ranked, key=lambda s: s.rank)
        evidence = found[0][3] if len(found) == 1 else {"heads": heads, "per_head": [e for *_r, e in found]}
        self.emit(code, message, step, severity=severity, evidence=evidence)

    def judge(self, *codes: str) -> None:
        """Mark codes as judged on this log (they leave the not-judged list)."""
        self.judged.update(codes)

    def why(self, code: str, reason: str) -> None:
        """Why `code` could not be judged (the latest reason wins; dropped once the code is judged)."""
        self.why_not[code] = f"{code}: not judged: {reason}"

    # --- streaming --------------------------------------------------------------------------------------
    def _route(self, names: tuple[str, ...]) -> tuple[list[int], list[str]]:
        """(indices of the checks a row with these metric names goes to, the names whose series are kept)."""
        checks = []
        for i, (check, (exact, prefixes)) in enumerate(zip(self.checks, self._reads, strict=True)):
            hit = any(n in exact or n.startswith(prefixes) for n in names)
            if hit:
                self._seen[i] = True
            if hit or check.every_row:
                checks.append(i)
        kept = [n for n in names if n in self._keep_names or n.startswith(self._keep_prefixes)]
        if len(self._routes) >= ROUTE_CACHE:
            self._routes.clear()
        self._routes[names] = (checks, kept)
        return checks, kept

    def observe(self, step: int, metrics: Row) -> list[Finding]:
        """Feed one logging step's metrics (None = missing); returns the findings that are new."""
        return self.observe_rows([(int(step), metrics)])

    def observe_rows(
        self, rows: Sequence[tuple[int, Row]], layouts: Sequence[tuple[str, ...]] | None = None
    ) -> list[Finding]:
        """Feed rows in log order; returns the new findings (those of one `observe` per row, in order).
        `layouts`: each row's metric names in order, when the caller has them (the row store)."""
        if not rows:
            return []
        batch = Batch(rows)
        batch.group_rows(layouts)
        return self._judge(clock_batch(self, batch, list(map(itemgetter(0), rows))))

    def observe_columns(
        self,
        steps: list[int],
        names: tuple[str, ...],
        cols: Sequence[list[float]],
        extra: Sequence[Extra] = (),
    ) -> list[Finding]:
        """`observe_rows` for rows given as columns (a run of Trainer or fork steps): each holds every one of
        `names`, the `extra` rows more (`Batch.from_columns`); a row's dict is built only when a check
        observes it."""
        if not steps:
            return []
        return self._judge(clock_batch(self, Batch.from_columns(steps, names, cols, extra), steps))

    def _judge(self, batch: Batch) -> list[Finding]:
        """Each check settles what it can of the batch from columns (`quick`), then observes the rest a row
        at a time, in order."""
        rows = batch.rows
        routes = {names: self._routes.get(names) or self._route(names) for names in batch.groups}
        parts: list[list[list[int]]] = [[] for _ in self.checks]  # per check: the groups routed to it
        for names, idx in batch.groups.items():
            for ci in routes[names][0]:
                parts[ci].append(idx)
        needs: dict[int, list[int]] = {}
        for ci, got in enumerate(parts):
            if got:
                n = len(got)
                idx = got[0] if n == 1 else batch.every() if n == len(batch.groups) else sorted(chain(*got))
                need = self.checks[ci].quick(batch, idx)
                for i in idx if need is None else need:
                    needs.setdefault(i, []).append(ci)
        steps, store = batch.steps, self.store
        rising = store.rising(batch)
        if rising:  # the batch goes into the series at once; `tail` shows each row the points up to it
            store.view = store.keep_batch(batch, routes)
        done = 0
        for i in sorted(needs):
            step, m = rows[i]
            if not rising:
                if i > done:
                    store.keep_span(batch, routes, done, i)
                store.keep_row(step, m, routes[tuple(m)][1])
            store.row = i
            self._start, self._w = batch.start, batch.windows[i]
            self._now_interval, self.heavy = batch.intervals[i], batch.heavy[i]
            self._raw = None  # a row merged with more metrics of its step may be the same dict again
            for ci in sorted(needs[i]):
                self.checks[ci].observe(steps[i], m)
            done = i + 1
        if not rising and done < len(rows):
            store.keep_span(batch, routes, done, len(rows))
        store.done(steps)
        self._start, self._w = batch.start, batch.windows[-1]
        self._now_interval, self.heavy = batch.intervals[-1], batch.heavy[-1]
        out, self._out = self._out, []
        return out

    def tail(self, name: str, n: int) -> tuple[list[int], list[float]]:
        """(steps, values) of the last n points of a kept series, as of the row being judged."""
        return self.store.tail(name, n)

    def since(self, name: str, step: float) -> list[tuple[int, float]]:
        """(step, value) points of a kept series from `step` on, as of the row being judged."""
        return self.store.since(name, step)

    def event(self, step: int, kind: str, data: Mapping[str, Any] | None = None) -> list[Finding]:
        """Feed a point event (memory_bank_enabled, crash, ...)."""
        for check in self.checks:
            check.event(int(step), kind, data or {})
        out, self._out = self._out, []
        return out

    def finish(self) -> list[Finding]:
        """End of the log or run: judge what can only be judged at the end; returns new findings."""
        for check in self.checks:
            check.finish()
        out, self._out = self._out, []
        return out

    def not_judged(self) -> list[dict[str, str]]:
        """Rules that could not be judged on this log, each with the reason (what to pass to fix it)."""
        reasons: dict[str, str] = {}
        for check, seen in zip(self.checks, self._seen, strict=True):
            for code in check.codes:
                if code in self.judged or code in reasons:
                    continue
                reason = self.why_not.get(code)
                if reason is None and not seen and check.absent and self.npoints:
                    reason = f"{code}: not judged: {check.absent}"
                if reason is not None:
                    reasons[code] = reason
        out = [{"code": code, "reason": reason} for code, reason in sorted(reasons.items())]
        out += [
            {"code": key.split("@")[0], "reason": reason} for key, reason in self.extra_not_judged.items()
        ]
        return out
