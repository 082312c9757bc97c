"""Resume guard: compare `checkpoint-*` in the output directory with the configuration before training.

The seed's step "delete old checkpoints, their logit_scale is wrong" done safely: a stale checkpoint stops
the run with a message naming the checkpoint, the values and the two ways out; nothing is deleted.
Checkpoints are read without unpickling: config.json as JSON, scalars through safetensors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

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


def stale_checkpoints(output_dir: str | Path, expected: dict[str, object]) -> list[Mismatch]:
    return [m for ckpt in checkpoints(output_dir) for m in compare(ckpt, expected)]


def refusal_message(output_dir: str | Path, mismatches: list[Mismatch]) -> str:
    lines = [f"{output_dir}: refusing to start: checkpoints disagree with the configuration"]
    lines += [f"  {m}" for m in mismatches]
    lines += [
        "Resuming would silently restore these values. Either:",
        "  - start fresh beside them:   --resume_policy ignore",
        f"  - move them aside (never deleted): fgdiag check-config --quarantine {output_dir}",
    ]
    return "\n".join(lines)
