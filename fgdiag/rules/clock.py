"""The run's clock advanced over a batch of rows: each row's step, whether window statistics are due on it
(`heavy`), the trend window and the typical interval between logging points as the engine sees them there.

Rows one at a time in a Python loop cost ~1 µs each; a batch whose steps rise past the last one (the common
case: every row a new logging point) is clocked a run of rows at a time instead: the interval is measured
every 8 points, so between two measurements the window and the heavy stride are fixed and the heavy rows
are every stride-th row. Both paths give the same clock row for row (tests feed logs in many chunkings).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from itertools import compress, pairwise, repeat
from operator import is_not, lt
from typing import Protocol

from fgdiag import events as ev
from fgdiag.rules.batch import Batch
from fgdiag.rules.series import median

MEASURE_EVERY = 8  # logging points between two measurements of the interval
TAIL = 11  # the steps an interval is measured on (10 gaps)


class Clocked(Protocol):
    """The engine's clock state (`RuleEngine`), advanced here."""

    last_step: int | None
    npoints: int
    _loss_steps: deque[int]
    _row_steps: deque[int]
    _last_heavy: int
    _interval: tuple[int, float]
    _clock: tuple[int, float] | None
    _start: int
    _w: int
    _now_interval: float
    _version: int

    def trend_start(self) -> int: ...

    def window_points(self) -> int: ...


def measure(tail: Sequence[int]) -> float:
    """Typical steps between logging points: the median of the rising gaps of `tail` (1 when none)."""
    gaps = [b - a for a, b in pairwise(tail) if b > a]
    return float(median(gaps)) if gaps else 1.0


def clock_batch(e: Clocked, batch: Batch, steps: list[int]) -> Batch:
    """Advance the engine's clock over the batch's rows (grouped; `steps`: theirs); the batch records each
    row's clock."""
    if not set(map(type, steps)) <= {int}:
        steps = list(map(int, steps))
    batch.rises = all(map(lt, steps, steps[1:]))
    if batch.rises and (e.last_step is None or steps[0] > e.last_step):
        _rising(e, batch, steps)
    else:
        _row_by_row(e, batch, steps)
    return batch


def _rising(e: Clocked, batch: Batch, steps: list[int]) -> None:
    """Every row a new logging point: the clock changes only where a measurement moves the interval (or at
    the first row after new run info), so the rows between two such marks share the window and stride."""
    n, np0 = len(steps), e.npoints
    held, losses = batch.column(ev.LOSS)
    with_loss = held if None not in losses else list(compress(held, map(is_not, losses, repeat(None))))
    row_pre, loss_pre = list(e._row_steps), list(e._loss_steps)
    all_rows, loss_at = row_pre + steps, list(map(steps.__getitem__, with_loss))
    all_loss = loss_pre + loss_at
    even_rows, even_loss = _even(all_rows), _even(all_loss)  # the steps of both deques strictly rise
    measured_at, interval = e._interval
    clock, version = e._clock, e._version
    cuts = range(max(0, measured_at + MEASURE_EVERY - np0 - 1), n, MEASURE_EVERY)  # rows measured on
    marks: list[tuple[int, float]] = []  # (row, interval) where the clock changes
    if (not cuts or cuts[0] > 0) and (clock is None or clock[0] != version):
        clock = (version, interval)
        marks.append((0, interval))
    need = 2 - len(loss_pre)  # loss steps the batch must bring before an interval is measured on them
    lossy = 0 if need <= 0 else with_loss[need - 1] if len(with_loss) >= need else n
    for a in cuts:
        if a >= lossy and even_loss is not None:  # two loss steps or more from here on, evenly spaced:
            if clock != (version, even_loss):  # every later measurement gives the same interval
                clock = (version, even_loss)
                marks.append((a, even_loss))
            measured_at, interval = np0 + cuts[-1] + 1, even_loss
            break
        lk = len(loss_pre) + bisect_right(with_loss, a)
        if lk >= 2:
            got = even_loss if even_loss is not None else measure(all_loss[max(0, lk - TAIL) : lk])
        else:
            j = len(row_pre) + a + 1
            got = even_rows if even_rows is not None and j >= 2 else measure(all_rows[max(0, j - TAIL) : j])
        if clock != (version, got):  # the interval moved: the trend start and window follow
            clock = (version, got)
            marks.append((a, got))
        measured_at, interval = np0 + a + 1, got
    start, w, last_heavy = e._start, e._w, e._last_heavy
    if not marks or marks[0][0] > 0:  # the rows up to the first mark keep the clock as it was
        marks.insert(0, (0, math.nan))
    heavy = [False] * n
    windows: list[int] = []
    intervals: list[float] = []
    now = e._interval[1]
    for k, (a, moved) in enumerate(marks):
        if moved == moved:  # not NaN: the clock changes here
            e._now_interval = now = moved
            start, w = e.trend_start(), e.window_points()
        b = marks[k + 1][0] if k + 1 < len(marks) else n
        stride = max(1, w // 20)
        due = range(max(a, last_heavy + stride - np0 - 1), b, stride)  # npoints - last_heavy >= stride
        if due:
            heavy[due.start : b : stride] = [True] * len(due)
            last_heavy = np0 + due[-1] + 1
        windows += [w] * (b - a)
        intervals += [now] * (b - a)
    e._row_steps.extend(steps[-TAIL:])
    e._loss_steps.extend(loss_at[-TAIL:])
    e.last_step, e.npoints, e._last_heavy = steps[-1], np0 + n, last_heavy
    e._interval, e._clock, e._start, e._w = (measured_at, interval), clock, start, w
    batch.steps, batch.heavy, batch.windows, batch.intervals = steps, heavy, windows, intervals
    batch.start = start


def _even(steps: list[int]) -> float | None:
    """The one gap between every two steps (what `measure` gives on any tail of them); None if they vary."""
    if len(steps) < 2:
        return None
    gap = steps[1] - steps[0]
    if (
        gap <= 0
        or steps[-1] - steps[0] != gap * (len(steps) - 1)
        or steps != list(range(steps[0], steps[-1] + 1, gap))
    ):
        return None
    return float(gap)


def _row_by_row(e: Clocked, batch: Batch, steps: list[int]) -> None:
    """Steps logged again or going back (a resume): the clock a row at a time."""
    heavy, windows, intervals = batch.heavy, batch.windows, batch.intervals
    last, npoints, last_heavy = e.last_step, e.npoints, e._last_heavy
    loss_steps, row_steps = e._loss_steps, e._row_steps
    measured_at, interval = e._interval
    clock, start, w = e._clock, e._start, e._w
    version, loss = e._version, ev.LOSS
    stride = max(1, w // 20)
    for step, (_s, m) in zip(steps, batch.rows, strict=True):
        if last is None or step > last:
            npoints += 1
            row_steps.append(step)
            last = step
        if m.get(loss) is not None and (not loss_steps or loss_steps[-1] < step):
            loss_steps.append(step)
        if npoints - measured_at >= MEASURE_EVERY:
            tail = loss_steps if len(loss_steps) >= 2 else row_steps
            measured_at, interval = npoints, measure(tail)
            if clock != (version, interval):  # the interval moved: the trend start and window follow
                clock = (version, interval)
                e._now_interval = interval
                start, w = e.trend_start(), e.window_points()
                stride = max(1, w // 20)
        elif clock is None or clock[0] != version:
            clock = (version, interval)
            e._now_interval = interval
            start, w = e.trend_start(), e.window_points()
            stride = max(1, w // 20)
        h = npoints - last_heavy >= stride
        if h:
            last_heavy = npoints
        heavy.append(h)
        windows.append(w)
        intervals.append(interval)
    batch.steps = steps
    e.last_step, e.npoints, e._last_heavy = last, npoints, last_heavy
    e._interval, e._clock, e._start, e._w = (measured_at, interval), clock, start, w
    batch.start = start
