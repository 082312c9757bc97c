"""FGD4xx, checkpoints, weights and resume: docs and the static checks over saved weights (stale checkpoints,
non-finite tensors, parameters a pretrained source leaves newly initialised).

They read `CheckpointInfo` facts (`fgdiag.static.checkpoints` reads them), compare them with the resolved
settings when a configuration was given, and never load a model. `stale_differences` is also what
`fgdiag.check.compare_checkpoint` (the resume guard's library call) reports.
"""

from __future__ import annotations

from typing import Any

from fgclip.weights.names import CLIP_HF, FGCLIP, OPENAI_RESNET, UNKNOWN, coverage
from fgdiag.diagnostic import Finding
from fgdiag.facts import is_clip_from_scratch, is_ln100
from fgdiag.facts.checkpoint import SCALE_HEADS, CheckpointInfo, round_to
from fgdiag.facts.clip_keys import expected_new_patterns, missing_and_mismatched, normalise_keys
from fgdiag.facts.run import RunFacts
from fgdiag.facts.settings import Settings
from fgdiag.facts.values import as_float, as_int
from fgdiag.rules.registry import get, register, static_check

register(
    "FGD401",
    "stale-checkpoint",
    "error",
    what="A checkpoint-* whose saved logit scales or memory-bank settings differ from the configuration.",
    why="Resuming silently restores the wrong scale; the seed had to delete such checkpoints by hand.",
    example="checkpoint-100 saved logit_scale_finegrained = 2.6592 while the config says 4.6052",
    fix="Move the checkpoints aside (fgdiag check-config --quarantine) or resume on purpose with "
    "--resume_policy ignore; nothing is deleted.",
)
register(
    "FGD402",
    "non-finite-weights",
    "error",
    what="A checkpoint or model directory holding NaN or Inf in a parameter.",
    why="Training from it produces NaN losses from the first step.",
    example="logit_scale = nan in checkpoint-300/model.safetensors",
    fix="Resume from an earlier checkpoint; find the step where the loss first became non-finite (FGD701).",
)
register(
    "FGD403",
    "unexpected-new-parameters",
    "warning",
    what="A pretrained source that leaves parameters newly initialised beyond the expected new heads.",
    why="The fgclip-vad loader left q/k/v random in all 24 layers; training then starts from a broken tower.",
    example="newly initialised: text_model.encoder.layers.0.self_attn.q_proj.weight",
    fix="Load a complete CLIP checkpoint; only the long-text table, long projection, roi head and the "
    "auxiliary scales may be new.",
)

SCALE_TOLERANCE = 1e-3  # a saved scale further than this (at its dtype's precision) from the configured one
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


def _describe(value: float, dtype: str = "") -> str:
    return f"{value:.5g}" + (f" ({dtype.lower()})" if dtype and dtype != "F32" else "")


def stale_differences(info: CheckpointInfo, expected: dict[str, Any]) -> list[dict[str, Any]]:
    """Each way the checkpoint disagrees with `expected` (see compare_checkpoint), or carries the FGD101
    bug."""
    diffs: list[dict[str, Any]] = []
    drift = float(expected.get("scale_drift_per_step") or 0.0) * (info.step or 0)
    for head in SCALE_HEADS:
        want, have = expected.get(head), info.scales.get(head)
        if want is None or have is None:
            continue
        target = round_to(float(want), have.dtype)
        if abs(have.value - target) > SCALE_TOLERANCE + drift:
            diffs.append(
                {
                    "field": head,
                    "saved": have.value,
                    "expected": float(want),
                    "reason": f"{head} saved {_describe(have.value, have.dtype)}, configured {want:.5g}",
                }
            )
    glob = info.scales.get("logit_scale")
    for head in SCALE_HEADS[1:]:
        have = info.scales.get(head)
        if (
            glob
            and have
            and is_ln100(glob.value)
            and is_clip_from_scratch(have.value)
            and not any(d["field"] == head for d in diffs)
        ):
            diffs.append(
                {
                    "field": head,
                    "saved": have.value,
                    "expected": glob.value,
                    "reason": f"{head} saved {_describe(have.value, have.dtype)} is CLIP's from-scratch init "
                    f"while logit_scale is {glob.value:.5g} (ln 100): resuming restores the FGD101 bug",
                }
            )
    config = info.config or {}
    for key, head in (
        ("finegrained_logit_scale_init", "logit_scale_finegrained"),
        ("hardneg_logit_scale_init", "logit_scale_hardneg"),
    ):
        want, have = expected.get(head), config.get(key)
        if want is not None and isinstance(have, (int, float)) and abs(have - float(want)) > SCALE_TOLERANCE:
            diffs.append(
                {
                    "field": key,
                    "saved": have,
                    "expected": float(want),
                    "reason": f"trained with {key} = {have:.5g} (its config.json), configured {want:.5g}",
                }
            )
    if "memory_bank_size" in expected:
        want_k = int(expected["memory_bank_size"] or 0)
        have_k = info.memory_bank_size or 0
        if have_k != want_k:
            diffs.append(
                {
                    "field": "memory_bank_size",
                    "saved": have_k,
                    "expected": want_k,
                    "reason": f"memory bank of {have_k} entries saved, configured {want_k}",
                }
            )
    want_w = expected.get("memory_bank_warmup_steps")
    if (
        want_w is not None
        and info.memory_bank_warmup_steps is not None
        and int(want_w) != info.memory_bank_warmup_steps
    ):
        diffs.append(
            {
                "field": "memory_bank_warmup_steps",
                "saved": info.memory_bank_warmup_steps,
                "expected": int(want_w),
                "reason": f"memory-bank warm-up {info.memory_bank_warmup_steps} optimizer steps saved, "
                f"configured {int(want_w)}",
            }
        )
    return diffs


def stale_finding(info: CheckpointInfo, diffs: list[dict[str, Any]], source: str = "") -> Finding:
    """The FGD401 finding for one checkpoint and its differences."""
    against = f" against {source}" if source else ""
    return get("FGD401").finding(
        f"{info.path.name} is stale{against}: " + "; ".join(d["reason"] for d in diffs),
        location=str(info.path),
        evidence={"path": str(info.path), "step": info.step, "differences": diffs},
    )


@static_check("FGD401")
def stale(facts: RunFacts) -> list[Finding]:
    """Each checkpoint that differs from the configuration or carries the head-scale bug."""
    expected = expected_from_settings(facts.settings) if facts.settings is not None else {}
    out = []
    for info in facts.checkpoints:
        diffs = stale_differences(info, expected)
        if diffs:
            out.append(stale_finding(info, diffs, str(expected.get("source", ""))))
    return out


@static_check("FGD402")
def nonfinite(facts: RunFacts) -> list[Finding]:
    """Each weight file holding NaN or Inf."""
    out = []
    for info in facts.models + facts.checkpoints:
        for file, names in info.weights.nonfinite().items():
            shown = ", ".join(names[:SHOWN]) + (
                f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
            )
            out.append(
                get("FGD402").finding(
                    f"{len(names)} tensor(s) hold NaN or Inf: {shown}",
                    location=str(file),
                    evidence={"tensors": names},
                )
            )
    return out


def _matches(key: str, patterns: list[str]) -> bool:
    return any(key == p or (p.endswith("*") and key.startswith(p[:-1])) for p in patterns)


def _depths(config: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """(text layers, vision layers) a config.json declares, None where it does not say."""

    def layers(name: str) -> int | None:
        sub = (config or {}).get(name) or (config or {}).get(f"{name}_dict") or {}
        value = sub.get("num_hidden_layers") if isinstance(sub, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    return layers("text_config"), layers("vision_config")


def _shown(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _left_random(info: CheckpointInfo, patterns: list[str], notes: list[str]) -> tuple[list[str], list]:
    """(tower tensors a loader would leave random, shape mismatches against config.json) of one source:
    `fgclip.weights.names.coverage` over its key names (OpenAI, upstream FG-CLIP, transformers CLIP or
    ours), depths from its config.json when it has one, else from its own highest block index."""
    keys = list(info.weights.shapes)
    cov = coverage(keys, *_depths(info.config))
    if cov.layout in (OPENAI_RESNET, UNKNOWN):
        notes.append(f"{info.path}: not a CLIP ViT layout fgclip loads ({cov.layout}); FGD403 not checked")
        return [], []
    missing = list(cov.uncovered_tower)
    mismatched: list = []
    if info.config is not None and cov.layout in (CLIP_HF, FGCLIP):
        by_config, mismatched = missing_and_mismatched(info.config, info.weights.shapes)
        missing += [k for k in by_config if k not in missing and not _matches(k, patterns)]
    return sorted(missing), mismatched


@static_check("FGD403")
def new_parameters(facts: RunFacts) -> list[Finding]:
    """Tower tensors a pretrained source (or checkpoint) leaves without a value, beyond the expected heads."""
    rule, s, notes, infos = get("FGD403"), facts.settings, facts.notes, facts.models + facts.checkpoints
    values = s.values if s is not None else None
    patterns = expected_new_patterns(
        values.text("region_head") or "shared" if values else "shared",
        values.text("temporal_pooling") or "mean" if values else "mean",
        (as_int(s.bank_size) or 0) if s is not None and s.bank_size is not None else 0,
    )
    out = []
    for info in infos:
        if all(f.name.startswith("adapter_model") for f in info.weights.files):
            notes.append(f"{info.path}: a LoRA adapter holds no base weights: FGD403 not checked")
            continue
        missing, mismatched = _left_random(info, patterns, notes)
        if not missing and not mismatched:
            continue
        saved = normalise_keys(list(info.weights.shapes))
        expected_new = [p for p in patterns if not any(_matches(k, [p]) for k in saved)]
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} tower tensor(s) missing, which a loader would leave random (fgclip's loader "
                f"refuses the source): {_shown(missing)}"
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
                    "missing": missing,
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
                    "load_openai_clip_weights, which skips in_proj_* (q/k/v stay random in all 24 layers) "
                    "and ln_final and copies text_projection untransposed (its log: 'Copied 127 vision / "
                    "122 text weights')",
                    location=s.source.location,
                )
            )
    return out
