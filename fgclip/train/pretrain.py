"""The pretraining stage of the embedded default: a tiny CLIP trained on the embedded images, exported as
a plain transformers `CLIPModel` folder whose logit scale is ln 100, so that fine-tuning starts where a user
fine-tuning `openai/clip-vit-base-patch16` starts (aligned towers, cosines in a narrow band, scale 100).

The seed's failure lives in fine-tuning such a model: from a random init a low region scale is harmless
(embeddings spread to +-1), from a pretrained CLIP it caps the logits at +-14 over a narrow cosine band.

Recipe (chosen by measurement, `benchmarks/pretrain_cosines.py`): global (short caption) and region losses
at a fixed, high scale exp(6.0) = 403, which packs matched and unmatched cosines into a band like a real
CLIP's; a global-only recipe at scale 100 gives a band 2-3x wider and barely aligned regions. A plain
PyTorch loop (no Trainer): it runs inside the first training process, whose log the diagnostics read, so
it must print nothing that looks like a training log line.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("fgclip.pretrain")

HARD_KEYS = ("hard_input_ids", "hard_mask")


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that decides the pretrained weights; a change (of `version` too) rebuilds the cache."""

    steps: int = 400
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    scale: float = 6.0  # raw, fixed for the whole stage; the export sets ln 100
    global_short_weight: float = 1.0
    global_long_weight: float = 0.0
    region_weight: float = 1.0
    seed: int = 0
    version: int = 1

    def key(self) -> dict[str, Any]:
        return asdict(self)


def _overrides(recipe: PretrainRecipe) -> dict[str, Any]:
    return {
        "global_logit_scale_init": recipe.scale,
        "finegrained_logit_scale_init": recipe.scale,
        "hardneg_logit_scale_init": recipe.scale,
        "logit_scale_max": recipe.scale,
        "global_short_loss_weight": recipe.global_short_weight,
        "global_long_loss_weight": recipe.global_long_weight,
        "region_loss_weight": recipe.region_weight,
        "hard_negative_loss_weight": 0.0,
        "memory_bank_size": 0,
        "region_head": "shared",  # regions through visual_projection: what the export keeps
    }


def _batches(loader):
    """Endless batches over epochs, without the hard-negative texts the stage does not use."""
    for batch in itertools.chain.from_iterable(itertools.repeat(loader)):
        yield {k: v for k, v in batch.items() if k not in HARD_KEYS}


def train_stage(init_dir: Path, data_path: str, image_root: str, recipe: PretrainRecipe):
    """Train an FGCLIPModel loaded from the random CLIP in `init_dir`; returns it (in eval mode) and the
    objective of every step."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer, get_cosine_schedule_with_warmup

    from fgclip.data.module import build_data_module, data_kwargs_from_config
    from fgclip.modeling import FGCLIPModel, load_config
    from fgclip.train.optim import build_param_groups

    torch.manual_seed(recipe.seed)
    config = load_config(str(init_dir), _overrides(recipe))
    model = FGCLIPModel.from_pretrained(str(init_dir), config=config)
    with torch.no_grad():
        for scale in model.logit_scales().values():  # the checkpoint's own global scale would win
            scale.fill_(recipe.scale)
            scale.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(str(init_dir))
    kwargs = data_kwargs_from_config(config)
    data = build_data_module(data_path, tokenizer=tokenizer, image_root=image_root, **kwargs)
    loader = DataLoader(
        data.train_dataset,
        batch_size=recipe.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=data.collator,
        generator=torch.Generator().manual_seed(recipe.seed),
    )
    groups = build_param_groups(model, recipe.learning_rate, recipe.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=recipe.learning_rate)
    schedule = get_cosine_schedule_with_warmup(optimizer, recipe.warmup_steps, recipe.steps)
    model.train()
    losses: list[float] = []
    start = last = time.monotonic()
    for step, batch in zip(range(1, recipe.steps + 1), _batches(loader), strict=False):
        out = model(**batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(out.loss.item())  # a CPU stage: the read costs nothing
        now = time.monotonic()
        if now - last >= 10 or step == recipe.steps:
            last = now
            logger.info(
                "pretraining the tiny CLIP: %d/%d, objective %.3f, %.0f s",
                step,
                recipe.steps,
                losses[-1],
                now - start,
            )
    return model.eval(), losses


def export_clip(model, init_dir: Path, out_dir: Path) -> Path:
    """Save the towers and projections as a plain `CLIPModel` with logit_scale = ln 100 (+ tokenizer)."""
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from fgclip.config import LN_100

    clip = CLIPModel(CLIPConfig.from_pretrained(str(init_dir)))
    trained = model.state_dict()
    state = {k: trained[k] for k in clip.state_dict() if k != "logit_scale"}
    state["logit_scale"] = torch.tensor(LN_100)
    clip.load_state_dict(state, strict=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    clip.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(str(init_dir)).save_pretrained(out_dir)
    return out_dir


def pretrain(init_dir: Path, out_dir: Path, data_path: str, image_root: str, recipe: PretrainRecipe) -> Path:
    """Pretrain from `init_dir` and export to `out_dir`."""
    model, _ = train_stage(Path(init_dir), data_path, image_root, recipe)
    return export_clip(model, Path(init_dir), Path(out_dir))


__all__ = ["PretrainRecipe", "export_clip", "pretrain", "train_stage"]
