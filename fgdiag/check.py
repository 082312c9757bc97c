"""`check_paths`: the whole static check as one library call, shared by `fgdiag check-config` and
`fgdiag run`;
and `compare_checkpoint`, the resume guard's question (is this checkpoint stale against that configuration?).

Flow: read every input (fgdiag.static.inputs) -> resolve the effective settings of the planned run
(fgdiag.static.settings) -> plan it (fgdiag.facts.plan) -> run every registered static check over those facts
-> filter by --select/--ignore. Input problems raise `InputError` (exit 2); findings never do.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fgdiag.diagnostic import Finding, Severity, exit_code
from fgdiag.facts.checkpoint import CheckpointInfo
from fgdiag.facts.clip_keys import normalise_keys
from fgdiag.facts.plan import Plan, make_plan
from fgdiag.facts.run import RunFacts
from fgdiag.facts.settings import Settings
from fgdiag.facts.values import InputError, as_int
from fgdiag.rules import registry
from fgdiag.rules.weights import stale_differences, stale_finding
from fgdiag.static.checkpoints import read_checkpoint
from fgdiag.static.data_source import count_records, run_audit
from fgdiag.static.inputs import Inputs, load_inputs, pretrained_source, resolve_near
from fgdiag.static.settings import resolve


def validate_codes(prefixes: Iterable[str] | None) -> list[str]:
    """Split comma lists; every prefix must start at least one known code (ValueError otherwise)."""
    known = registry.load_all()
    out = []
    for item in prefixes or []:
        for prefix in item.split(","):
            prefix = prefix.strip().upper()
            if not prefix:
                continue
            if not any(code.startswith(prefix) for code in known):
                raise ValueError(f"unknown rule code or prefix {prefix!r} (see `fgdiag explain`)")
            out.append(prefix)
    return out


def _data(inputs: Inputs, settings: Settings | None, notes: list[str]) -> tuple[Path | None, bool]:
    """The data set to size and audit, and whether the user named it on the command line."""
    if inputs.data:
        if len(inputs.data) > 1:
            notes.append(f"{len(inputs.data)} data sets given; sized and audited the first")
        return inputs.data[0], True
    field = settings.values.get("data_path") if settings else None
    if field is None or not isinstance(field.value, str) or "$" in field.value:
        return None, False
    bases = (
        [Path(field.path).parent, Path(field.path).parent.parent, Path.cwd()] if field.path else [Path.cwd()]
    )
    found = resolve_near(field.value, bases)
    if found is None:
        notes.append(
            f"{field.location}: {field.value} is not readable here; data size from num_train_samples, data "
            "audit skipped"
        )
    return found, False


def _data_size(
    path: Path | None,
    explicit: bool,
    report: dict[str, Any] | None,
    settings: Settings | None,
    notes: list[str],
) -> int | None:
    if report is not None and isinstance(report.get("records"), int):
        return report["records"]
    if path is not None:
        try:
            return count_records(path)
        except InputError:
            if explicit:
                raise
            notes.append(f"{path}: not a readable data set; data size from num_train_samples")
    samples = settings.fields.get("num_train_samples") if settings else None
    return as_int(samples) if samples is not None else None


def _summary(
    findings: list[Finding], inputs: Inputs, settings: Settings | None, plan: Plan | None, notes: list[str]
) -> dict[str, Any]:
    counts = {
        sev.value: sum(1 for f in findings if f.severity is sev)
        for sev in (Severity.ERROR, Severity.WARNING, Severity.INFO)
    }
    return {
        "errors": counts["error"],
        "warnings": counts["warning"],
        "infos": counts["info"],
        "exit_code": exit_code(findings),
        "inputs": inputs.listed,
        "dialect": settings.dialect if settings else None,
        "plan": plan.to_dict() if plan else None,
        "checkpoints": checkpoint_rows(inputs.checkpoints),
        "models": checkpoint_rows(inputs.models),
        "notes": notes,
        "quarantine": None,
    }


def check_paths(
    paths: Iterable[str | Path],
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    *,
    max_invalid_ratio: float = 0.05,
) -> tuple[list[Finding], dict[str, Any]]:
    """Judge configs, scripts, model/output directories, checkpoints and data sets together.

    Returns (findings sorted by location then code, summary dict; see the CLI docs for its keys).
    Raises InputError for a missing, unreadable or unsafe input, ValueError for an unknown code prefix.
    """
    selected, ignored = validate_codes(select), validate_codes(ignore)
    inputs = load_inputs([Path(p) for p in paths])
    notes = list(inputs.notes)
    if inputs.script is not None:
        notes += inputs.script.notes + [
            f"{inputs.script.path}: unresolved {u}" for u in inputs.script.unresolved
        ]
    source, inferred = pretrained_source(inputs)
    settings = plan = None
    if inputs.has_config:
        if inferred:
            notes.append(inferred)
        settings = resolve(
            inputs.values,
            anchor=inputs.anchor,
            entry=inputs.script.entry if inputs.script else "",
            source_info=source,
            deepspeed=inputs.deepspeed,
        )
        notes += settings.notes
    data_path, explicit = _data(inputs, settings, notes)
    report = None
    if data_path is not None:
        try:
            report, skipped = run_audit(data_path)
        except InputError as exc:
            if explicit:
                raise
            report, skipped = None, f"{exc}; FGD301/FGD302 skipped"
        if skipped:
            notes.append(skipped)
    data_size = _data_size(data_path, explicit, report, settings, notes)
    if settings is not None:
        plan = make_plan(settings, data_size)
    regions = next(
        (report[k] for k in ("regions", "boxes") if report and isinstance(report.get(k), int)),
        plan.data_size * settings.boxes_per_sample if plan and plan.data_size and settings else None,
    )
    facts = RunFacts(
        settings=settings,
        plan=plan,
        data_report=report if data_path is not None else None,
        data_location=str(data_path) if data_path is not None else "",
        regions_in_data=regions,
        max_invalid_ratio=max_invalid_ratio,
        checkpoints=inputs.checkpoints,
        models=inputs.models,
        deepspeed=settings.deepspeed if settings is not None else inputs.deepspeed,
        notes=notes,
    )
    findings: list[Finding] = []
    for check in registry.checks("static"):
        findings += check(facts)
    findings = registry.select(findings, selected, ignored)
    findings.sort(key=lambda f: (f.location, f.code, f.message))
    return findings, _summary(findings, inputs, settings, plan, list(dict.fromkeys(notes)))


def compare_checkpoint(checkpoint_dir: str | Path, expected: dict[str, Any]) -> list[Finding]:
    """FGD401 findings for a checkpoint that does not match `expected` (empty list when it does).

    `expected` keys, each optional (only given keys are compared):
        logit_scale, logit_scale_finegrained, logit_scale_hardneg: intended raw (log-space) values; compared
            at the saved tensor's precision (bf16 holds 4.6052 as 4.59375) with tolerance 1e-3;
        scale_drift_per_step: extra tolerance per optimizer step of the checkpoint (Adam moves a parameter by
            about its learning rate per step, so pass the scales' learning rate);
        memory_bank_size: queue length K (0: no bank); memory_bank_warmup_steps: in optimizer steps;
        source: a label for the message (e.g. the config file).
    A checkpoint whose region/hard-negative scale sits at CLIP's from-scratch 2.6592 while its global scale is
    ln 100 is always stale: resuming from it brings the seed's bug back whatever the configuration says.
    Raises InputError when the checkpoint cannot be read safely.
    """
    info = read_checkpoint(Path(checkpoint_dir))
    diffs = stale_differences(info, expected)
    return [stale_finding(info, diffs, str(expected.get("source", "")))] if diffs else []


def checkpoint_rows(infos: list[CheckpointInfo]) -> list[dict[str, Any]]:
    """One summary row per checkpoint / model (JSON-ready)."""
    rows = []
    for info in infos:
        names = normalise_keys(list(info.weights.shapes))
        rows.append(
            {
                "path": str(info.path),
                "step": info.step,
                "naming": info.naming,
                "logit_scale": {h: info.scales[h].value for h in info.scales},
                "memory_bank_size": info.memory_bank_size,
                "memory_bank_warmup_steps": info.memory_bank_warmup_steps,
                "training_steps": info.forward_passes,
                "tensors": len(names),
            }
        )
    return rows
