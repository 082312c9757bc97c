"""Rules over saved weights: stale checkpoints (FGD401), non-finite tensors (FGD402), parameters a pretrained
source leaves newly initialised (FGD403), the fork's forward-pass counter (FGD202) and a source that carries
the head-scale bug (FGD101).

They read `CheckpointInfo` objects (fgdiag.checkpoints), compare them with the resolved `Settings` when a
configuration was given, and never load a model.
"""

from __future__ import annotations

from typing import Any

from fgdiag.checkpoints import CheckpointInfo, is_clip_init, is_ln100, stale_differences, stale_finding
from fgdiag.diagnostic import Finding
from fgdiag.rules import registry
from fgdiag.static.clip_keys import expected_new_patterns, missing_and_mismatched, normalise_keys
from fgdiag.static.settings import Settings
from fgdiag.static.values import as_float, as_int

SHOWN = 5


def expected_from_settings(s: Settings) -> dict[str, Any]:
    """What a checkpoint of this configuration should hold (the `expected` of compare_checkpoint)."""
    expected: dict[str, Any] = {"source": s.anchor}
    for head, field in s.heads.items():
        value = as_float(field)
        if value is not None:
            expected[head] = value
    if s.bank_size is not None:
        expected["memory_bank_size"] = as_int(s.bank_size) or 0
    elif s.dialect == "upstream":
        expected["memory_bank_size"] = 0
    if s.warmup is not None and s.warmup_unit == "optimizer" and expected.get("memory_bank_size"):
        expected["memory_bank_warmup_steps"] = as_int(s.warmup)
    scale_lr = s.fields.get("logit_scale_learning_rate") or s.fields["learning_rate"]
    expected["scale_drift_per_step"] = as_float(scale_lr) or 0.0  # Adam moves a scale by ~lr per step
    return expected


def stale_rules(checkpoints: list[CheckpointInfo], expected: dict[str, Any]) -> list[Finding]:
    """FGD401 per checkpoint that differs from the configuration or carries the head-scale bug."""
    out = []
    for info in checkpoints:
        diffs = stale_differences(info, expected)
        if diffs:
            out.append(stale_finding(info, diffs, str(expected.get("source", ""))))
    return out


def nonfinite_rules(infos: list[CheckpointInfo]) -> list[Finding]:
    """FGD402 per weight file holding NaN or Inf."""
    out = []
    for info in infos:
        for file, names in info.weights.nonfinite().items():
            shown = ", ".join(names[:SHOWN]) + (
                f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
            )
            out.append(
                registry.get("FGD402").finding(
                    f"{len(names)} tensor(s) hold NaN or Inf: {shown}",
                    location=str(file),
                    evidence={"tensors": names},
                )
            )
    return out


def _matches(key: str, patterns: list[str]) -> bool:
    return any(key == p or (p.endswith("*") and key.startswith(p[:-1])) for p in patterns)


def new_parameter_rules(infos: list[CheckpointInfo], s: Settings | None, notes: list[str]) -> list[Finding]:
    """FGD403: CLIP tensors a model directory lacks (or saves with the wrong shape) beyond the expected new heads."""
    rule = registry.get("FGD403")
    values = s.values if s is not None else None
    patterns = expected_new_patterns(
        values.text("region_head") or "shared" if values else "shared",
        values.text("temporal_pooling") or "mean" if values else "mean",
        (as_int(s.bank_size) or 0) if s is not None and s.bank_size is not None else 0,
    )
    out = []
    for info in infos:
        if info.config is None:
            notes.append(
                f"{info.path}: no config.json, so the expected key set is unknown: FGD403 not checked"
            )
            continue
        if all(f.name.startswith("adapter_model") for f in info.weights.files):
            notes.append(f"{info.path}: a LoRA adapter holds no base weights: FGD403 not checked")
            continue
        # target = CLIP keys of this config.json + our new heads; the new heads may be missing, nothing else
        missing, mismatched = missing_and_mismatched(info.config, info.weights.shapes)
        saved = normalise_keys(list(info.weights.shapes))
        expected_new = [p for p in patterns if not any(_matches(k, [p]) for k in saved)]
        unexpected = [k for k in missing if not _matches(k, patterns)]
        if unexpected or mismatched:
            parts = []
            if unexpected:
                parts.append(
                    f"{len(unexpected)} CLIP tensor(s) missing, so newly initialised: "
                    + ", ".join(unexpected[:SHOWN])
                    + (" ..." if len(unexpected) > SHOWN else "")
                )
            if mismatched:
                parts.append(
                    f"{len(mismatched)} with a shape other than config.json implies: "
                    + ", ".join(f"{k} {list(got)} != {list(want)}" for k, got, want in mismatched[:SHOWN])
                )
            parts.append("expected new: " + (", ".join(expected_new) or "none"))
            out.append(
                rule.finding(
                    "; ".join(parts),
                    location=str(info.path),
                    evidence={
                        "missing": unexpected,
                        "mismatched": [m[0] for m in mismatched],
                        "expected_new": expected_new,
                    },
                )
            )
    if s is not None and s.dialect == "fork" and s.source_info is None and s.source is not None:
        from_openai = s.values.flag("from_openai")
        if from_openai:
            out.append(
                rule.finding(
                    f"model_name_or_path {s.source.value!r} with --from_openai goes through the fork's "
                    "load_openai_clip_weights, which skips in_proj_* (q/k/v stay random in all 24 layers) and ln_final "
                    "and copies text_projection untransposed (its log: 'Copied 127 vision / 122 text weights')",
                    location=s.source.location,
                )
            )
    return out


def counter_rules(checkpoints: list[CheckpointInfo], s: Settings | None) -> list[Finding]:
    """FGD202 for the fork's `training_steps` buffer: a warm-up counter in forward passes (latest checkpoint)."""
    counted = [c for c in checkpoints if c.forward_passes is not None]
    if not counted:
        return []
    latest = counted[-1]
    passes, step = latest.forward_passes or 0, latest.step
    accum = as_int(s.fields["gradient_accumulation_steps"]) if s is not None else None
    if step:
        ratio = passes / step
        per = f"{passes} forward passes at optimizer step {step} ({ratio:g} per step)"
    else:
        ratio = float(accum or 0)
        per = f"{passes} forward passes"
    warm = ""
    if ratio:
        warm = f"; the fork's warm-up of 200 forward passes is optimizer step {200 / ratio:g}"
    return [
        registry.get("FGD202").finding(
            f"{latest.path.name} counts the bank warm-up in forward passes (training_steps buffer): {per}{warm}",
            location=str(latest.path),
            evidence={"training_steps": passes, "step": step},
        )
    ]


def source_scale_rules(models: list[CheckpointInfo]) -> list[Finding]:
    """FGD101 for a model directory whose own head scale sits at CLIP's init while its global one is at ln 100."""
    out = []
    for info in models:
        glob = info.scales.get("logit_scale")
        for head in ("logit_scale_finegrained", "logit_scale_hardneg"):
            have = info.scales.get(head)
            if glob and have and is_ln100(glob.value) and is_clip_init(have.value):
                out.append(
                    registry.get("FGD101").finding(
                        f"{have.key} = {have.value:.5g} (CLIP's from-scratch init) while logit_scale = {glob.value:.5g} "
                        "(ln 100): loading this model brings the head-scale bug along",
                        location=str(info.path),
                        evidence={"head": head, "saved": have.value, "logit_scale": glob.value},
                    )
                )
    return out


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
