"""Diagnostic power of `fgdiag watch` on the labelled log corpus (tests/corpus): does it find what an expert
finds in each log, and nothing a healthy log does not have?

    python benchmarks/diag_power.py [--corpus tests/corpus] [--json] [--strict] [--only NAME ...]

Runs `fgdiag watch FILE --once --json [label args]` as a subprocess for every labelled file (the `fgdiag` on
PATH, else `python -m fgdiag.cli.app`) and prints, as Markdown: recall per code (fired / expected; an
`expect_any` group counts once, under "A/B"), error-level findings on logs labelled healthy or warnings,
forbidden codes that fired, verdict, exit-code and recovery accuracy, and a table of the files that miss their
label. Exit 0 always, unless `--strict` (then 1 when any label is violated, 2 when the corpus itself is
malformed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corpus.labels import Entry, load  # noqa: E402


@dataclass
class Outcome:
    """What the tool said about one file, and how that compares with its label."""

    name: str
    exit_code: int
    verdict: str | None
    fired: list[str]
    errors: list[str]  # codes of error-level findings
    recovered: bool
    seconds: float
    missing: list[str] = field(default_factory=list)  # expected codes (or "A/B" groups) that did not fire
    forbidden: list[str] = field(default_factory=list)
    false_errors: list[str] = field(default_factory=list)
    verdict_ok: bool | None = None
    exit_ok: bool = True
    recovered_ok: bool | None = None
    note: str = ""

    @property
    def violations(self) -> bool:
        return bool(
            self.missing
            or self.forbidden
            or self.false_errors
            or self.verdict_ok is False
            or not self.exit_ok
            or self.recovered_ok is False
        )


def fgdiag_command() -> list[str]:
    found = shutil.which("fgdiag")
    return [found] if found else [sys.executable, "-m", "fgdiag.cli.app"]


def run_watch(
    command: list[str], entry: Entry, timeout: float
) -> tuple[int, dict[str, Any] | None, str, float]:
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [*command, "watch", str(entry.log), "--once", "--json", *entry.label.args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return -1, None, f"timed out after {timeout:.0f} s", time.monotonic() - start
    seconds = time.monotonic() - start
    try:
        summary = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        summary = None
    note = (
        "" if summary is not None or proc.returncode == 2 else (proc.stderr.strip().splitlines() or [""])[-1]
    )
    return proc.returncode, summary, note, seconds


def said_recovered(summary: dict[str, Any]) -> bool:
    """A truthy `recovered` field, or a verdict (or verdict detail) that says it recovered."""
    if summary.get("recovered"):
        return True
    words = " ".join(str(summary.get(k, "")) for k in ("verdict", "verdict_detail"))
    return "recovered" in words.lower()


def judge(entry: Entry, rc: int, summary: dict[str, Any] | None, note: str, seconds: float) -> Outcome:
    findings = (summary or {}).get("findings", [])
    fired = sorted({f.get("code", "") for f in findings})
    errors = sorted({f.get("code", "") for f in findings if f.get("severity") == "error"})
    verdict_raw = (summary or {}).get("verdict")
    verdict = str(verdict_raw).split()[0].lower() if verdict_raw else None
    out = Outcome(entry.name, rc, verdict, fired, errors, bool(summary) and said_recovered(summary), seconds)
    out.note = note
    label = entry.label
    out.missing = [c for c in label.expect if c not in fired]
    out.missing += ["/".join(g) for g in label.expect_any if not set(g) & set(fired)]
    out.forbidden = [c for c in label.forbid if c in fired]
    if label.verdict in ("healthy", "warnings"):
        out.false_errors = errors
    if label.verdict is not None:
        out.verdict_ok = verdict == label.verdict
    out.exit_ok = rc == label.exit_code
    if label.recovered is not None:
        out.recovered_ok = out.recovered == label.recovered
    return out


def score(entries: list[Entry], outcomes: list[Outcome]) -> dict[str, Any]:
    """Aggregate figures: recall per code, false errors, forbidden codes, verdict/exit/recovery accuracy."""
    by_name = {o.name: o for o in outcomes}
    recall: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in entries:
        o = by_name[e.name]
        for code in e.label.expect:
            recall[code][1] += 1
            recall[code][0] += code not in o.missing
        for group in e.label.expect_any:
            key = "/".join(group)
            recall[key][1] += 1
            recall[key][0] += key not in o.missing
    judged = [o for o in outcomes if o.verdict_ok is not None]
    rec = [o for o in outcomes if o.recovered_ok is not None]
    expected = sum(t for _, t in recall.values())
    return {
        "files": len(outcomes),
        "recall": {k: {"fired": f, "expected": t} for k, (f, t) in sorted(recall.items())},
        "recall_total": {"fired": sum(f for f, _ in recall.values()), "expected": expected},
        "false_errors": {o.name: o.false_errors for o in outcomes if o.false_errors},
        "forbidden_fired": {o.name: o.forbidden for o in outcomes if o.forbidden},
        "verdict": {"right": sum(o.verdict_ok for o in judged), "total": len(judged)},
        "exit_code": {"right": sum(o.exit_ok for o in outcomes), "total": len(outcomes)},
        "recovered": {"right": sum(bool(o.recovered_ok) for o in rec), "total": len(rec)},
        "files_with_misses": sum(o.violations for o in outcomes),
    }


def pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.0f} %)" if b else "-"


def markdown(entries: list[Entry], outcomes: list[Outcome], s: dict[str, Any]) -> str:
    labels = {e.name: e.label for e in entries}
    lines = [
        f"**Diagnostic power on {s['files']} labelled logs** (`python benchmarks/diag_power.py`)",
        "",
        "| measure | result |",
        "|---|---|",
        f"| recall of expected codes | {pct(s['recall_total']['fired'], s['recall_total']['expected'])} |",
        f"| verdict right | {pct(s['verdict']['right'], s['verdict']['total'])} |",
        f"| exit code right | {pct(s['exit_code']['right'], s['exit_code']['total'])} |",
        f"| crash recovery recognised | {pct(s['recovered']['right'], s['recovered']['total'])} |",
        f"| healthy/warnings logs with error findings | {len(s['false_errors'])} |",
        f"| logs where a forbidden code fired | {len(s['forbidden_fired'])} |",
        f"| files missing their label in any way | {s['files_with_misses']}/{s['files']} |",
        "",
        "| code | fired / expected |",
        "|---|---|",
    ]
    lines += [f"| {code} | {pct(v['fired'], v['expected'])} |" for code, v in s["recall"].items()]
    lines += [
        "",
        "| file | verdict want / got | exit want / got | missing | forbidden fired | false errors |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for o in outcomes:
        if not o.violations:
            continue
        label = labels[o.name]
        want = label.verdict or "-"
        got = o.verdict or ("-" if not o.note else f"- ({o.note[:60]})")
        rec = "" if o.recovered_ok is not False else " (recovery not said)"
        lines.append(
            f"| {o.name} | {want} / {got}{rec} | {label.exit_code} / {o.exit_code} "
            f"| {', '.join(o.missing) or '-'} | {', '.join(o.forbidden) or '-'} "
            f"| {', '.join(o.false_errors) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=ROOT / "tests" / "corpus")
    parser.add_argument("--json", action="store_true", help="print the figures and per-file outcomes as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any label is violated")
    parser.add_argument("--only", nargs="+", default=None, help="score only these corpus names")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per file")
    args = parser.parse_args(argv)
    entries, problems = load(args.corpus)
    for problem in problems:
        print(f"diag_power: {args.corpus}: {problem}", file=sys.stderr)
    if args.only:
        entries = [e for e in entries if e.name in args.only]
    command = fgdiag_command()
    outcomes = [judge(e, *run_watch(command, e, args.timeout)) for e in entries]
    figures = score(entries, outcomes)
    if args.json:
        print(json.dumps({"summary": figures, "files": [asdict(o) for o in outcomes]}, indent=2))
    else:
        print(markdown(entries, outcomes, figures), end="")
    if args.strict and problems:
        return 2
    return 1 if args.strict and figures["files_with_misses"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
