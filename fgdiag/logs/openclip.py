"""open_clip training lines:

    Train Epoch: 0 [ 1024/100000 (1%)] Data (t): 0.1 Batch (t): 1.2, 830/s, 830/s/gpu LR: 0.000500
        Logit Scale: 14.286 Contrastive_loss: 9.7031 (9.7031) Loss: 9.7031 (9.7031)

`Logit Scale` is exp(raw) (14.286 at init, 100.000 at the clamp), so it lands in `logit_scale_exp/global` and
the raw value is its log. Numbers in parentheses are running means and are ignored. The step is derived from
the sample counter: the first line of a run is logged after one batch, so its count is the samples per step.
"""

from __future__ import annotations

import math
import re

from fgdiag import events as ev
from fgdiag.logs.sink import LogSink

HEADER_RE = re.compile(r"Train Epoch: (\d+) \[\s*(\d+)/(\d+)")
SCALE_RE = re.compile(r"Logit Scale: ([-+\w.]+)")
LR_RE = re.compile(r"\bLR: ([-+\w.]+)")
LOSS_RE = re.compile(r"\b(\w*?)_?[Ll]oss: ([-+\w.]+)")


class OpenClipSteps:
    """Turns (epoch, samples seen, samples per epoch) into optimizer steps."""

    def __init__(self) -> None:
        self.per_step: int | None = None

    def step(self, epoch: int, seen: int, total: int) -> int:
        if self.per_step is None or (epoch == 0 and 0 < seen < self.per_step):
            self.per_step = max(seen, 1)
        per_epoch = math.ceil(total / self.per_step) if total else 0
        return epoch * per_epoch + round(seen / self.per_step)


def parse_line(text: str) -> tuple[tuple[int, int, int] | None, dict[str, float]]:
    """((epoch, seen, total) or None, metrics) from one open_clip line."""
    header = HEADER_RE.search(text)
    pos = (int(header.group(1)), int(header.group(2)), int(header.group(3))) if header else None
    metrics: dict[str, float] = {}
    m = SCALE_RE.search(text)
    if m:
        try:
            scale = float(m.group(1))
        except ValueError:
            scale = None
        if scale is not None:
            metrics[ev.head_metric(ev.LOGIT_SCALE_EXP, "global")] = scale
            if scale > 0:
                metrics[ev.head_metric(ev.LOGIT_SCALE, "global")] = math.log(scale)
    m = LR_RE.search(text)
    if m:
        try:
            metrics[ev.LEARNING_RATE] = float(m.group(1))
        except ValueError:
            pass
    for prefix, value in LOSS_RE.findall(text):
        try:
            number = float(value)
        except ValueError:
            continue
        key = prefix.lower()
        if key == "":
            metrics[ev.LOSS] = number
        elif key == "contrastive":
            metrics[ev.head_metric(ev.HEAD_LOSS, "global")] = number
    if ev.LOSS not in metrics and ev.head_metric(ev.HEAD_LOSS, "global") in metrics:
        metrics[ev.LOSS] = metrics[ev.head_metric(ev.HEAD_LOSS, "global")]
    return pos, metrics


class OpenClipParser:
    """open_clip's `Train Epoch:` lines: metrics at the step derived from the sample counter."""

    def __init__(self, sink: LogSink) -> None:
        self.sink = sink
        self.steps = OpenClipSteps()

    def line(self, text: str) -> bool:
        pos, metrics = parse_line(text)
        if pos is None and not metrics:
            return False
        sink = self.sink
        sink.formats.add("open_clip")
        if pos is not None:
            sink.at(self.steps.step(*pos))
        for name, value in metrics.items():
            sink.put(name, value)
        return True
