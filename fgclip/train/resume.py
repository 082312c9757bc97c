"""Resume guard: what to do with the `checkpoint-*` already in the output directory, decided before training.

The seed's step "delete old checkpoints, their logit_scale is wrong" done safely: a stale checkpoint stops
the run with a message naming the checkpoint, the values and the two ways out; nothing is deleted. An
unreadable checkpoint is set aside (`integrity.py`) and the newest intact one resumed; a run that already
reached its `max_steps` is not trained again (the Trainer would take one more step when `max_steps` is not
a multiple of the epoch). `--resume_policy ignore` never reads a checkpoint. Checkpoints are read without
unpickling: JSON files as JSON, scalars through safetensors.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from fgclip.train.errors import NOTHING_TO_DO, TrainingRefused
from fgclip.train.integrity import checkpoint_problem, set_aside

SCALE_KEYS = {  # our name -> names used by upstream FG-CLIP / the fgclip-vad fork
    "logit_scale_finegrained": ("logit_scale_finegrained", "logit_scale_finegraind"),
    "logit_scale_hardneg": ("logit_scale_hardneg",),
}
CONFIG_FIELDS = (
    "finegrained_logit_scale_init",
    "hardneg_logit_scale_init",
    "logit_scale_max",
    "memory_bank_size",
    "memory_bank_warmup_steps",
)
SCALE_TOLERANCE = 1.0  # log space: training moves a scale far less than 2.6592 -> 4.6052


def checkpoints(output_dir: str | Path) -> list[Path]:
    """`checkpoint-N` folders in numeric order (lexicographic order puts checkpoint-1000 before -200)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
    ]
    return [p for _, p in sorted(found)]


def read_scalars(checkpoint: Path, names: list[str]) -> dict[str, float]:
    """Scalar tensors from model.safetensors via lazy access (never unpickles)."""
    from safetensors import safe_open

    path = checkpoint / "model.safetensors"
    if not path.exists():
        return {}
    out: dict[str, float] = {}
    with safe_open(str(path), framework="numpy") as fh:
        keys = set(fh.keys())
        for name in names:
            if name in keys:
                out[name] = float(fh.get_tensor(name).reshape(-1)[0])
    return out


@dataclass
class Mismatch:
    checkpoint: Path
    field: str
    saved: object
    expected: object

    def __str__(self) -> str:
        return f"{self.checkpoint.name}: {self.field} saved {self.saved!r}, configured {self.expected!r}"


def compare(checkpoint: Path, expected: dict[str, object]) -> list[Mismatch]:
    """Mismatches between one checkpoint and the configured values (`CONFIG_FIELDS`)."""
    out: list[Mismatch] = []
    config_path = checkpoint / "config.json"
    saved_cfg = {}
    if config_path.exists():
        try:
            saved_cfg = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            out.append(Mismatch(checkpoint, "config.json", f"unreadable ({exc})", "valid JSON"))
    for field in CONFIG_FIELDS:
        if field in saved_cfg and field in expected and saved_cfg[field] != expected[field]:
            a, b = saved_cfg[field], expected[field]
            if isinstance(a, float) and isinstance(b, float) and abs(a - b) < 1e-6:
                continue
            out.append(Mismatch(checkpoint, field, a, b))
    names = [n for alts in SCALE_KEYS.values() for n in alts]
    scalars = read_scalars(checkpoint, names)
    for ours, alts in SCALE_KEYS.items():
        init_field = "finegrained_logit_scale_init" if "finegrained" in ours else "hardneg_logit_scale_init"
        target = expected.get(init_field)
        for name in alts:
            if (
                name in scalars
                and isinstance(target, (int, float))
                and abs(scalars[name] - target) > SCALE_TOLERANCE
            ):
                out.append(Mismatch(checkpoint, name, round(scalars[name], 6), target))
    return out


def refusal_message(output_dir: str | Path, mismatches: list[Mismatch]) -> str:
    lines = [f"{output_dir}: refusing to start: checkpoints disagree with the configuration"]
    lines += [f"  {m}" for m in mismatches]
    lines += [
        "Resuming would silently restore these values. Either:",
        "  - start fresh beside them:   --resume_policy ignore",
        f"  - move them aside (never deleted): fgdiag check-config --quarantine {output_dir}",
    ]
    return "\n".join(lines)


def _trainer_state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def finished_message(output_dir: Path, newest: Path | None, max_steps: int, epochs: float) -> str | None:
    """A message when the newest intact checkpoint (or the final state in `output_dir`) already reached
    the plan: `max_steps`, or with max_steps -1 the saved plan of the same `num_train_epochs`."""
    for folder in [p for p in (newest, output_dir) if p is not None]:
        state = _trainer_state(folder)
        step = state.get("global_step")
        if not isinstance(step, int):
            continue
        if max_steps > 0:
            target = max_steps
        elif state.get("num_train_epochs") == epochs and isinstance(state.get("max_steps"), int):
            target = state["max_steps"]
        else:
            continue
        if step >= target > 0:
            where = folder / "trainer_state.json"
            return (
                f"{output_dir}: this run already reached its plan ({where}: global_step {step} >= "
                f"max_steps {target}); nothing to train. To train further, rerun with a larger --max_steps "
                f"(e.g. --max_steps {2 * step}); to start over, use another --output_dir."
            )
    return None


@dataclass
class ResumePlan:
    """`resume_from`: a checkpoint folder or None (fresh); `output_dir` may be a fresh subfolder (ignore)."""

    resume_from: str | None
    output_dir: str
    notes: list[str] = dc_field(default_factory=list)


def plan_resume(
    output_dir: str | Path, policy: str, expected: dict[str, object], max_steps: int, epochs: float
) -> ResumePlan:
    """Decide before training; raises TrainingRefused for stale checkpoints (exit 2) and finished runs
    (exit 0). Nothing is deleted; unreadable checkpoints are moved aside only when training will run."""
    root = Path(output_dir)
    if policy == "ignore":  # never read them: a corrupt checkpoint must not stop the documented way out
        if not checkpoints(root):
            return ResumePlan(None, str(root))
        fresh = root / f"fresh-{time.strftime('%Y%m%d-%H%M%S')}"
        note = (
            "resume_policy=ignore: existing checkpoints left unread and untouched; "
            f"this run writes to {fresh}"
        )
        return ResumePlan(None, str(fresh), [note])
    found = checkpoints(root)
    problems = {ckpt: checkpoint_problem(ckpt) for ckpt in found}
    unreadable = {ckpt: why for ckpt, why in problems.items() if why is not None}
    intact = [ckpt for ckpt in found if ckpt not in unreadable]
    stale = [m for ckpt in intact for m in compare(ckpt, expected)]
    if stale:
        raise TrainingRefused(refusal_message(root, stale))
    newest = intact[-1] if intact else None
    if done := finished_message(root, newest, max_steps, epochs):
        raise TrainingRefused(done, exit_code=NOTHING_TO_DO)
    notes = []
    if unreadable:
        try:
            folder = set_aside(root, unreadable)
        except OSError as exc:
            raise TrainingRefused(
                f"{root}: cannot move unreadable checkpoints aside ({exc}); move them yourself, or "
                "start fresh beside them with --resume_policy ignore"
            ) from None
        for ckpt, why in unreadable.items():
            notes.append(f"{ckpt.name} is unreadable ({why}): moved to {folder / ckpt.name}, not deleted")
        notes.append(
            f"resuming from {newest.name}, the newest intact checkpoint"
            if newest is not None
            else "no intact checkpoint left: training starts from the model"
        )
    if newest is not None and not unreadable:
        notes.append(f"resuming from {newest} (its settings match the configuration)")
    return ResumePlan(str(newest) if newest is not None else None, str(root), notes)
