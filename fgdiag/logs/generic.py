"""`GenericParser`: what a line says when no specific parser knows its format.

Behind the specific parsers (they recognise the lines of the formats they own first, so this never runs on
them), it reads the shapes training scripts print: `name: value` and `name=value` pairs, `| name value |`
columns (PyTorch's examples), `Name value (running avg)` meters (MoCo's ProgressMeter), and positions
`[epoch][n/total]`, `[e/E: n/total]`, `| epoch e | n/ total batches`, `[e, n]` or `step=N` / `global_step: N`,
behind prefixes (`worker-0: `, `[rank0]: `, `(pid=…) `, a Markdown quote `> `). A line becomes a row only
when it holds a training loss (validation and test values are left out) and only while no specific format
has produced rows (a Trainer log's stray `key: value` lines stay out of its rows).

It also reads the run facts of header lines (`fgdiag.logs.header`) and the mixed-precision loss scaler's
skipped steps (DeepSpeed's `OVERFLOW! ... Skipping step` and `step=N, skipped=S`, apex's `Gradient
overflow`): `skipped_steps` counts them (cumulative), whatever the format of the rest of the log.
"""

from __future__ import annotations

import re

from fgdiag import events as ev
from fgdiag.logs import header
from fgdiag.logs.sink import LogSink

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|NaN|NAN|inf|Inf|Infinity)"
PREFIX_RE = re.compile(r"^(?:\s*>\s?|\(pid=\d+[^)]*\)\s*|worker-\d+:\s*|\[rank\d+\]:\s*)+")
PAIR_RE = re.compile(rf"([A-Za-z_][\w./@-]*(?: [A-Za-z_][\w./@-]*)?)\s*[:=]\s*({_NUM})(?![\w.])")
CELL_RE = re.compile(
    rf"^\s*([A-Za-z][\w./@-]*(?: [A-Za-z][\w./@-]*)*)\s+({_NUM})\s*(?:\(\s*(?:{_NUM})\s*\))?\s*$"
)
POSITIONS = (  # (regex, has total): epoch, n within the epoch, total per epoch
    (re.compile(r"\[\s*(\d+)\s*\]\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]"), True),  # Epoch: [0][ 40/391]
    (re.compile(r"\[\s*(\d+)\s*/\s*\d+\s*:\s*(\d+)\s*/\s*(\d+)"), True),  # [2/10: 100/1875 (5%)]
    (re.compile(r"epoch\s+(\d+)\s*\|\s*(\d+)\s*/\s*(\d+)\s+batches", re.IGNORECASE), True),  # word LM
    (re.compile(r"^\[\s*(\d+)\s*,\s*(\d+)\s*\]"), False),  # [1,  2000] loss: ...
)
OVERFLOW_MARKS = ("OVERFLOW!", "Gradient overflow", "gradient overflow")
SCALE_RE = re.compile(r"(?:reducing (?:loss scale )?to|setting loss scale to:?)\s*(\d+(?:\.\d*)?)")
NOT_TRAINING = frozenset(("val", "valid", "validation", "eval", "evaluation", "test", "dev"))
LOSS_KEYS = frozenset(
    (
        "loss",
        "train_loss",
        "training_loss",
        "batch_loss",
        "total_loss",
        "loss_total",
        "avg_loss",
        "mean_loss",
        "running_loss",
        "train/loss",
        "lm_loss",
        "step_loss",
        "tr_loss",
    )
)
RENAMES = {
    "lr": ev.LEARNING_RATE,
    "learning_rate": ev.LEARNING_RATE,
    "grad_norm": ev.GRAD_NORM,
    "gnorm": ev.GRAD_NORM,
    "gradient_norm": ev.GRAD_NORM,
    "total_norm": ev.GRAD_NORM,
    "skipped": ev.SKIPPED_STEPS,
    "skipped_steps": ev.SKIPPED_STEPS,
    "loss_scale": ev.LOSS_SCALE,
    "cur_scale": ev.LOSS_SCALE,
    "epoch": ev.EPOCH,
}
STEP_KEYS = ("global_step", "step", "iteration", "iter", "num_updates", "updates")
ROW_FORMATS = frozenset(("hf-trainer", "trainer_state", "fgclip-vad", "open_clip", "fgdiag", "fgdiag-events"))
STEP_NOTE = "generic metric lines without a step or position: steps are line numbers"


def _key(name: str) -> str | None:
    """The schema name of a printed metric name, or None (validation values, unknown names)."""
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if NOT_TRAINING.intersection(re.split(r"[_./@]", key)):
        return None
    if key in LOSS_KEYS:
        return ev.LOSS
    if key in RENAMES:
        return RENAMES[key]
    if key in STEP_KEYS:
        return key
    return key if ev.is_metric_name(key) else None


def pairs(line: str) -> dict[str, float]:
    """Known metrics of a line (schema names, plus step keys), the first occurrence of each."""
    found: list[tuple[str, str]] = []
    if "|" in line or "\t" in line:
        for cell in re.split(r"[|\t]", line):
            m = CELL_RE.match(cell)
            if m is not None:
                found.append((m.group(1), m.group(2)))
            elif ":" in cell or "=" in cell:
                found += PAIR_RE.findall(cell)
    else:
        found = PAIR_RE.findall(line)
    out: dict[str, float] = {}
    for name, raw in found:
        key = _key(name)
        if key is None and " " in name and name.split()[0].lower() not in NOT_TRAINING:
            key = _key(name.split()[-1])  # "the loss: 0.5": the last word names the value
        if key is not None and key not in out:
            try:
                out[key] = float(raw)
            except ValueError:
                continue
    return out


class Positions:
    """Optimizer-step-like positions from (epoch, n within it, total per epoch or None): counters that
    restart every epoch are laid end to end."""

    def __init__(self) -> None:
        self.first_epoch: int | None = None
        self.epoch: int | None = None
        self.offset = 0
        self.top = 0  # largest n seen in the current epoch

    def at(self, epoch: int, n: int, total: int | None) -> int:
        if self.first_epoch is None:
            self.first_epoch = epoch
        if total:
            return (epoch - self.first_epoch) * total + n
        if self.epoch is not None and epoch > self.epoch:
            self.offset += self.top
            self.top = 0
        self.epoch = epoch
        self.top = max(self.top, n)
        return self.offset + n


class GenericParser:
    """See the module docstring; `line` returns True when the line told something."""

    def __init__(self, sink: LogSink) -> None:
        self.sink = sink
        self.positions = Positions()
        self.skipped = 0  # overflow lines counted (DeepSpeed's own count wins when printed)
        self.counted = True  # skipped steps come from counting overflow lines
        self.rows = 0
        self.last_step: int | None = None
        self.counter: tuple[float, float] | None = None  # (epoch, value) of the last `step=`-like counter
        self.counter_offset = 0.0
        self.counter_top = 0.0

    def line(self, line: str) -> bool:
        if any(mark in line for mark in OVERFLOW_MARKS):
            return self._overflow(line)
        sink = self.sink
        facts = header.read_facts(line)
        if facts:
            header.record(sink.run_info, facts, sink.lineno)
            return True
        if not any(c in line for c in ":=|\t") or not any(c.isdigit() for c in line):
            return False
        text = PREFIX_RE.sub("", line) if line[0] in " >(w[" else line
        values = pairs(text)
        if not values:
            return False
        skipped = values.pop(ev.SKIPPED_STEPS, None)
        if skipped is not None:
            self._skipped(values, skipped)
            if ev.LOSS not in values:
                return True
        if ev.LOSS not in values and not any(k in ev.LOSS_PARTS for k in values):
            return False
        if ROW_FORMATS.intersection(sink.formats):
            return False  # a specific format owns this log's rows
        return self._row(text, values)

    def _overflow(self, line: str) -> bool:
        if self.counted:
            self.skipped += 1
            self.sink.keep_last(ev.SKIPPED_STEPS, float(self.skipped))
        m = SCALE_RE.search(line)
        if m is not None:
            self.sink.keep_last(ev.LOSS_SCALE, float(m.group(1)))
        self.sink.formats.add("loss-scaler")
        return True

    def _skipped(self, values: dict[str, float], skipped: float) -> None:
        """DeepSpeed's `step=N, skipped=S`: the authoritative count, and the step the next dict line logs."""
        sink = self.sink
        self.counted = False
        step = values.get("global_step", values.get("step"))
        if step is not None and step == int(step):
            sink.settle()
            sink.at(int(step))
            sink.announced = int(step)
        sink.keep_last(ev.SKIPPED_STEPS, skipped)
        sink.formats.add("loss-scaler")

    def _step(self, text: str, values: dict[str, float]) -> int:
        """The step of a row: `global_step`, else a position (epoch, n/total), else a `step`-like counter
        (laid end to end when it restarts as the epoch moves on), else the row count (with a note)."""
        if "global_step" in values:
            return int(values["global_step"])
        for pattern, has_total in POSITIONS:
            m = pattern.search(text)
            if m is not None:
                total = int(m.group(3)) if has_total else None
                return self.positions.at(int(m.group(1)), int(m.group(2)), total)
        key = next((k for k in STEP_KEYS[1:] if k in values), None)
        if key is not None:
            step, epoch = values[key], values.get(ev.EPOCH)
            last = self.counter
            if last is not None and epoch is not None and step < last[1] and epoch > last[0]:
                self.counter_offset += self.counter_top  # a per-epoch counter restarted
                self.counter_top = 0.0
            self.counter = (epoch if epoch is not None else -1.0, step)
            self.counter_top = max(self.counter_top, step)
            return int(self.counter_offset + step)
        if STEP_NOTE not in self.sink.notes:
            self.sink.notes.append(STEP_NOTE)
        return (self.last_step or 0) + 1

    def _row(self, text: str, values: dict[str, float]) -> bool:
        sink = self.sink
        step = self._step(text, values)
        for key in STEP_KEYS:
            values.pop(key, None)
        sink.settle()
        sink.at(step)
        sink.put_many(dict(values))
        sink.formats.add("generic")
        self.rows += 1
        self.last_step = step
        return True
