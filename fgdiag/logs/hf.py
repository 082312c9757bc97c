"""transformers Trainer output: the logged dict lines, the final `train_runtime` line, tqdm bars and
`trainer_state.json`; `HfParser` attributes dict lines to optimizer steps.

Dict lines are Python reprs (`{'loss': 2.3, 'grad_norm': nan}`) or JSON; values may be `nan`, `inf`,
`np.float64(1.2)` or `tensor(...)`. A linear scan for `'key': value` pairs reads them without eval;
`json.loads` and then `ast.literal_eval` (short lines only) are fallbacks for shapes the scan rejects.

Steps: our `[fgdiag] step N` line just before a dict line names its step; else the training bar's position
when it moved since the last dict line; else logging lines x logging_steps (or a plain count, with a note).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from fgdiag import events as ev
from fgdiag.logs.sink import LogSink
from fgdiag.logs.values import NotANumber, to_float

# a key in quotes followed by a colon; values are whatever lies between two keys
_KEY_RE = re.compile(r"""(['"])([A-Za-z_][\w./\-]{0,80})\1\s*:\s*""")
# tqdm: ` 42%|████▏     | 100/240 [01:00<01:24,  1.66it/s]` (also `?it/s`, `s/it`)
BAR_RE = re.compile(r"(\d+)/(\d+) \[[^\[\]]{0,80}?(?:it/s|s/it)[^\[\]]{0,20}\]")
_BAR = r"\s*\d+%\|[^|\r\n]*\|\s*\d+/\d+ \[[^\[\]]{0,80}?(?:it/s|s/it)[^\[\]]{0,20}\]\s*"
BARS_LINE_RE = re.compile(rf"(?:\r+(?:{_BAR})?)+")  # `\r`-separated plain bars, nothing else
BAR_NUMBERS_RE = re.compile(r"\|\s*(\d+)/(\d+) \[")
BAR_PREFIX_RE = re.compile(
    r"\r\s*\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+) \[[^\[\]]{0,80}?(?:it/s|s/it)[^\[\]]{0,20}\]"
)
LITERAL_EVAL_MAX = 4096

# Trainer keys -> event metric names
HF_KEYS = {
    "loss": ev.LOSS,
    "grad_norm": ev.GRAD_NORM,
    "learning_rate": ev.LEARNING_RATE,
    "epoch": ev.EPOCH,
}
TRAIN_END_KEYS = ("train_runtime", "train_loss", "train_samples_per_second", "train_steps_per_second")
EVAL_PREFIX = "eval_"  # the Trainer's evaluation metrics (`metric_key_prefix`)


class DictLine:
    """What one dict line held: metrics for a logging step, or the end-of-training summary."""

    __slots__ = ("end", "evaluation", "metrics", "skipped")

    def __init__(self) -> None:
        self.metrics: dict[str, float | None] = {}
        self.end: dict[str, float] | None = None
        self.skipped: list[str] = []
        self.evaluation = False  # an evaluation's dict (`eval_*` keys): it belongs to the step just logged


def _scan_pairs(body: str) -> list[tuple[str, str]] | None:
    """Split `'k': v, 'k2': v2` into raw (key, value text) pairs; None when no key is found."""
    keys = list(_KEY_RE.finditer(body))
    if not keys:
        return None
    pairs = []
    for i, m in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(body)
        value = body[m.end() : end].strip().rstrip(",").rstrip("}").strip()
        pairs.append((m.group(2), value))
    return pairs


def _fallback(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if data is None and len(text) <= LITERAL_EVAL_MAX:
        try:
            data = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            data = None
    return data if isinstance(data, dict) else None


def _assign(out: DictLine, key: str, value: float | None) -> None:
    if key.startswith("fgdiag/"):  # what FGDiagCallback adds to the Trainer's log dict
        key = key[len("fgdiag/") :]
    name = HF_KEYS.get(key)
    if name is None and ev.is_metric_name(key):
        name = key
    if name is not None:
        out.metrics[name] = value
    elif key in TRAIN_END_KEYS:
        if out.end is None:
            out.end = {}
        if value is not None:
            out.end[key] = value
    else:
        out.skipped.append(key)
        if key.startswith(EVAL_PREFIX):
            out.evaluation = True


def parse_dict_line(text: str) -> DictLine | None:
    """Read a Trainer dict line (text starts at `{`). None when it is not one (no known key)."""
    text = text.strip()
    pairs = _scan_pairs(text[1:])
    out = DictLine()
    if pairs is not None:
        for key, raw in pairs:
            try:
                value = to_float(raw)
            except NotANumber:
                continue
            _assign(out, key, value)
    else:
        data = _fallback(text)
        if data is None:
            return None
        for key, raw in data.items():
            if isinstance(raw, (int, float)) or raw is None:
                _assign(out, str(key), None if raw is None else float(raw))
    _drop_repeated_epoch(out)
    if not out.metrics and out.end is None and not out.evaluation:
        return None
    return out


def _drop_repeated_epoch(line: DictLine) -> None:
    """The end-of-training line and an evaluation's line repeat `epoch`: neither is a logging step (the
    Trainer evaluates at the step it has just logged; counted as a step, each evaluation would shift every
    later step by one)."""
    if (
        (line.end is not None or line.evaluation)
        and ev.LOSS not in line.metrics
        and ev.GRAD_NORM not in line.metrics
    ):
        line.metrics = {}


def last_bar(text: str) -> tuple[int, int, int] | None:
    """(n, total, end offset) of the last tqdm bar in `text`, or None."""
    found = None
    for m in BAR_RE.finditer(text):
        before = text[max(0, m.start() - 80) : m.start()].rsplit("\r", 1)[-1]
        if _LABELLED_BAR_RE.search(before):
            continue  # `Loading weights: 100%|...| 78/78`, `Writing model shards: ...`: not the training bar
        found = m
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2)), found.end()


_LABELLED_BAR_RE = re.compile(r"[A-Za-z]{3,}[^|%\r]*:\s*\d+%\|[^|]*\|\s*$")


def read_trainer_state(
    data: dict[str, Any],
) -> tuple[dict[str, Any], list[tuple[int, dict[str, float | None]]], dict[str, float] | None]:
    """(run info, rows by step, train-end summary) from a parsed `trainer_state.json`."""
    info: dict[str, Any] = {"source": "trainer_state"}
    for src, dst in (
        ("max_steps", "planned_steps"),
        ("logging_steps", "logging_steps"),
        ("train_batch_size", "train_batch_size"),
    ):
        if isinstance(data.get(src), (int, float)) and data[src] > 0:
            info[dst] = int(data[src])
    rows: list[tuple[int, dict[str, float | None]]] = []
    end: dict[str, float] | None = None
    for entry in data.get("log_history") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), (int, float)):
            continue
        line = DictLine()
        for key, raw in entry.items():
            if key == "step":
                continue
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                _assign(line, str(key), float(raw))
            elif isinstance(raw, str):
                try:
                    value = to_float(raw)
                except NotANumber:
                    continue
                _assign(line, str(key), value)
        _drop_repeated_epoch(line)
        if line.end is not None:
            end = line.end
        if line.metrics:
            rows.append((int(entry["step"]), line.metrics))
    return info, rows, end


STEP_NOTE = (
    "Trainer dict lines without a progress bar: steps are logging-line numbers, not optimizer steps (pass "
    "--logging-steps)"
)


_NUM = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|NaN|inf|Inf|Infinity)"
VALUE = f"['\"]?({_NUM})['\"]?"  # one value of a dict line, its number captured (`Layout.regex`)
MAX_LAYOUTS = 8


class Layout:
    """The key order of a dict line seen before, as one regex over plain numbers: the next line with the same
    keys is read in one match (any other shape takes the general scan)."""

    __slots__ = ("end", "metrics", "names", "regex")

    def __init__(self, text: str, pairs: list[tuple[str, str]]) -> None:
        quote = text[1]
        self.regex = re.compile(
            r"\{" + ", ".join(f"{quote}{re.escape(k)}{quote}: {VALUE}" for k, _ in pairs) + r"\}"
        )
        line = DictLine()
        for i, (key, _) in enumerate(pairs):
            _assign(line, key, float(i))  # where each key goes, by its position
        _drop_repeated_epoch(line)  # the end-of-training and evaluation lines' `epoch`: not a logging step
        self.metrics = [(name, int(i)) for name, i in line.metrics.items() if i is not None]
        self.end = [(key, int(i)) for key, i in (line.end or {}).items()]
        in_order = [i for _, i in self.metrics] == list(range(len(pairs)))  # the common line: all metrics
        self.names = [n for n, _ in self.metrics] if in_order else None

    def read(self, text: str) -> DictLine | None:
        m = self.regex.fullmatch(text)
        if m is None:
            return None
        out = DictLine()
        if self.names is not None and not self.end:
            out.metrics = dict(zip(self.names, map(float, m.groups()), strict=True))
            return out
        values = [float(v) for v in m.groups()]
        out.metrics = {name: values[i] for name, i in self.metrics}
        out.end = {key: values[i] for key, i in self.end} if self.end else None
        return out


class HfParser:
    """Trainer dict lines and the training bar; the bar's total is the planned steps."""

    def __init__(self, sink: LogSink, logging_steps: int | None = None) -> None:
        self.sink = sink
        self.logging_steps = logging_steps
        self.bar_total: int | None = None
        self.bar_n: int | None = None
        self.dict_lines = 0
        self.last_step: int | None = None
        self.layouts: list[Layout] = []
        self.recent: Layout | None = None  # the layout of the last dict line read through one (HfRuns)

    def _parse(self, text: str) -> DictLine | None:
        for layout in self.layouts:
            parsed = layout.read(text)
            if parsed is not None:
                if layout.metrics:  # a logging step's layout (an evaluation's line between two leaves it)
                    self.recent = layout
                return parsed
        parsed = parse_dict_line(text)
        if parsed is not None and len(self.layouts) < MAX_LAYOUTS and text[:2] in ("{'", '{"'):
            pairs = _scan_pairs(text.strip()[1:])
            if pairs:
                layout = Layout(text.strip(), pairs)
                again = layout.read(text.strip())
                if again is not None and again.metrics == parsed.metrics and again.end == parsed.end:
                    self.layouts.append(layout)  # it reads this line exactly as the general scan did
                    if layout.metrics:
                        self.recent = layout
        return parsed

    def dict_line(self, text: str) -> bool:
        """A Trainer dict (text starts at `{`): metrics at its step, or the train_runtime end line."""
        parsed = self._parse(text)
        if parsed is None:
            return False
        sink = self.sink
        sink.formats.add("hf-trainer")
        sink.settle()
        if parsed.metrics:
            self.dict_lines += 1
            step = self.step()
            sink.at(step)
            self.last_step = step
            if None in parsed.metrics.values():
                sink.put_many({k: float("nan") if v is None else v for k, v in parsed.metrics.items()})
            else:
                sink.put_many(parsed.metrics)
        if parsed.end is not None:
            sink.event(ev.event_record(sink.step, ev.EVENT_TRAIN_END, "training finished", parsed.end))
        return True

    def step(self) -> int:
        """The step of the dict line being read (see the module docstring)."""
        every, last, ours = self.logging_steps, self.last_step, self.sink.announced
        if ours is not None and (last is None or ours > last):
            return ours  # our runtime layer printed `[fgdiag] step N` just before the Trainer's dict line
        if self.bar_n is not None and (last is None or self.bar_n > last):
            n = self.bar_n
            if every and n % every and (n + 1) % every == 0:
                n += 1  # the bar was drawn just before the step it logs
            return n
        if every:
            return (last or 0) + every if last is not None else self.dict_lines * every
        if STEP_NOTE not in self.sink.notes:
            self.sink.notes.append(STEP_NOTE)
        return (last or 0) + 1

    def bar(self, n: int, total: int) -> None:
        """A training bar at n/total moves the current step (labelled bars are filtered by `last_bar`)."""
        sink = self.sink
        if self.bar_total is None and total > 1:
            self.bar_total = total
            sink.run_info.setdefault("planned_steps", total)
            sink.formats.add("tqdm")
        if total == self.bar_total:
            self.bar_n = n
            if n > sink.step:
                sink.at(n)

    def bars(self, line: str) -> bool:
        """A line of `\r`-separated redraws of the training bar (tqdm to a file): False when any part is not
        a plain bar, so the general path reads it. Redraws of one bar moving forward leave the first (which
        sets the planned steps) and the last to read."""
        if BARS_LINE_RE.fullmatch(line) is None:
            return False
        found = BAR_NUMBERS_RE.findall(line)
        if not found:
            return False
        ns = [int(n) for n, _total in found]
        if len({total for _n, total in found}) != 1 or ns != sorted(ns):
            return False
        total = int(found[0][1])
        self.bar(ns[0], total)
        if len(ns) > 1:
            self.bar(ns[-1], total)
        return True
