"""`python -m fgclip.train` / `fgclip-train`: arguments -> checks -> model, data, Trainer -> train -> save.

Everything that can refuse a run does so before step 0 with a message and an exit code (`errors.py`), never
a traceback: impossible values, an output folder another run holds, stale or finished checkpoints, data
the region losses cannot use. Only `--help` is answered without importing torch or transformers.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path

from fgclip.train.errors import TrainingRefused

logger = logging.getLogger("fgclip.train")


def _setup_logging(train_args) -> None:
    level = logging.INFO if train_args.process_index == 0 else logging.WARNING  # only rank 0 talks
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout
    )
    logger.setLevel(level)
    logging.getLogger("fgclip").setLevel(level)


def _resume_decision(train_args, model_config) -> str | None:
    """None: fresh start; else the checkpoint to resume from. May move `output_dir` to a fresh subfolder
    (resume_policy ignore). Raises TrainingRefused on stale checkpoints or a finished run. Decided by the
    main process (it may move unreadable checkpoints aside) and shared with every rank."""
    from fgclip.train.ranks import decided_on_main
    from fgclip.train.resume import CONFIG_FIELDS, plan_resume

    expected = {f: getattr(model_config, f) for f in CONFIG_FIELDS}
    plan = decided_on_main(
        train_args.process_index,
        lambda: plan_resume(
            train_args.output_dir,
            train_args.resume_policy,
            expected,
            train_args.max_steps,
            train_args.num_train_epochs,
        ),
    )
    if train_args.process_index == 0:
        for note in plan.notes:
            (logger.warning if "unreadable" in note or "ignore" in note else logger.info)(note)
    train_args.output_dir = plan.output_dir
    return plan.resume_from


def _audit_command(data_args, config) -> str:
    vision = config.vision_config
    parts = ["fgdiag", "data-audit", data_args.data_path, "--policy", data_args.box_policy]
    parts += ["--grid-size", str(vision.image_size // vision.patch_size)]
    parts += ["--image-root", data_args.image_root] if data_args.image_root else []
    parts += ["--format", data_args.data_format] if data_args.data_format != "auto" else []
    return shlex.join(parts)


def _build_data(data_args, config, tokenizer):
    """Dataset and collator; an unusable box supply or a `--box_policy error` hit stops here (exit 2)."""
    from fgclip.data.errors import BoxValidationError, DataFormatError
    from fgclip.data.module import RegionSupplyError, build_data_module, check_region_supply

    vision = config.vision_config
    try:
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
        regions_needed = config.region_loss_weight > 0 or config.hard_negative_loss_weight > 0
        check_region_supply(
            data, regions_needed=regions_needed, max_dropped_ratio=data_args.max_dropped_box_ratio
        )
    except BoxValidationError as exc:
        raise TrainingRefused(f"{exc} [--box_policy error]") from None
    except DataFormatError as exc:
        raise TrainingRefused(str(exc)) from None
    except RegionSupplyError as exc:
        raise TrainingRefused(
            f"{data_args.data_path}: {exc}.\n  See every dropped box: {_audit_command(data_args, config)}\n"
            "  Fix the boxes (--box_policy clip repairs out-of-range ones), or raise --max_dropped_box_ratio "
            "(1 turns the share check off); to train without regions: --region_loss_weight 0 "
            "--hard_negative_loss_weight 0."
        ) from None
    return data


def _load_model(model_cls, path: str, config):
    """The model; an unreadable, hostile or incomplete weights source stops here (exit 2, no traceback)."""
    from fgclip.weights.errors import ArchitectureError, MissingWeightsError, WeightsFileError

    try:
        return model_cls.from_pretrained(path, config=config)
    except (WeightsFileError, ArchitectureError, MissingWeightsError) as exc:
        raise TrainingRefused(f"{path}: {exc}") from None


def build_trainer(model_args, data_args, train_args, callbacks=()):
    """Model, data and FGCLIPTrainer from parsed arguments (after the resume decision); plugin callbacks
    from the `fgclip.callbacks` entry points come first, then `callbacks`."""
    from transformers import AutoTokenizer

    from fgclip.modeling import FGCLIPModel, load_config
    from fgclip.train.bf16_storage import storage_callbacks
    from fgclip.train.plugins import plugin_callbacks
    from fgclip.train.trainer import FGCLIPTrainer

    config = load_config(model_args.model_name_or_path, model_args.config_overrides())
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name_or_path or model_args.model_name_or_path
    )
    data = _build_data(data_args, config, tokenizer)  # before the model: bad data stops in seconds
    model = _load_model(FGCLIPModel, model_args.model_name_or_path, config)
    if train_args.process_index == 0:
        logger.info(model.loading_report.summary())
    if train_args.gradient_checkpointing:
        train_args.gradient_checkpointing_kwargs = {"use_reentrant": False}
    if train_args.compile_text_tower:
        model.text_model.compile(dynamic=True)  # in place: parameter names (and checkpoints) unchanged
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


def _parse(argv: list[str] | None):
    """Arguments with their sources, checked; logging set up."""
    from fgclip.train.args import parse_with_sources
    from fgclip.train.help import prog_name
    from fgclip.train.validate import check_arguments

    model_args, data_args, train_args, sources = parse_with_sources(argv, prog=prog_name())
    _setup_logging(train_args)
    check_arguments(data_args, train_args, sources)
    return model_args, data_args, train_args, sources


def _resolve(model_args, data_args, train_args, sources) -> str | None:
    """Resolve the embedded preset, validate the model configuration, apply the resume guard."""
    from fgclip.config import FGCLIPConfigError
    from fgclip.modeling import load_config

    if train_args.preset == "embedded":
        from fgclip.train.embedded import prepare_embedded
        from fgclip.train.threads import configure_torch_threads

        configure_torch_threads()  # before the pretraining stage prepare_embedded may run
        paths = prepare_embedded()
        model_args.model_name_or_path = model_args.model_name_or_path or paths["model_name_or_path"]
        data_args.data_path = data_args.data_path or paths["data_path"]
        data_args.image_root = data_args.image_root or paths["image_root"]
    if not model_args.model_name_or_path or not data_args.data_path:
        raise TrainingRefused("need --model_name_or_path and --data_path (or --preset embedded)")
    if Path(model_args.model_name_or_path).is_file() and not model_args.tokenizer_name_or_path:
        raise TrainingRefused(
            f"--model_name_or_path {model_args.model_name_or_path} is a weights file (OpenAI CLIP) without a "
            "tokenizer: pass --tokenizer_name_or_path (a CLIP tokenizer folder or hub id)"
        )
    overrides = model_args.config_overrides()
    try:
        config = load_config(model_args.model_name_or_path, overrides)
    except FGCLIPConfigError as exc:
        if exc.field in overrides:
            where = f"--{exc.field} from {sources.get(exc.field, 'the command line')}"
        else:
            where = f"{model_args.model_name_or_path}/config.json"
        raise TrainingRefused(f"{exc} ({where})") from None
    return _resume_decision(train_args, config)


def prepare(argv: list[str] | None = None):
    """Parse arguments, resolve the embedded preset, apply the resume guard. Returns the three argument
    objects and the checkpoint to resume from (None for a fresh start). Raises TrainingRefused."""
    model_args, data_args, train_args, sources = _parse(argv)
    resume = _resolve(model_args, data_args, train_args, sources)
    return model_args, data_args, train_args, resume


def _train(model_args, data_args, train_args, resume, callbacks) -> None:
    import torch

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


def main(argv: list[str] | None = None, callbacks=()) -> int:
    """Exit code: 0 trained (or nothing left to train), 2 refused before step 0 (the message says why)."""
    from fgclip.train.help import print_help, prog_name, wants_help

    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print_help(argv)
        return 0
    try:
        model_args, data_args, train_args, sources = _parse(argv)
        from fgclip.train.lock import OutputDirLock
        from fgclip.train.ranks import decided_on_main

        lock = OutputDirLock(train_args.output_dir)
        decided_on_main(train_args.process_index, lock.acquire)  # held by the main process only
        try:
            resume = _resolve(model_args, data_args, train_args, sources)
            _train(model_args, data_args, train_args, resume, callbacks)
        finally:
            lock.release()
    except TrainingRefused as exc:
        stream = sys.stdout if exc.exit_code == 0 else sys.stderr
        print(f"{prog_name()}: {exc}", file=stream, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
