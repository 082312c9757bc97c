"""Which saved tensor becomes which FGCLIPModel tensor, per checkpoint layout, and what a source leaves
uncovered.

Pure Python (no torch): `fgdiag check-config` calls `uncovered(keys)` on a checkpoint's key list to name the
tower tensors a loader would leave random, without loading a weight. Layouts:

- ``openai``: the `clip` package's CLIP (`visual.transformer.resblocks.N.attn.in_proj_weight`, `visual.proj`,
  `text_projection`, `ln_final`, ...). The fused `in_proj` holds q, k, v stacked along dim 0 in that order
  (transformers' own conversion takes its thirds); `visual.proj` and `text_projection` are stored (in, out)
  and are transposed into the (out, in) Linear weights.
- ``fgclip-upstream``: upstream FG-CLIP v1 and the fgclip-vad fork: transformers CLIP names plus
  `text_filip_projection`, `logit_scale_finegraind` (sic) and two 248-row long-caption tables, of which the
  text tower reads `position_embedding_ori` below row 20 and `position_embedding_res` from row 20 on.
- ``clip-hf`` (transformers' `CLIPModel`) and ``fgclip`` (ours): the names are already ours.
- ``openai-resnet`` (RN50 ...) and ``unknown``: nothing maps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

OPENAI, OPENAI_RESNET, UPSTREAM, CLIP_HF, FGCLIP, UNKNOWN = (
    "openai",
    "openai-resnet",
    "fgclip-upstream",
    "clip-hf",
    "fgclip",
    "unknown",
)

# ops a Rule applies to its source tensor(s); the torch side (weights/convert.py) implements each
COPY, TRANSPOSE, LONG_TABLE = "copy", "transpose", "long_table"
THIRDS = ("thirds:0", "thirds:1", "thirds:2")  # q, k, v: rows [0, n/3), [n/3, 2n/3), [2n/3, n)

UPSTREAM_ORI_ROWS = 20  # upstream's text embeddings mask: rows < 20 from `_ori`, rows >= 20 from `_res`

# FGCLIPModel's additions to CLIPModel: a CLIP source lacks them and the loader derives or initialises them
EXPECTED_NEW_PREFIXES = (
    "text_long_projection.",
    "long_position_embedding.",
    "logit_scale_finegrained",
    "logit_scale_hardneg",
    "roi_projection.",
    "temporal_pool.",
    "memory_bank.",
)
NEW_HEADS = (
    "long_position_embedding.weight",
    "text_long_projection.weight",
    "logit_scale_finegrained",
    "logit_scale_hardneg",
)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP, torch.compile
OPENAI_METADATA = ("input_resolution", "context_length", "vocab_size")  # ints saved by the clip package's JIT
_POSITION_IDS = re.compile(r"(^|\.)position_ids$")  # buffers some transformers versions saved

_LAYER_PARTS = (
    *(f"self_attn.{p}_proj.{w}" for p in ("k", "v", "q", "out") for w in ("weight", "bias")),
    "layer_norm1.weight",
    "layer_norm1.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
    "layer_norm2.weight",
    "layer_norm2.bias",
)
_TEXT_GLOBAL = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
}
_VISION_GLOBAL = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",  # sic: transformers' spelling
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
}
_HEADS = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
# OpenAI block suffix -> (our block suffix, op); in_proj feeds three of ours
_OPENAI_BLOCK = (
    *(
        (f"attn.in_proj_{w}", f"self_attn.{p}_proj.{w}", op)
        for w in ("weight", "bias")
        for p, op in zip("qkv", THIRDS, strict=True)
    ),
    *((f"attn.out_proj.{w}", f"self_attn.out_proj.{w}", COPY) for w in ("weight", "bias")),
    *((f"ln_1.{w}", f"layer_norm1.{w}", COPY) for w in ("weight", "bias")),
    *((f"ln_2.{w}", f"layer_norm2.{w}", COPY) for w in ("weight", "bias")),
    *((f"mlp.c_fc.{w}", f"mlp.fc1.{w}", COPY) for w in ("weight", "bias")),
    *((f"mlp.c_proj.{w}", f"mlp.fc2.{w}", COPY) for w in ("weight", "bias")),
)
_UPSTREAM_RENAMES = {
    "text_filip_projection.weight": "text_long_projection.weight",
    "logit_scale_finegraind": "logit_scale_finegrained",
    "logit_scale_hardneg": "logit_scale_hardneg",
    "roi_projection.weight": "roi_projection.weight",  # the fgclip-vad fork's region head
}
UPSTREAM_ORI = "text_model.embeddings.position_embedding_ori.weight"
UPSTREAM_RES = "text_model.embeddings.position_embedding_res.weight"
_UPSTREAM_MARKERS = {"text_filip_projection.weight", "logit_scale_finegraind", UPSTREAM_ORI, UPSTREAM_RES}


@dataclass(frozen=True)
class Rule:
    """Our tensor `target` made from the saved tensor(s) `sources` by `op`."""

    target: str
    sources: tuple[str, ...]
    op: str = COPY

    def describe(self) -> str:
        """How the target was made, for the loading report: `visual.proj (transposed)` ..."""
        if self.op == TRANSPOSE:
            return f"{self.sources[0]} (transposed)"
        if self.op in THIRDS:
            return f"{self.sources[0]} ({'qkv'[THIRDS.index(self.op)]} third, rows {self.op[-1]}/3 of dim 0)"
        if self.op == LONG_TABLE:
            return (
                f"{self.sources[0]} rows < {UPSTREAM_ORI_ROWS} + "
                f"{self.sources[1]} rows >= {UPSTREAM_ORI_ROWS}"
            )
        return self.sources[0]


@dataclass
class Coverage:
    """What a source (by its key names alone) gives FGCLIPModel, and what it leaves to the loader."""

    layout: str
    text_layers: int
    vision_layers: int
    rules: list[Rule] = field(default_factory=list)  # rules whose sources are all saved
    uncovered_tower: dict[str, tuple[str, ...]] = field(default_factory=dict)  # ours -> saved names it lacks
    uncovered_new: list[str] = field(default_factory=list)  # FG-CLIP heads to derive / set from the config
    unused: list[str] = field(default_factory=list)  # saved names no rule reads (as saved, wrapper included)
    metadata: list[str] = field(default_factory=list)  # saved names read as facts only
    saved_name: dict[str, str] = field(default_factory=dict)  # normalised name -> name as saved


def unwrap(keys: Iterable[str]) -> dict[str, str]:
    """Normalised name -> saved name, with a DDP `module.` or torch.compile `_orig_mod.` prefix removed."""
    out: dict[str, str] = {}
    for key in keys:
        name = key
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = key
    return out


def detect_layout(keys: Iterable[str]) -> str:
    """One of the layouts in this module's docstring, from the key names."""
    names = set(unwrap(keys))
    if any(k.startswith("visual.layer1.") for k in names):
        return OPENAI_RESNET
    openai_markers = {"visual.conv1.weight", "token_embedding.weight", "visual.proj", "text_projection"}
    if names & openai_markers or any(
        k.startswith(("transformer.resblocks.", "visual.transformer.resblocks.")) for k in names
    ):
        return OPENAI
    if names & _UPSTREAM_MARKERS:
        return UPSTREAM
    if any(k.startswith(EXPECTED_NEW_PREFIXES[:4]) for k in names):
        return FGCLIP
    if any(k.startswith(("text_model.", "vision_model.")) for k in names):
        return CLIP_HF
    return UNKNOWN


def _count(names: Iterable[str], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = [int(m.group(1)) for k in names if (m := pattern.match(k))]
    return max(found) + 1 if found else 0


def layer_counts(keys: Iterable[str], layout: str | None = None) -> tuple[int, int]:
    """(text layers, vision layers) as the highest block index + 1: a block missing one tensor still counts
    (OpenAI's build_model counts `in_proj_weight` keys, so a missing one would silently drop a layer)."""
    names = list(unwrap(keys))
    layout = layout or detect_layout(names)
    if layout == OPENAI:
        return _count(names, "transformer.resblocks."), _count(names, "visual.transformer.resblocks.")
    return _count(names, "text_model.encoder.layers."), _count(names, "vision_model.encoder.layers.")


def tower_keys(text_layers: int, vision_layers: int) -> list[str]:
    """Every persistent tensor of a transformers CLIPModel with these depths (FGCLIPModel's towers too)."""
    keys = [*_TEXT_GLOBAL.values(), *_VISION_GLOBAL.values(), *_HEADS.values(), "logit_scale"]
    for tower, n in (("text_model", text_layers), ("vision_model", vision_layers)):
        keys += [f"{tower}.encoder.layers.{i}.{part}" for i in range(n) for part in _LAYER_PARTS]
    return keys


def openai_rules(text_layers: int, vision_layers: int) -> list[Rule]:
    """The OpenAI layout's rules for every tower tensor (no FG-CLIP head exists in that layout)."""
    rules = [Rule(ours, (saved,)) for saved, ours in {**_TEXT_GLOBAL, **_VISION_GLOBAL}.items()]
    rules += [Rule(ours, (saved,), TRANSPOSE) for saved, ours in _HEADS.items()]
    rules.append(Rule("logit_scale", ("logit_scale",)))
    for saved_prefix, ours_prefix, n in (
        ("transformer.resblocks", "text_model.encoder.layers", text_layers),
        ("visual.transformer.resblocks", "vision_model.encoder.layers", vision_layers),
    ):
        for i in range(n):
            for saved, ours, op in _OPENAI_BLOCK:
                rules.append(Rule(f"{ours_prefix}.{i}.{ours}", (f"{saved_prefix}.{i}.{saved}",), op))
    return rules


def upstream_rules(text_layers: int, vision_layers: int) -> list[Rule]:
    """Upstream FG-CLIP: identity for the towers, renames for its heads, one long table from two."""
    rules = [Rule(k, (k,)) for k in tower_keys(text_layers, vision_layers)]
    rules += [Rule(ours, (saved,)) for saved, ours in _UPSTREAM_RENAMES.items()]
    rules.append(Rule("long_position_embedding.weight", (UPSTREAM_ORI, UPSTREAM_RES), LONG_TABLE))
    return rules


def identity_rules(names: Iterable[str], text_layers: int, vision_layers: int) -> list[Rule]:
    """transformers CLIP / our own checkpoints: the towers plus whichever of our additions are saved."""
    rules = [Rule(k, (k,)) for k in tower_keys(text_layers, vision_layers)]
    rules += [Rule(k, (k,)) for k in names if k.startswith(EXPECTED_NEW_PREFIXES)]
    return rules


def is_metadata(name: str, layout: str) -> bool:
    """Saved names that carry facts, not weights (checked against the architecture, never loaded)."""
    return bool(_POSITION_IDS.search(name)) or (layout == OPENAI and name in OPENAI_METADATA)


def coverage(
    source_keys: Iterable[str], text_layers: int | None = None, vision_layers: int | None = None
) -> Coverage:
    """Map a source's key names onto FGCLIPModel. Depths default to the source's own (highest index + 1);
    pass them (e.g. from config.json) to see blocks the source lacks entirely."""
    saved_name = unwrap(source_keys)
    names = set(saved_name)
    layout = detect_layout(names)
    counted = layer_counts(names, layout)
    tl = counted[0] if text_layers is None else text_layers
    vl = counted[1] if vision_layers is None else vision_layers
    cov = Coverage(layout, tl, vl, saved_name=saved_name)
    if layout == OPENAI:
        candidates = openai_rules(tl, vl)
    elif layout == UPSTREAM:
        candidates = upstream_rules(tl, vl)
    elif layout in (CLIP_HF, FGCLIP):
        candidates = identity_rules(names, tl, vl)
    else:
        candidates = []
    towers = set(tower_keys(tl, vl))
    for rule in candidates:
        lacking = tuple(s for s in rule.sources if s not in names)
        if not lacking:
            cov.rules.append(rule)
        elif rule.target in towers:
            cov.uncovered_tower[rule.target] = lacking
    for key in towers - {r.target for r in candidates}:  # unknown layouts: nothing covers anything
        cov.uncovered_tower[key] = ()
    covered = {r.target for r in cov.rules}
    cov.uncovered_new = [k for k in NEW_HEADS if k not in covered]
    read = {s for r in cov.rules for s in r.sources}
    cov.metadata = sorted(saved_name[n] for n in names if is_metadata(n, layout))
    cov.unused = sorted(saved_name[n] for n in names if n not in read and not is_metadata(n, layout))
    cov.uncovered_tower = dict(sorted(cov.uncovered_tower.items()))
    return cov


def uncovered(
    source_keys: Iterable[str], text_layers: int | None = None, vision_layers: int | None = None
) -> list[str]:
    """FGCLIPModel tower tensors (our names) that a source with these keys leaves without a value: what a
    lenient loader leaves random and ours refuses to load. Empty for a complete source of any layout."""
    return list(coverage(source_keys, text_layers, vision_layers).uncovered_tower)


__all__ = [
    "EXPECTED_NEW_PREFIXES",
    "Coverage",
    "Rule",
    "coverage",
    "detect_layout",
    "layer_counts",
    "tower_keys",
    "uncovered",
]
