"""The state-dict keys and shapes a transformers `CLIPModel` of a given config.json has, by arithmetic alone.

FGD403 compares a pretrained source's saved keys with what the model will ask for. Instantiating a model to
learn its keys costs seconds and gigabytes; the CLIP layout is regular enough to derive it from the config
(layers, widths, patch grid). Defaults are transformers' `CLIPTextConfig` / `CLIPVisionConfig` defaults, used
when a config.json leaves a field out.
"""

from __future__ import annotations

import re
from typing import Any

from fgdiag.facts.aliases import TENSOR_ALIASES

TEXT_DEFAULTS = {
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
}
VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 32,
}

UPSTREAM_LONG_TABLE = (  # both halves of upstream's 248-row table
    "text_model.embeddings.position_embedding_ori.weight",
    "text_model.embeddings.position_embedding_res.weight",
)
# buffers some transformers versions save and others do not: never "missing"
OPTIONAL = re.compile(r"(^|\.)position_ids$")
STRIP_PREFIXES = ("module.", "base_model.model.", "model.")


def _sub(config: dict[str, Any], name: str, defaults: dict[str, int]) -> dict[str, int]:
    given = config.get(name) or config.get(f"{name}_dict") or {}
    merged = dict(defaults)
    for key in defaults:
        if isinstance(given.get(key), int):
            merged[key] = given[key]
    return merged


def _layers(prefix: str, layers: int, width: int, inner: int) -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    for i in range(layers):
        base = f"{prefix}.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            keys[f"{base}.self_attn.{proj}.weight"] = (width, width)
            keys[f"{base}.self_attn.{proj}.bias"] = (width,)
        for norm in ("layer_norm1", "layer_norm2"):
            keys[f"{base}.{norm}.weight"] = (width,)
            keys[f"{base}.{norm}.bias"] = (width,)
        keys[f"{base}.mlp.fc1.weight"] = (inner, width)
        keys[f"{base}.mlp.fc1.bias"] = (inner,)
        keys[f"{base}.mlp.fc2.weight"] = (width, inner)
        keys[f"{base}.mlp.fc2.bias"] = (width,)
    return keys


def clip_state_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every persistent tensor of a CLIPModel built from `config` (a parsed config.json) with its shape."""
    text = _sub(config, "text_config", TEXT_DEFAULTS)
    vision = _sub(config, "vision_config", VISION_DEFAULTS)
    projection = int(config.get("projection_dim") or 512)
    t_width, v_width = text["hidden_size"], vision["hidden_size"]
    grid = vision["image_size"] // vision["patch_size"]
    keys: dict[str, tuple[int, ...]] = {
        "text_model.embeddings.token_embedding.weight": (text["vocab_size"], t_width),
        "text_model.embeddings.position_embedding.weight": (text["max_position_embeddings"], t_width),
        "text_model.final_layer_norm.weight": (t_width,),
        "text_model.final_layer_norm.bias": (t_width,),
        "vision_model.embeddings.class_embedding": (v_width,),
        "vision_model.embeddings.patch_embedding.weight": (
            v_width,
            vision["num_channels"],
            vision["patch_size"],
            vision["patch_size"],
        ),
        "vision_model.embeddings.position_embedding.weight": (grid * grid + 1, v_width),
        "vision_model.pre_layrnorm.weight": (v_width,),  # sic: transformers' spelling
        "vision_model.pre_layrnorm.bias": (v_width,),
        "vision_model.post_layernorm.weight": (v_width,),
        "vision_model.post_layernorm.bias": (v_width,),
        "visual_projection.weight": (projection, v_width),
        "text_projection.weight": (projection, t_width),
        "logit_scale": (),
    }
    keys.update(_layers("text_model", text["num_hidden_layers"], t_width, text["intermediate_size"]))
    keys.update(_layers("vision_model", vision["num_hidden_layers"], v_width, vision["intermediate_size"]))
    return keys


def expected_new_patterns(
    region_head: str = "shared", temporal_pooling: str = "mean", memory_bank_size: int = 0
) -> list[str]:
    """Keys FGCLIPModel adds on top of CLIP (docs/CONTRACTS.md): a CLIP source is allowed to lack these."""
    patterns = [
        "text_long_projection.weight",
        "long_position_embedding.weight",
        "logit_scale_finegrained",
        "logit_scale_hardneg",
    ]
    if region_head == "roi_projection":
        patterns.append("roi_projection.weight")
    if temporal_pooling == "attention":
        patterns.append("temporal_pool.*")
    if memory_bank_size > 0:
        patterns.append("memory_bank.*")
    return patterns


def normalise_keys(names: list[str]) -> dict[str, str]:
    """Map saved names to ours: strip a wrapper prefix (DDP `module.`, peft, `model.`) and rename aliases.

    Upstream's long position table is two tensors (rows < 20 from `position_embedding_ori`, the rest from
    `position_embedding_res`): it counts as our `long_position_embedding` only when both are saved."""
    out: dict[str, str] = {}
    for name in names:
        key = name
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix) and not key.startswith(("text_model.", "vision_model.")):
                key = key[len(prefix) :]
        out[TENSOR_ALIASES.get(key, key)] = name
    if UPSTREAM_LONG_TABLE[0] not in out and UPSTREAM_LONG_TABLE[1] in TENSOR_ALIASES:
        long_name = TENSOR_ALIASES[UPSTREAM_LONG_TABLE[1]]
        if long_name in out and out[long_name].endswith(UPSTREAM_LONG_TABLE[1]):
            out[UPSTREAM_LONG_TABLE[1]] = out.pop(long_name)  # half a table: nothing covers the long one
    return out


def missing_and_mismatched(
    config: dict[str, Any], saved: dict[str, tuple[int, ...]]
) -> tuple[list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """CLIP tensors the source lacks, and those whose saved shape differs from the config arithmetic."""
    names = normalise_keys(list(saved))
    expected = clip_state_shapes(config)
    missing = sorted(k for k in expected if k not in names and not OPTIONAL.search(k))
    mismatched = []
    for key, shape in expected.items():
        if key in names:
            got = tuple(saved[names[key]])
            if got != shape and not (shape == () and got == (1,)):
                mismatched.append((key, got, shape))
    return missing, mismatched
