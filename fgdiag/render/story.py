"""The report's first paragraph: which run failed, why (the findings in words, with the measured values),
and what the runs showed (region loss against chance ln K, the targets met and missed).

Sentences are built from measurements (`measures`), never from the settings alone, and say what happened
honestly: a failing arm that still learns, only slower, is called slower, not stuck.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fgdiag import events as ev
from fgdiag.render import measures as M

FAILED = ("failing", "crashed")


VERDICT_WORDS = {
    "healthy": "passed",
    "warnings": "passed, with warnings",
    "failing": "failed",
    "crashed": "crashed",
    "empty": "nothing read",
}


@dataclass
class Why:
    """Why one run failed: the reasons, each a clause with its measured values and rule code."""

    run: str
    subject: str  # "the seed arm"
    reasons: list[str]

    @property
    def sentence(self) -> str:
        return f"In {self.subject}, " + "; ".join(self.reasons) + "."


@dataclass
class Story:
    headline: str
    verdicts: list[tuple[str, str, str]]  # (run, verdict word, detail)
    why: list[Why] = field(default_factory=list)
    showed: list[str] = field(default_factory=list)

    def badges(self) -> list[tuple[str, str, str]]:
        """(run, css class = verdict word, text in words) for the page's badges."""
        return [(n, w, f"{n}: {VERDICT_WORDS.get(w, w)}") for n, w, _d in self.verdicts]


def _subject(name: str, names: list[str]) -> str:
    if len(names) == 1:
        return "this run"
    return f"the {name} arm" if set(names) <= {"fixed", "seed"} else name


def _tag(read: Any, code: str) -> str:
    return f" ({code})" if any(f.code == code for f in read.findings) else ""


def _scale_sentence(read: Any) -> str | None:
    region, glob = M.scale_exp(read, "region", "end"), M.scale_exp(read, "global", "end")
    if region is None or glob is None or region >= glob / 2:
        return None
    start = M.scale_exp(read, "region", "start") or region
    hard = M.scale_exp(read, "hardneg", "end")
    same = hard is not None and abs(hard - region) < 0.01 * region
    heads = "region and hard-negative heads'" if same else "region head's"
    still = abs(start - region) < 0.005 * region
    move = f"stays at {region:.1f}" if still else f"moves from {start:.1f} to {region:.1f}"
    end = M.last_step(read)
    lo = M.at(read, ev.head_metric(ev.LOGITS_MIN, "region"), end)
    hi = M.at(read, ev.head_metric(ev.LOGITS_MAX, "region"), end)
    span = f": its region logits span only {lo:.1f} .. {hi:.1f}" if lo is not None and hi is not None else ""
    return (
        f"the {heads} logit scale {move} (temperature 1/{region:.1f} = {1 / region:.3f}) while the global "
        f"head runs at {glob:.0f} (temperature {1 / glob:.3f}){span}{_tag(read, 'FGD101')}"
    )


def _bank_sentence(read: Any, reference: Any) -> str | None:
    if not M.has_bank(read):
        return None
    on = M.bank_on(read)
    if on is not None:
        late = next((f for f in read.findings if f.code == "FGD201" and f.severity.value == "error"), None)
        if late is None:
            return None
        return f"the memory bank switched on only at step {on}: {late.message} (FGD201)"
    warmup, planned = read.run_info.get("memory_bank_warmup_steps"), read.run_info.get("planned_steps")
    plan = f" (warm-up {warmup:g} optimizer steps, the run planned {planned})" if warmup and planned else ""
    k = M.at(read, M.REGION_K, M.last_step(read))
    ref_k = M.at(reference, M.REGION_K, M.last_step(reference)) if reference is not None else None
    versus = f", against {ref_k:.0f} with the bank on" if ref_k is not None and k is not None else ""
    kk = f": each region query saw K = {k:.0f} candidates{versus}" if k is not None else ""
    return f"the memory bank never switched on{plan}{kk}{_tag(read, 'FGD201')}"


def _targets_sentence(read: Any) -> str | None:
    rows = [r for r in M.target_rows(read) if r.status in ("passed", "missed")]
    missed = [r for r in rows if r.status == "missed" and r.value is not None]
    if not missed:
        return None
    shown = ", ".join(f"{r.condition} ({r.value:.3f})" for r in missed)
    metric = missed[0].metric
    return (
        f"it missed {len(missed)} of {len(rows)} judged targets: {metric} {shown}, each value the {metric} "
        f"smoothed over the steps before the point{_tag(read, 'FGD604')}"
    )


def _temperature_sentence(read: Any) -> str | None:
    """FGD104 from the run's own statistics: what its cosines would give at the clamp scale."""
    evidence: list[tuple[int, dict[str, Any]]] = []  # (step, one head's numbers); shared findings list heads
    for f in read.findings:
        if f.code == "FGD104":
            per_head = f.evidence.get("per_head") or [f.evidence]
            evidence += [(f.step or 0, e) for e in per_head if isinstance(e, dict)]
    if not evidence:
        return None
    evidence.sort(key=lambda item: (item[0], item[1].get("head") != "region"))
    step, e = evidence[0]
    loss, at_max = e.get("loss"), e.get("at_max")
    if not isinstance(loss, (int, float)) or not isinstance(at_max, (int, float)):
        return None
    return (
        f"from step {step} its {e.get('head', 'region')} loss ({loss:.2f}) stays far above the "
        f"{at_max:.2f} its own cosines give at the clamp scale: the temperature, not the features, limits "
        "learning (FGD104)"
    )


def _other_errors(read: Any, explained: set[str]) -> list[str]:
    seen: dict[str, str] = {}
    for f in read.findings:
        if f.severity.value == "error" and f.code not in explained and f.code not in seen:
            seen[f.code] = f"{f.message.split('; ')[0]} ({f.code})"
    return list(seen.values())


def _why(name: str, read: Any, names: list[str], reference: Any) -> Why:
    word, detail = M.verdict(read)
    parts = []
    if word == "crashed":
        crash: Mapping[str, Any] = next(
            (e for e in read.events if e.get("kind") in (ev.EVENT_CRASH, ev.EVENT_OOM)), {}
        )
        parts.append(f"it crashed at step {crash.get('step')}: {str(crash.get('message', ''))[:160]}")
    measured = {
        "FGD101": _scale_sentence(read),
        "FGD201": _bank_sentence(read, reference),
        "FGD604": _targets_sentence(read),
        "FGD104": _temperature_sentence(read),
    }
    parts += [s for s in measured.values() if s]
    parts += _other_errors(read, {code for code, s in measured.items() if s})
    if not parts:
        parts = [detail or "error findings (see its findings table)"]
    return Why(name, _subject(name, names), parts)


def _end_phrase(name: str, read: Any, names: list[str]) -> str | None:
    end = M.last_step(read)
    loss, chance = M.at(read, M.REGION_LOSS, end), M.at(read, M.REGION_CHANCE, end)
    if loss is None:
        return None
    vs = f" ({100 * loss / chance:.0f} % of chance ln K = {chance:.2f})" if chance else ""
    return f"{loss:.3f} in {_subject(name, names)}{vs}"


def _learning(name: str, read: Any, reference: Any, ref_name: str | None, names: list[str]) -> str | None:
    """Honest about a failing run: at chance, or learning but slower than the reference."""
    end = M.last_step(read)
    loss, chance = M.at(read, M.REGION_LOSS, end), M.at(read, M.REGION_CHANCE, end)
    if loss is None or not chance:
        return None
    subject = _subject(name, names).capitalize()
    if loss / chance >= 0.9:
        return f"{subject} stays at chance level: its region loss ends within 10 % of ln K."
    if reference is None or ref_name is None or end is None:
        return None
    steps = M.checkpoint_steps({name: read, ref_name: reference}) or [end]
    pairs: list[tuple[int, float, float]] = []
    for s in steps:
        a, b = M.at(read, M.REGION_LOSS, s), M.at(reference, M.REGION_LOSS, s)
        if a is not None and b is not None:
            pairs.append((s, a, b))
    if pairs and all(a > b for _s, a, b in pairs):
        s, a, b = pairs[0]
        return (
            f"{subject} still learns (its loss is well below chance) but slower: its region loss is above "
            f"{_subject(ref_name, names)}'s at every checkpoint ({a:.3f} vs {b:.3f} at step {s})."
        )
    return None


def _targets_summary(reads: Mapping[str, Any], names: list[str]) -> str | None:
    parts, profile, beyond = [], None, set()
    for name, read in reads.items():
        rows = M.target_rows(read)
        if not rows:
            continue
        profile = profile or read.targets.name
        met = sum(r.status == "passed" for r in rows)
        missed = sum(r.status == "missed" for r in rows)
        judged = met + missed
        subject = _subject(name, names)
        if not judged:
            parts.append(f"{subject} reached none of its points")
        elif not missed:
            parts.append(f"{subject} met {'all ' if judged > 1 else ''}{judged} judged")
        elif not met:
            parts.append(f"{subject} missed {'all ' if judged > 1 else ''}{judged} judged")
        else:
            parts.append(f"{subject} met {met} and missed {missed} of {judged} judged")
        pending = sum(r.status == "pending" for r in rows)
        if pending:
            beyond.add((pending, M.last_step(read)))
    if not parts:
        return None
    text = f"Targets ({profile} profile): " + "; ".join(parts)
    if len(beyond) == 1:
        pending, step = beyond.pop()
        more = "more " if any("judged" in p for p in parts) else ""
        text += f"; {pending} {more}lie beyond step {step}, where the run{'s' * (len(parts) > 1)} ended"
    return text + "."


def build_story(reads: Mapping[str, Any]) -> Story:
    """The first paragraph of a report over one or several runs."""
    names = list(reads)
    verdicts = [(n, *M.verdict(r)) for n, r in reads.items()]
    failed = [n for n, word, _d in verdicts if word in FAILED]
    passed = [n for n, word, _d in verdicts if word not in FAILED and word != "empty"]
    if len(names) == 1:
        headline = f"This run is {verdicts[0][1]}."
    elif failed and passed:
        headline = (
            " and ".join(_subject(n, names) for n in failed).capitalize()
            + " failed; "
            + " and ".join(_subject(n, names) for n in passed)
            + " passed."
        )
    elif failed:
        headline = "All runs failed."
    else:
        headline = "No run failed."
    reference_name = passed[0] if passed else None
    reference = reads[reference_name] if reference_name else None
    story = Story(headline, verdicts)
    story.why = [_why(n, reads[n], names, reference) for n in failed]
    ends = [p for n in names if (p := _end_phrase(n, reads[n], names))]
    if ends:
        steps = {M.last_step(r) for r in reads.values()}
        when = f"At step {steps.pop()}" if len(steps) == 1 else "At the end"
        story.showed.append(f"{when} the region loss is " + " and ".join(ends) + ".")
    story.showed += [s for n in failed if (s := _learning(n, reads[n], reference, reference_name, names))]
    if summary := _targets_summary(reads, names):
        story.showed.append(summary)
    for n in passed:
        warnings = sorted({f.code for f in reads[n].findings if f.severity.value == "warning"})
        if warnings:
            story.showed.append(
                f"{_subject(n, names).capitalize()} passes with warnings: {', '.join(warnings)} (below)."
            )
    return story
