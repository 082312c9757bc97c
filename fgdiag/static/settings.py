"""Turn raw training arguments into the effective settings the rules judge, one dialect at a time.

The same intent is spelled three ways: our `fgclip.train` arguments (docs/CONTRACTS.md), upstream FG-CLIP v1's
`train_fgclip.py` (scales copied from the loaded checkpoint, no bank, scales decayed) and the fgclip-vad
fork's
(scales cloned from `logit_scale_init_value` before the weights load, a 128-entry bank switched on after 200
forward passes, scales decayed, only the global scale clamped). Every effective value is a `Field` that says
where it came from, so a finding can cite a line or state the assumption it rests on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fgdiag.facts import CLIP_FROM_SCRATCH_SCALE, LN_100
from fgdiag.facts.aliases import HEAD_INIT_KEYS
from fgdiag.facts.checkpoint import CheckpointInfo
from fgdiag.facts.deepspeed import CLIPPING, FP16, DeepSpeedConfig
from fgdiag.facts.plan import COUNT_LIMIT
from fgdiag.facts.settings import Settings
from fgdiag.facts.values import ConfigValues, Field, as_bool, as_float, as_int
from fgdiag.static.deepspeed import find_deepspeed, read_deepspeed
from fgdiag.static.known_options import fgclip_defaults, trainer_defaults, unknown_keys

HF_DEFAULTS = {  # read from the installed transformers when it is there (known_options); else these
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "num_train_epochs": 3.0,
    "max_steps": -1,
    "learning_rate": 5e-5,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
}
FORK_MARKERS = {"is_video", "auto_resume", "use_lora", "lora_enable", "lora_r", "memory_bank_per_class"}
UPSTREAM_MARKERS = {
    "from_openai",
    "add_box_loss",
    "use_hard_neg",
    "base_model",
    "train_use_word_size",
    "image_folder",
    "text_model_lr",
    "log_scale",
    "base_seq_length",
    "max_anns",
}
PRETRAINED_NAME = re.compile(r"(?i)(clip|^vit-[bhlg]|^rn\d|openai|laion|fg-clip)")
FORK_BANK = 128
FORK_WARMUP_FORWARDS = 200


def detect_dialect(values: ConfigValues, entry: str = "") -> str:
    explicit = values.text("dialect")
    if explicit in {"fgclip", "fork", "upstream"}:
        return explicit
    if entry:
        if "fgclip.train" in entry or entry.endswith("fgclip-train"):
            return "fgclip"
        if entry.endswith(("train_fgclip.py", "train_mem.py", "train_fgclip_region_normal.py")):
            return "fork" if values.flag("is_video") or "fgclip-vad" in entry else "upstream"
    names = values.names()
    if names & FORK_MARKERS:
        return "fork"
    if names & UPSTREAM_MARKERS:
        return "upstream"
    return "fgclip"


def _first(values: ConfigValues, names: tuple[str, ...]) -> Field | None:
    for name in names:
        if name in values:
            return values.get(name)
    return None


def _assumed(anchor: str, name: str, value: object, why: str) -> Field:
    return Field(name, value, anchor, None, default=True, why=why)


def _source(settings: Settings) -> None:
    """The pretrained source's global scale: read from its weights, else assumed ln 100 for a named CLIP."""
    values, anchor = settings.values, settings.anchor
    settings.source = values.get("model_name_or_path")
    info = settings.source_info
    if info is not None and "logit_scale" in info.scales:
        scale = info.scales["logit_scale"]
        settings.source_scale = Field(
            "logit_scale", scale.value, str(info.path), None, default=True, why=f"read from {info.path}"
        )
    elif settings.source is not None and settings.source.why.startswith("preset"):
        settings.source_scale = _assumed(
            anchor,
            "logit_scale",
            LN_100,
            f"{settings.source.why}: fgclip.train.pretrain exports it at ln 100",
        )
    elif settings.source is not None and PRETRAINED_NAME.search(str(settings.source.value)):
        name = settings.source.value
        settings.source_scale = _assumed(
            anchor,
            "logit_scale",
            LN_100,
            f"assumed: {name!r} names a released CLIP, whose logit_scale is ln 100 = 4.6052",
        )
        settings.notes.append(
            f"{settings.source.location}: {name!r} is not readable here; its logit_scale is assumed to be "
            "4.6052 (ln 100), as in every released CLIP checkpoint"
        )
    glob = _first(values, ("global_logit_scale_init", "logit_scale_init_value"))
    settings.global_init = glob or _assumed(
        anchor, "logit_scale_init_value", CLIP_FROM_SCRATCH_SCALE, "CLIPConfig default"
    )


def _heads(settings: Settings) -> None:
    """Initial region / hard-negative scales: explicit fields win, else what each dialect's train() does."""
    values, anchor, dialect = settings.values, settings.anchor, settings.dialect
    init = values.get("logit_scale_init_value")
    for head, keys in HEAD_INIT_KEYS.items():
        explicit = _first(values, keys)
        if explicit is not None:
            settings.heads[head] = explicit
        elif dialect == "upstream" and settings.source_scale is not None:
            settings.heads[head] = Field(
                head,
                settings.source_scale.value,
                anchor,
                None,
                default=True,
                why="upstream train() copies the loaded logit_scale into both heads",
            )
        elif dialect == "fork" and settings.source_info is not None and settings.source_scale is not None:
            settings.heads[head] = Field(
                head,
                settings.source_scale.value,
                anchor,
                None,
                default=True,
                why="the fork copies the loaded directory's logit_scale",
            )
        elif dialect == "fork":
            settings.heads[head] = init or _assumed(
                anchor, head, LN_100, "fork default logit_scale_init_value 4.6052 (configuration_clip.py)"
            )
        elif dialect == "upstream":
            settings.heads[head] = init or _assumed(
                anchor, head, CLIP_FROM_SCRATCH_SCALE, "CLIPConfig default logit_scale_init_value"
            )
        else:
            settings.heads[head] = _assumed(anchor, head, LN_100, "FGCLIPConfig default (ln 100)")


def _clamp(settings: Settings) -> None:
    """logit_scale_max (ours, default ln 100); the fork and upstream leave the head scales unclamped."""
    if settings.dialect != "fgclip":
        why = (
            "the fork clamps only the global scale; region and hard-negative scales are unclamped"
            if settings.dialect == "fork"
            else "upstream FG-CLIP clamps no logit scale"
        )
        settings.clamp = _assumed(settings.anchor, "logit_scale_max", None, why)
        return
    given = settings.values.get("logit_scale_max")
    if given is None:
        settings.clamp = _assumed(settings.anchor, "logit_scale_max", LN_100, "FGCLIPConfig default (ln 100)")
        return
    off = (
        given.value is None
        or given.value is False
        or (
            isinstance(given.value, str)
            and given.value.strip().lower() in {"none", "null", "false", "off", ""}
        )
    )
    settings.clamp = Field(given.name, None if off else as_float(given), given.path, given.line)


def _optimizer(settings: Settings) -> None:
    """Decay and freezing of the scales; fgclip.train never decays them (its `logit_scales` group)."""
    values = settings.values
    decay = values.get("decay_logit_scales")
    if decay is not None and as_bool(decay):
        settings.decayed = Field(
            decay.name, "decay_logit_scales = true puts the scales under weight decay", decay.path, decay.line
        )
    elif settings.dialect != "fgclip":
        wd = settings.fields["weight_decay"]
        if (as_float(wd) or 0.0) > 0:
            settings.decayed = Field(
                wd.name,
                f"weight_decay = {wd.value} applies to the logit scales: the FG-CLIP trainer decays every "
                "parameter outside LayerNorm and bias",
                wd.path,
                wd.line,
                wd.default,
            )
    freeze = values.get("freeze_logit_scales")
    scale_lr = values.get("logit_scale_learning_rate")
    lora = _first(values, ("use_lora", "lora_enable", "lora_r"))
    groups = values.get("param_groups")
    if freeze is not None and as_bool(freeze):
        settings.frozen = Field(freeze.name, "freeze_logit_scales = true", freeze.path, freeze.line)
    elif scale_lr is not None and as_float(scale_lr) == 0:
        settings.frozen = Field(scale_lr.name, "logit_scale_learning_rate = 0", scale_lr.path, scale_lr.line)
    elif (
        lora is not None
        and lora.value not in (False, 0, "False", "false", "0")
        and "logit_scale" not in str(values.value("modules_to_save", ""))
    ):
        settings.frozen = Field(
            lora.name,
            "LoRA without modules_to_save leaves the logit scales (and the temporal modules) frozen at "
            "their initial values",
            lora.path,
            lora.line,
        )
    elif (
        groups is not None
        and isinstance(groups.value, list)
        and "logit_scale" not in json.dumps(groups.value)
    ):
        settings.frozen = Field(
            groups.name,
            "no parameter group holds the logit scales (expected a 'logit_scales' group)",
            groups.path,
            groups.line,
        )


def _bank(settings: Settings) -> None:
    """Bank size and warm-up with its unit: optimizer steps (ours) or forward passes (the fork, the seed)."""
    values, anchor = settings.values, settings.anchor
    size = values.get("memory_bank_size")
    forwards = values.get("memory_bank_warmup_forward_passes")
    steps = values.get("memory_bank_warmup_steps")
    if settings.dialect == "fork":
        box_loss = values.get("add_box_loss")
        if box_loss is not None and as_bool(box_loss) is False and size is None:
            return
        settings.bank_size = size or _assumed(anchor, "memory_bank_size", FORK_BANK, "fork: 2 queues of 64")
        if not settings.entry.endswith("train_fgclip_region_normal.py"):
            settings.bank_effective = min(as_int(settings.bank_size) or 0, 64)
            settings.notes.append(
                "fork: train_fgclip.py passes no region_labels, so every entry goes to the normal queue: at "
                "most 64 queued negatives"
            )
        if steps is not None and forwards is None:
            settings.notes.append(
                f"{steps.location}: the fork never reads memory_bank_warmup_steps; it switches the bank on "
                "at training_steps >= 200 forward passes"
            )
        settings.warmup = forwards or _assumed(
            anchor,
            "memory_bank_warmup_forward_passes",
            FORK_WARMUP_FORWARDS,
            "fork: training_steps >= 200 (fgclip.py:684)",
        )
        settings.warmup_unit = "forward"
        return
    if settings.dialect == "upstream" and size is None:
        return
    settings.bank_size = size or _assumed(anchor, "memory_bank_size", 0, "FGCLIPConfig default")
    if forwards is not None:
        settings.warmup, settings.warmup_unit = forwards, "forward"
    else:
        settings.warmup = steps or _assumed(anchor, "memory_bank_warmup_steps", 0, "FGCLIPConfig default")


def _heads_new(settings: Settings) -> None:
    """Heads the source does not provide, which start from fresh weights (FGD501 wants them on their own
    lr)."""
    values = settings.values
    if settings.dialect == "fork":
        settings.new_heads = ["roi_projection", "temporal_transformer", "temporal_attention"]
        return
    if settings.dialect == "upstream":
        return
    info, source = settings.source_info, settings.source
    has_long = info is not None and "text_long_projection.weight" in {
        k.replace("text_filip_projection", "text_long_projection") for k in info.weights.shapes
    }
    named_fg = source is not None and "fg-clip" in str(source.value).lower()
    if not has_long and not named_fg:
        settings.new_heads += ["text_long_projection", "long_position_embedding"]
    if values.text("region_head") == "roi_projection":
        settings.new_heads.append("roi_projection")
    if values.text("temporal_pooling") == "attention":
        settings.new_heads.append("temporal_pool")


def _profile(settings: Settings, table: Field) -> None:
    """`targets = "ucf"` (or a path): region-loss target points and the bank deadline of a fgdiag.targets
    profile."""
    from fgdiag.targets import TargetError, get_profile

    try:
        profile = get_profile(str(table.value))
    except TargetError as exc:
        raise table.error(str(exc)) from None
    except (OSError, ValueError) as exc:  # a "path" too long or holding a NUL
        raise table.error(f"not a target profile name or readable file ({exc.__class__.__name__})") from None
    where = f"{table.location} ({profile.name})"
    for point in profile.points:
        if point.below and point.metric.endswith("/region") and "loss" in point.metric:
            settings.targets.append((point.step, point.threshold, where))
    if profile.memory_bank_active_by is not None:
        settings.bank_active_by = (profile.memory_bank_active_by, where)


def _targets(settings: Settings) -> None:
    """Region-loss targets: `target_region_loss = x`, `[targets] region_loss = {step = value}` or a
    profile."""
    values = settings.values
    flat = values.get("target_region_loss")
    if flat is not None and (value := as_float(flat)) is not None:
        settings.targets.append((None, value, flat.location))
    table = values.get("targets")
    if table is not None and isinstance(table.value, str):
        _profile(settings, table)
        return
    spec = table.value.get("region_loss") if table is not None and isinstance(table.value, dict) else None
    if spec is None or table is None:
        return
    items: list = []
    if isinstance(spec, dict):
        items = list(spec.items())
    elif isinstance(spec, list):
        items = [tuple(p) for p in spec if isinstance(p, (list, tuple)) and len(p) == 2]
    elif isinstance(spec, (int, float)):
        items = [(None, spec)]
    for step, target in items:
        try:
            settings.targets.append((None if step is None else int(step), float(target), table.location))
        except (TypeError, ValueError):
            raise table.error(f"region_loss target {step!r}: {target!r} is not step = number") from None


def _deepspeed(settings: Settings, given: DeepSpeedConfig | None) -> None:
    """The DeepSpeed config the run uses (given on the command line, else the one `deepspeed` names): a
    missing gradient_clipping means no clipping, an explicit fp16 is the precision the run trains in."""
    named = settings.values.get("deepspeed")
    if given is None and named is not None:
        bases = [Path(named.path).parent, Path(named.path).parent.parent] if named.path else []
        found = find_deepspeed(named, [*bases, Path.cwd()])
        if found is None:
            settings.notes.append(
                f"{named.location}: DeepSpeed config {named.value!r} not readable here; gradient clipping "
                "unknown"
            )
            return
        given = read_deepspeed(found)
    settings.deepspeed = given
    if given is None:
        return
    if given.get(CLIPPING) is None:
        settings.fields["max_grad_norm"] = Field("max_grad_norm", 0.0, given.path, None, why=given.path)
        settings.notes.append(f"{given.path}: no gradient_clipping key, so DeepSpeed does not clip gradients")
    fp16 = given.get(FP16)
    if fp16 is not None and fp16.value is True:
        settings.fields["fp16"] = Field("fp16", True, fp16.path, fp16.line)


def resolve(
    values: ConfigValues,
    *,
    anchor: str,
    entry: str = "",
    source_info: CheckpointInfo | None = None,
    deepspeed: DeepSpeedConfig | None = None,
) -> Settings:
    """Effective settings of the run described by `values` (merged config and/or script arguments)."""
    settings = Settings(detect_dialect(values, entry), anchor, values, entry, source_info=source_info)
    settings.defaults = {**trainer_defaults(), **fgclip_defaults()}
    if settings.dialect == "fgclip":
        settings.unknown = unknown_keys(values)
    for name, fallback in HF_DEFAULTS.items():
        default = settings.defaults.get(name, fallback)
        settings.fields[name] = values.get(name) or _assumed(anchor, name, default, "transformers default")
    world = _first(values, ("world_size", "nproc_per_node", "num_gpus"))
    if world is None or as_int_or_none(world) is None:
        if world is not None:
            settings.notes.append(
                f"{world.location}: world size not resolvable ({world.value}); assumed 1, so the planned "
                "optimizer steps are an upper bound"
            )
        world = _assumed(anchor, "world_size", 1, "assumed: one process")
    settings.fields["world_size"] = world
    for name in ("head_learning_rate", "logit_scale_learning_rate", "num_train_samples", "text_model_lr"):
        if name in values:
            settings.fields[name] = values.get(name)  # type: ignore[assignment]
    for name in ("fp16", "bf16"):
        settings.fields[name] = values.get(name) or _assumed(anchor, name, False, "transformers default")
    boxes = _first(values, ("max_boxes_per_sample", "max_anns"))
    count = as_int(boxes) if boxes else None
    settings.boxes_per_sample = count if count is not None and 1 <= count <= COUNT_LIMIT else 4
    _source(settings)
    _heads(settings)
    _clamp(settings)
    _optimizer(settings)
    _bank(settings)
    _heads_new(settings)
    _targets(settings)
    _deepspeed(settings, deepspeed)
    return settings


def as_int_or_none(f: Field) -> int | None:
    """World size may hold launcher text such as `process count $NUM_GPUS`: None instead of an error."""
    if isinstance(f.value, bool):
        return None
    if isinstance(f.value, int):
        return f.value
    if isinstance(f.value, str) and f.value.strip().isdigit():
        return int(f.value)
    return None
