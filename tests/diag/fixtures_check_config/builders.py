"""Builders of tiny, CLIP-shaped model directories and checkpoints for the check-config tests.

Tensors are small (width 8, 2 layers) but keyed and shaped exactly as transformers' CLIPModel of the
config.json written next to them, so the key arithmetic of FGD403 is exercised for real. Files are written
in the safetensors format by hand (an 8-byte header length, a JSON header, the raw bytes) so that bf16
tensors, as fgclip-vad saves them, need no torch.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from fgdiag.facts.clip_keys import clip_state_shapes

HERE = Path(__file__).parent
LN_100 = math.log(100.0)
CLIP_INIT = 2.6592

TINY_CONFIG: dict[str, Any] = {
    "architectures": ["CLIPModel"],
    "model_type": "clip",
    "projection_dim": 4,
    "logit_scale_init_value": 2.6592,
    "text_config": {
        "vocab_size": 16,
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 8,
    },
    "vision_config": {
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 8,
        "patch_size": 4,
        "num_channels": 3,
    },
}
DTYPES = {"F32": np.float32, "I64": np.int64, "BOOL": np.bool_, "F16": np.float16}


def to_bf16_bits(values: np.ndarray) -> np.ndarray:
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return bits.astype(np.uint16)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, Any]]) -> Path:
    """tensors: name -> (dtype code, array-like). BF16 values are given as floats and rounded here."""
    header: dict[str, Any] = {}
    blobs: list[bytes] = []
    offset = 0
    for name, (dtype, value) in tensors.items():
        array = np.asarray(value)
        raw = (
            to_bf16_bits(array).tobytes()
            if dtype == "BF16"
            else np.ascontiguousarray(array.astype(DTYPES[dtype])).tobytes()
        )
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def clip_tensors(
    config: dict[str, Any] | None = None, dtype: str = "F32", *, logit_scale: float = LN_100, seed: int = 0
) -> dict[str, tuple[str, Any]]:
    """Every CLIPModel tensor of `config` with small random values."""
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[str, Any]] = {}
    for name, shape in clip_state_shapes(config or TINY_CONFIG).items():
        out[name] = (
            dtype,
            np.float32(logit_scale)
            if name == "logit_scale"
            else rng.standard_normal(shape).astype(np.float32) * 0.02,
        )
    return out


def ours_heads(
    finegrained: float = LN_100,
    hardneg: float = LN_100,
    *,
    bank: int = 128,
    warmup: int = 6,
    roi: bool = True,
) -> dict[str, tuple[str, Any]]:
    """fgclip's added tensors (docs/CONTRACTS.md names), memory bank in optimizer steps."""
    out: dict[str, tuple[str, Any]] = {
        "logit_scale_finegrained": ("F32", np.float32(finegrained)),
        "logit_scale_hardneg": ("F32", np.float32(hardneg)),
        "text_long_projection.weight": ("F32", np.zeros((4, 8), np.float32)),
        "long_position_embedding.weight": ("F32", np.zeros((20, 8), np.float32)),
    }
    if roi:
        out["roi_projection.weight"] = ("F32", np.zeros((4, 8), np.float32))
    if bank:
        out.update(
            {
                "memory_bank.image_queue": ("F32", np.zeros((bank, 4), np.float32)),
                "memory_bank.text_queue": ("F32", np.zeros((bank, 4), np.float32)),
                "memory_bank.caption_keys": ("I64", np.zeros((bank,), np.int64)),
                "memory_bank.entry_step": ("I64", np.zeros((bank,), np.int64)),
                "memory_bank.ptr": ("I64", np.int64(0)),
                "memory_bank.fill": ("I64", np.int64(0)),
                "memory_bank.optimizer_steps": ("I64", np.int64(20)),
                "memory_bank.activated_step": ("I64", np.int64(-1)),
                "memory_bank.warmup_steps": ("I64", np.int64(warmup)),
            }
        )
    return out


def fork_heads(
    finegrained: float = CLIP_INIT, hardneg: float = CLIP_INIT, *, forwards: int = 160, per_class: int = 64
) -> dict[str, tuple[str, Any]]:
    """fgclip-vad's added tensors, saved in bf16 as the fork casts the whole model."""
    out: dict[str, tuple[str, Any]] = {
        "logit_scale_finegraind": ("BF16", np.float32(finegrained)),
        "logit_scale_hardneg": ("BF16", np.float32(hardneg)),
        "roi_projection.weight": ("BF16", np.zeros((4, 8), np.float32)),
        "training_steps": ("I64", np.int64(forwards)),
    }
    for cls in ("normal", "abnormal"):
        out[f"region_image_queue_{cls}"] = ("BF16", np.zeros((4, per_class), np.float32))
        out[f"region_text_queue_{cls}"] = ("BF16", np.zeros((4, per_class), np.float32))
        out[f"queue_ptr_{cls}"] = ("I64", np.int64(0))
        out[f"queue_is_full_{cls}"] = ("BOOL", np.bool_(False))
    return out


def model_dir(path: Path, tensors: dict[str, tuple[str, Any]], config: dict[str, Any] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config or TINY_CONFIG, indent=2))
    write_safetensors(path / "model.safetensors", tensors)
    return path


def seed_checkpoint(output_dir: Path, step: int = 20) -> Path:
    """A fork checkpoint trained with the seed's 2.6592 heads (bf16, training_steps = 8 forwards per step)."""
    tensors = {k: ("BF16", v) for k, (_, v) in clip_tensors().items()}
    tensors.update(fork_heads(forwards=8 * step))
    config = dict(TINY_CONFIG, logit_scale_init_value=2.6592)
    return model_dir(output_dir / f"checkpoint-{step}", tensors, config)


def fixed_checkpoint(output_dir: Path, step: int = 100, **heads: Any) -> Path:
    """A checkpoint of the fixed configuration (ours: heads at ln 100, bank 128 with warm-up 6 steps)."""
    tensors = clip_tensors()
    tensors.update(ours_heads(**heads))
    return model_dir(output_dir / f"checkpoint-{step}", tensors)


def write_json_config(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(json.dumps(values, indent=2))
    return path


FIXED: dict[str, Any] = {
    "model": {
        "model_name_or_path": "openai/clip-vit-base-patch16",
        "finegrained_logit_scale_init": 4.6052,
        "hardneg_logit_scale_init": 4.6052,
        "logit_scale_max": 4.6052,
        "memory_bank_size": 128,
        "memory_bank_warmup_steps": 6,
        "region_head": "roi_projection",
    },
    "data": {"num_train_samples": 1559},
    "training": {
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 8,
        "max_steps": 240,
        "learning_rate": 5e-6,
        "head_learning_rate": 2e-5,
        "max_grad_norm": 1.0,
        "bf16": True,
    },
}


def fixed_with(**changes: Any) -> dict[str, Any]:
    """The fixed configuration as a flat dict with some keys changed (None removes a key)."""
    flat = {k: v for section in FIXED.values() for k, v in section.items()}
    for key, value in changes.items():
        if value is None:
            flat.pop(key, None)
        else:
            flat[key] = value
    return flat


def video_records(count: int, *, inverted: int = 0, caption: str | None = None) -> list[dict[str, Any]]:
    """Records in fgclip-vad's UCF format; the first `inverted` carry an inverted box (x1 > x2)."""
    records = []
    for i in range(count):
        box = [0.6, 0.2, 0.3, 0.8] if i < inverted else [0.1, 0.2, 0.5, 0.8]
        records.append(
            {
                "video": f"UCF_Crimes/Videos/Abuse/Abuse{i:03d}_x264.mp4",
                "global_caption": caption or f"A man hits another man, scene {i}.",
                "region_captions": [caption or f"A man in white punches, scene {i}."],
                "box_infos": [[{"frame": 10, "bbox": box}, {"frame": 40, "bbox": box}]],
                "timestamps": None,
            }
        )
    return records
