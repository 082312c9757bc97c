"""FGCLIPModel's config and weights from any supported checkpoint, every tensor accounted for.

transformers CLIP folders, hub ids and our own checkpoints go through transformers' loader (`hf_report` then
describes the result); OpenAI CLIP files and upstream FG-CLIP folders are "foreign": their names are mapped by
`weights.names`, their tensors converted by `weights.convert`, and `load_foreign` fills the model. In both
cases the new heads are derived from the loaded towers by the model's own `_derive_new_weights`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers.configuration_utils import PreTrainedConfig

from fgclip.config import FGCLIPConfig
from fgclip.weights.arch import openai_clip_config, upstream_fields
from fgclip.weights.convert import convert
from fgclip.weights.errors import ArchitectureError, WeightsFileError
from fgclip.weights.names import CLIP_HF, FGCLIP, OPENAI, OPENAI_RESNET, UNKNOWN, UPSTREAM, unwrap
from fgclip.weights.report import LoadingReport, is_expected_new
from fgclip.weights.sources import FOLDER_FILES, WeightSource, open_source

logger = logging.getLogger(__name__)

FOREIGN = (OPENAI, UPSTREAM)
CLIP_VOCAB, CLIP_BOS, CLIP_EOS = 49408, 49406, 49407
_OPENAI_FACTS = {  # metadata tensor of the clip package's archives -> the config field it must equal
    "input_resolution": ("vision_config", "image_size"),
    "context_length": ("text_config", "max_position_embeddings"),
    "vocab_size": ("text_config", "vocab_size"),
}


def foreign_source(path: str | Path) -> WeightSource | None:
    """The checkpoint at `path` when it needs conversion (any single file, or a folder in the OpenAI or
    upstream FG-CLIP layout); None for transformers/ours folders and hub ids."""
    p = Path(str(path)).expanduser()
    if p.is_file():
        source = open_source(p)
        if source.layout == UNKNOWN:
            raise WeightsFileError(f"{p}: no CLIP tensor names recognised (OpenAI, transformers or FG-CLIP)")
        if source.layout not in (*FOREIGN, OPENAI_RESNET):
            raise WeightsFileError(
                f"{p}: a single file in the {source.layout} layout has no config.json; "
                "load its folder instead"
            )
        return source
    if p.is_dir() and any((p / name).is_file() for name in FOLDER_FILES):
        source = open_source(p)
        return source if source.layout in (*FOREIGN, OPENAI_RESNET) else None
    return None


def _fix_legacy_eos(config_dict: dict[str, Any]) -> None:
    """transformers' converted OpenAI configs say eos 2 (transformers then pools at argmax(ids)); the
    long-text path and caption keys pool at the first eos, so use CLIP's real ids, as upstream FG-CLIP forces
    them."""
    for key in ("text_config", "text_config_dict"):
        text = config_dict.get(key)
        if (
            isinstance(text, dict)
            and text.get("eos_token_id") == 2
            and text.get("vocab_size", CLIP_VOCAB) == CLIP_VOCAB
        ):
            text.update(eos_token_id=CLIP_EOS, pad_token_id=CLIP_EOS, bos_token_id=CLIP_BOS)


def load_config(path: str, overrides: dict[str, Any] | None = None, **kwargs: Any) -> FGCLIPConfig:
    """FGCLIPConfig for any checkpoint: our own, a plain CLIP config plus our defaults, upstream FG-CLIP's
    config plus its long table's length, or an OpenAI file's architecture inferred from its shapes."""
    source = foreign_source(path)
    if source is not None and source.layout == OPENAI_RESNET:
        raise ArchitectureError(
            f"{path}: a ResNet CLIP (visual.layer1.*): only ViT checkpoints are supported"
        )
    if source is not None and source.layout == OPENAI:
        shapes = {name: source.shapes()[saved] for name, saved in unwrap(source.keys()).items()}
        config_dict: dict[str, Any] = openai_clip_config(shapes)
        saved = unwrap(source.keys()).get("logit_scale")
        if saved is not None:
            config_dict["logit_scale_init_value"] = float(source.tensor(saved).float())
    else:
        config_dict, _ = PreTrainedConfig.get_config_dict(path, **kwargs)
        config_dict = {
            k: v for k, v in config_dict.items() if k not in ("architectures", "transformers_version")
        }
        if source is not None:  # upstream FG-CLIP: its tensors fix the long table and the region head
            config_dict.update(
                upstream_fields({n: source.shapes()[s] for n, s in unwrap(source.keys()).items()})
            )
    _fix_legacy_eos(config_dict)
    config_dict["model_type"] = FGCLIPConfig.model_type
    config = FGCLIPConfig.from_dict(config_dict)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if not hasattr(config, key):
            raise ValueError(f"unknown FGCLIPConfig field {key!r} in overrides")
        setattr(config, key, value)
    return config.check()


def _check_facts(source: WeightSource, config: FGCLIPConfig, metadata: list[str]) -> None:
    for saved in metadata:
        name = unwrap([saved]).popitem()[0]
        if name not in _OPENAI_FACTS:
            continue
        part, field = _OPENAI_FACTS[name]
        value, expected = int(source.tensor(saved)), getattr(getattr(config, part), field)
        if value != expected:
            raise ArchitectureError(
                f"{source.path}: {saved} = {value}, but the config has {part}.{field} = {expected}"
            )


def load_foreign(cls, source: WeightSource, config: FGCLIPConfig, dtype: Any = None) -> tuple[Any, dict]:
    """Build `cls(config)` and fill it from an OpenAI or upstream FG-CLIP source; returns (model, info) with
    transformers' info keys. Shape conflicts raise ArchitectureError naming the saved and our tensor."""
    cov = source.coverage()
    if cov.layout not in FOREIGN:
        raise WeightsFileError(f"{source.path}: the {cov.layout} layout cannot be converted")
    _check_facts(source, config, cov.metadata)
    model = cls(config)
    expected = model.state_dict()
    converted = convert(source, cov)
    rule_of = {rule.target: rule for rule in cov.rules}
    loaded, dropped = {}, []
    for name, tensor in converted.items():
        if name not in expected:  # e.g. the fork's roi_projection with region_head="shared"
            dropped += [cov.saved_name[s] for s in rule_of[name].sources]
            continue
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ArchitectureError(
                f"{source.path}: {rule_of[name].describe()} gives {name} shape {tuple(tensor.shape)}, "
                f"the config expects {tuple(expected[name].shape)}"
            )
        loaded[name] = tensor
    with torch.no_grad():
        model.load_state_dict(loaded, strict=False)
    missing = sorted(set(expected) - set(loaded))
    report = LoadingReport(source=str(source.path), layout=cov.layout, newly_initialized=missing)
    report.consumed = {name: rule_of[name].describe() for name in loaded}
    report.derived = model._derive_new_weights(missing)
    report.unexpected_new = [k for k in missing if not is_expected_new(k)]
    report.missing_sources = {
        k: [cov.saved_name.get(s, s) for s in cov.uncovered_tower.get(k, ())] for k in report.unexpected_new
    }
    report.unused_checkpoint_keys = sorted({*cov.unused, *dropped})
    report.metadata_keys = cov.metadata
    if dtype not in (None, "auto"):
        model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    model.eval()
    model.loading_report = report
    info = {
        "missing_keys": missing,
        "unexpected_keys": report.unused_checkpoint_keys,
        "mismatched_keys": [],
        "error_msgs": [],
    }
    return model, info


def hf_report(model: Any, path: str, info: dict) -> LoadingReport:
    """The report for a checkpoint transformers loaded (names already ours); derives the new heads."""
    missing = sorted(info.get("missing_keys", []))
    report = LoadingReport(source=path, newly_initialized=missing)
    report.derived = model._derive_new_weights(missing)
    report.unexpected_new = [k for k in missing if not is_expected_new(k)]
    report.unused_checkpoint_keys = sorted(info.get("unexpected_keys", []))
    gone = set(missing)
    report.consumed = {k: k for k in model.state_dict() if k not in gone}
    report.layout = FGCLIP if any(is_expected_new(k) for k in report.consumed) else CLIP_HF
    return report


__all__ = ["foreign_source", "hf_report", "load_config", "load_foreign"]
