"""`python -m fgclip.train` / `fgclip-train`: arguments -> checks -> model, data, Trainer -> train -> save."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger("fgclip.train")

FP16_REFUSAL = (
    "fp16 is refused: with logit scale exp(4.6052) = 100 the similarity logits reach +-100 and "
    "fp16 softmax/exp overflow (FG-CLIP's README reports NaN). Use --bf16 true on GPU, fp32 on CPU."
)


def _setup_logging(train_args) -> None:
    level = logging.INFO if train_args.process_index == 0 else logging.WARNING  # only rank 0 talks
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout
    )
    logger.setLevel(level)
    logging.getLogger("fgclip").setLevel(level)


def _resume_decision(train_args, model_config) -> str | bool | None:
    """None: fresh start; True: resume newest checkpoint. Raises SystemExit on stale checkpoints."""
    from fgclip.train.resume import CONFIG_FIELDS, checkpoints, refusal_message, stale_checkpoints

    found = checkpoints(train_args.output_dir)
    if not found:
        return None
    expected = {f: getattr(model_config, f) for f in CONFIG_FIELDS}
    stale = stale_checkpoints(train_args.output_dir, expected)
    if train_args.resume_policy == "ignore":
        if stale or found:
            fresh = Path(train_args.output_dir) / f"fresh-{time.strftime('%Y%m%d-%H%M%S')}"
            logger.warning(
                "resume_policy=ignore: %d existing checkpoint(s) left untouched; this run writes to %s",
                len(found),
                fresh,
            )
            train_args.output_dir = str(fresh)
        return None
    if stale:
        raise SystemExit(refusal_message(train_args.output_dir, stale))
    if train_args.resume_policy in ("refuse", "resume"):
        logger.info("resuming from %s (its settings match the configuration)", found[-1])
        return str(found[-1])
    raise SystemExit(f"--resume_policy {train_args.resume_policy!r}: use refuse, ignore or resume")


def build_trainer(model_args, data_args, train_args, callbacks=()):
    """Model, data and FGCLIPTrainer from parsed arguments (after the resume decision); plugin callbacks
    from the `fgclip.callbacks` entry points come first, then `callbacks`."""
    from transformers import AutoTokenizer

    from fgclip.data.module import build_data_module
    from fgclip.modeling import FGCLIPModel, load_config
    from fgclip.train.bf16_storage import storage_callbacks
    from fgclip.train.plugins import plugin_callbacks
    from fgclip.train.trainer import FGCLIPTrainer

    config = load_config(model_args.model_name_or_path, model_args.config_overrides())
    model = FGCLIPModel.from_pretrained(model_args.model_name_or_path, config=config)
    if train_args.process_index == 0:
        logger.info(model.loading_report.summary())
    if train_args.gradient_checkpointing:
        train_args.gradient_checkpointing_kwargs = {"use_reentrant": False}
    if train_args.compile_text_tower:
        model.text_model.compile(dynamic=True)  # in place: parameter names (and checkpoints) unchanged
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name_or_path or model_args.model_name_or_path
    )
    vision = config.vision_config
    data = build_data_module(
        data_args.data_path,
        tokenizer=tokenizer,
        image_root=data_args.image_root,
        data_format=data_args.data_format,
        box_policy=data_args.box_policy,
        image_size=vision.image_size,
        max_boxes_per_sample=config.max_boxes_per_sample,
        num_hard_negatives=config.num_hard_negatives,
        num_frames=config.num_frames,
        grid_size=vision.image_size // vision.patch_size,
        long_text_max_positions=config.long_text_max_positions,
    )
    if train_args.process_index == 0:
        logger.info(
            "data: %d %s samples from %s; %s",
            len(data.train_dataset),
            data.data_format,
            data_args.data_path,
            data.report.summary(),
        )
    trainer = FGCLIPTrainer(
        model=model, args=train_args, train_dataset=data.train_dataset, data_collator=data.collator
    )
    # plugin callbacks go right after DefaultFlowCallback, so what they add to the log dict reaches the
    # report_to integrations and the printed log line
    extra = [*plugin_callbacks(train_args, model), *storage_callbacks(train_args), *callbacks]
    for callback in reversed(extra):
        trainer.callback_handler.callbacks.insert(1, callback)
    return trainer


def prepare(argv: list[str] | None = None):
    """Parse arguments, resolve the embedded preset, apply the resume guard. Returns the three argument
    objects and the checkpoint to resume from (None for a fresh start)."""
    from fgclip.modeling import load_config
    from fgclip.train.args import parse_args

    model_args, data_args, train_args = parse_args(argv)
    _setup_logging(train_args)
    if train_args.fp16:
        raise SystemExit(FP16_REFUSAL)
    if train_args.preset == "embedded":
        from fgclip.train.embedded import prepare_embedded
        from fgclip.train.threads import configure_torch_threads

        configure_torch_threads()  # before the pretraining stage prepare_embedded may run
        paths = prepare_embedded()
        model_args.model_name_or_path = model_args.model_name_or_path or paths["model_name_or_path"]
        data_args.data_path = data_args.data_path or paths["data_path"]
        data_args.image_root = data_args.image_root or paths["image_root"]
    if not model_args.model_name_or_path or not data_args.data_path:
        raise SystemExit("need --model_name_or_path and --data_path (or --preset embedded)")
    config = load_config(model_args.model_name_or_path, model_args.config_overrides())
    resume = _resume_decision(train_args, config)
    return model_args, data_args, train_args, resume


def main(argv: list[str] | None = None, callbacks=()) -> int:
    import torch

    model_args, data_args, train_args, resume = prepare(argv)
    trainer = build_trainer(model_args, data_args, train_args, callbacks)
    torch.manual_seed(train_args.seed)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.save_state()
    checksums = trainer.memory_bank_checksums()
    if train_args.process_index == 0 and checksums is not None:
        agree = max(checksums) - min(checksums) <= 1e-6 * max(1.0, abs(checksums[0]))
        (logger.info if agree else logger.warning)(
            "memory bank checksums per rank: %s (%s)", checksums, "identical" if agree else "RANKS DISAGREE"
        )
        Path(train_args.output_dir, "memory_bank_ranks.json").write_text(
            json.dumps({"checksums": checksums, "identical": agree}) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
