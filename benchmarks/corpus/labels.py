"""The label files of the log corpus (`tests/corpus/NAME.label.toml` beside `NAME.<ext>`): loading and the
schema check shared by `benchmarks/diag_power.py` and `tests/diag/test_corpus_labels.py`.

A label says what an expert reading the log concludes: the verdict, the exit code `fgdiag watch FILE --once
--json` must return, the codes that must fire (`expect`, and `expect_any` groups of which one must fire), the
codes that must not (`forbid`), whether a crash in the log was recovered from, and extra `watch` arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

LABEL_SUFFIX = ".label.toml"
NOT_LOGS = {"README.md", ".gitattributes"}
CODE_RE = re.compile(r"^FGD[1-8]\d\d$")
VERDICTS = ("crashed", "failing", "warnings", "healthy")
EXIT_CODES = (0, 1, 2)
ORIGINS = (
    "ours-run",
    "ours-written",
    "fork-format",
    "hf-trainer",
    "open_clip",
    "pytorch-example",
    "moco",
    "deepspeed",
    "key-value",
    "not-a-log",
)
KEYS = {
    "description",
    "origin",
    "verdict",
    "exit_code",
    "expect",
    "expect_any",
    "forbid",
    "recovered",
    "args",
}
REQUIRED = ("description", "origin", "exit_code")


@dataclass(frozen=True)
class Label:
    description: str
    origin: str
    exit_code: int
    verdict: str | None = None
    expect: tuple[str, ...] = ()
    expect_any: tuple[tuple[str, ...], ...] = ()
    forbid: tuple[str, ...] = ()
    recovered: bool | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entry:
    name: str
    log: Path
    label_path: Path
    label: Label
    problems: tuple[str, ...] = field(default=())


def _codes(raw: Any, key: str, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        problems.append(f"{key}: a list of code strings expected, got {raw!r}")
        return ()
    for code in raw:
        if not CODE_RE.match(code):
            problems.append(f"{key}: {code!r} is not a code like FGD601")
    return tuple(raw)


def check(data: dict[str, Any]) -> tuple[Label | None, list[str]]:
    """The label and the list of problems with it (empty when it is well formed)."""
    problems = [f"unknown key {k!r}" for k in sorted(set(data) - KEYS)]
    problems += [f"missing key {k!r}" for k in REQUIRED if k not in data]
    if problems:
        return None, problems
    if not isinstance(data["description"], str) or not data["description"].strip():
        problems.append("description: a non-empty string expected")
    if data["origin"] not in ORIGINS:
        problems.append(f"origin: {data['origin']!r} is not one of {', '.join(ORIGINS)}")
    exit_code = data["exit_code"]
    if isinstance(exit_code, bool) or exit_code not in EXIT_CODES:
        problems.append(f"exit_code: {exit_code!r} is not 0, 1 or 2")
    verdict = data.get("verdict")
    if exit_code == 2 and verdict is not None:
        problems.append("verdict: omit it when exit_code = 2 (no verdict for unreadable input)")
    if exit_code != 2 and verdict not in VERDICTS:
        problems.append(f"verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    expect = _codes(data.get("expect", []), "expect", problems)
    forbid = _codes(data.get("forbid", []), "forbid", problems)
    groups_raw = data.get("expect_any", [])
    groups: list[tuple[str, ...]] = []
    if not isinstance(groups_raw, list):
        problems.append("expect_any: a list of lists of codes expected")
    else:
        for i, group in enumerate(groups_raw):
            codes = _codes(group, f"expect_any[{i}]", problems)
            if len(codes) < 2:
                problems.append(f"expect_any[{i}]: a group needs two or more codes (else use expect)")
            groups.append(codes)
    both = set(expect) & set(forbid) | {c for g in groups for c in g} & set(forbid)
    if both:
        problems.append(f"expected and forbidden at once: {', '.join(sorted(both))}")
    recovered = data.get("recovered")
    if recovered is not None and not isinstance(recovered, bool):
        problems.append("recovered: true or false expected")
    args = data.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        problems.append("args: a list of strings expected")
        args = []
    problems += _consistency(verdict, exit_code, expect, groups)
    label = Label(
        data["description"],
        data["origin"],
        exit_code,
        verdict,
        expect,
        tuple(groups),
        forbid,
        recovered,
        tuple(args),
    )
    return label, problems


def _consistency(verdict: Any, exit_code: Any, expect: tuple, groups: list) -> list[str]:
    """A verdict and an exit code that contradict each other, or codes expected from a healthy log."""
    wanted = {"crashed": 1, "failing": 1, "warnings": 0, "healthy": 0}
    problems = []
    if verdict in wanted and exit_code != wanted[verdict]:
        problems.append(f"verdict {verdict!r} goes with exit_code {wanted[verdict]}, not {exit_code!r}")
    if verdict == "healthy" and (expect or groups):
        problems.append("a healthy log expects no code")
    if exit_code == 2 and (expect or groups):
        problems.append("unreadable input (exit_code 2) expects no code")
    return problems


def load(corpus: Path) -> tuple[list[Entry], list[str]]:
    """Every labelled log of the folder, and the folder's problems (a log without a label, a label without
    exactly one log)."""
    problems: list[str] = []
    entries = []
    files = sorted(p for p in corpus.iterdir() if p.is_file() and p.name not in NOT_LOGS)
    labels = [p for p in files if p.name.endswith(LABEL_SUFFIX)]
    logs = [p for p in files if not p.name.endswith(LABEL_SUFFIX)]
    claimed: set[Path] = set()
    for label_path in labels:
        name = label_path.name[: -len(LABEL_SUFFIX)]
        matches = [p for p in logs if p.name.startswith(name + ".") and "." not in p.name[len(name) + 1 :]]
        if len(matches) != 1:
            problems.append(f"{label_path.name}: {len(matches)} logs named {name}.<ext> (one expected)")
            continue
        claimed.add(matches[0])
        try:
            data = tomllib.loads(label_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.append(f"{label_path.name}: not valid TOML: {exc}")
            continue
        label, label_problems = check(data)
        if label is None:
            problems += [f"{label_path.name}: {p}" for p in label_problems]
            continue
        entries.append(Entry(name, matches[0], label_path, label, tuple(label_problems)))
        problems += [f"{label_path.name}: {p}" for p in label_problems]
    problems += [
        f"{p.name}: no label file {p.name.rsplit('.', 1)[0]}{LABEL_SUFFIX}" for p in logs if p not in claimed
    ]
    return entries, problems
