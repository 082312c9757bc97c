"""The embedded default: synthetic data rendered to disk and a tiny CLIP pretrained on it (no hub).

Built once per folder under one file lock: the data (marker `READY`), then the pretraining stage
(`fgclip.train.pretrain`, marker `tiny-clip/PRETRAINED` holding the recipe, so a changed recipe rebuilds the
model and keeps the data). Everything goes through the real loaders: images/videos on disk, a tokenizer
loaded with AutoTokenizer, the model with `FGCLIPModel.from_pretrained` from a plain
`CLIPModel.save_pretrained` directory, as a user's `openai/clip-vit-base-patch16` would be.

`python -m fgclip.train.embedded` builds (or finds) it and prints the paths as JSON.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from fgclip.train.pretrain import PretrainRecipe

logger = logging.getLogger("fgclip.embedded")

EMBEDDED_VERSION = 2  # 2: short region captions only (no false-negative floor)
REGION_CAPTIONS = "short"
PRETRAIN_STEPS_ENV = "FGCLIP_PRETRAIN_STEPS"
IMAGE_SIZE = 64
PATCH_SIZE = 8
WIDTH = 64


def default_root() -> Path:
    return (
        Path(os.environ.get("FGCLIP_HOME", Path.home() / ".cache" / "fgclip"))
        / f"embedded-v{EMBEDDED_VERSION}"
    )


def build_tiny_clip(out_dir: Path, tokenizer, seed: int = 0) -> Path:
    """A 2-layer CLIP sized for 2 CPU cores, saved as a plain transformers CLIP checkpoint + tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from fgclip.config import LN_100

    torch.manual_seed(seed)
    text = dict(
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=4 * WIDTH,
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=4 * WIDTH,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    # the random start of the pretraining stage; its export ships with logit_scale = ln 100 like a CLIP
    config = CLIPConfig(
        text_config=text, vision_config=vision, projection_dim=WIDTH, logit_scale_init_value=LN_100
    )
    model = CLIPModel(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def default_recipe(steps: int | None = None) -> PretrainRecipe:
    """The pretraining recipe; its step count from `steps`, else $FGCLIP_PRETRAIN_STEPS (tests use a few)."""
    if steps is None:
        raw = os.environ.get(PRETRAIN_STEPS_ENV, "").strip()
        try:
            steps = int(raw) if raw else PretrainRecipe.steps
        except ValueError:
            raise SystemExit(f"{PRETRAIN_STEPS_ENV}={raw!r}: expected a whole number of steps") from None
    if steps < 0:
        raise SystemExit(f"pretraining steps must be >= 0, got {steps}")
    return PretrainRecipe(steps=steps)


def _marked(marker: Path, expected: dict) -> dict | None:
    """The marker's content when it exists and records exactly `expected` settings."""
    if not marker.exists():
        return None
    content = json.loads(marker.read_text())
    return content if content.get("settings") == expected else None


def prepare_embedded(
    root: str | Path | None = None, seed: int = 0, recipe: PretrainRecipe | None = None
) -> dict[str, str]:
    """Generate (or reuse) the embedded data and the pretrained tiny CLIP; returns data_path, image_root,
    model_name_or_path (+ video_data_path)."""
    from filelock import FileLock  # a dependency of transformers (huggingface_hub)

    root = Path(root) if root is not None else default_root()
    root.mkdir(parents=True, exist_ok=True)
    recipe = recipe or default_recipe()
    data_settings = {
        "version": EMBEDDED_VERSION,
        "seed": seed,
        "image_size": IMAGE_SIZE,
        "region_captions": REGION_CAPTIONS,
    }
    model_settings = {"data": data_settings, "recipe": recipe.key()}
    model_dir = root / "tiny-clip"
    # torchrun (or fgdiag run's two arms) start at once: one builds, the others wait for its markers
    with FileLock(str(root / "generate.lock")):
        data = _marked(root / "READY", data_settings)
        if data is None:
            data = {"settings": data_settings, "paths": _build_data(root, seed)}
            (root / "READY").write_text(json.dumps(data, indent=2))
        paths = {**data["paths"], "model_name_or_path": str(model_dir)}
        if _marked(model_dir / "PRETRAINED", model_settings) is None:
            from fgclip.train.pretrain import pretrain

            logger.info(
                "pretraining the tiny CLIP (%d steps, once per machine) into %s", recipe.steps, model_dir
            )
            init_dir = Path(data["paths"]["init_model"])
            pretrain(init_dir, model_dir, paths["data_path"], paths["image_root"], recipe)
            (model_dir / "PRETRAINED").write_text(json.dumps({"settings": model_settings}, indent=2))
    return paths


def _build_data(root: Path, seed: int) -> dict[str, str]:
    from fgclip.data.synthetic import generate_embedded
    from fgclip.data.tokenizer import build_tokenizer

    info = generate_embedded(root / "data", seed=seed, image_size=IMAGE_SIZE, region_captions=REGION_CAPTIONS)
    tokenizer = build_tokenizer(root / "tokenizer", info.texts())
    init_dir = build_tiny_clip(root / "tiny-clip-init", tokenizer, seed=seed)
    return {
        "data_path": str(info.images_json),
        "image_root": str(root / "data"),
        "video_data_path": str(info.videos_json) if info.videos_json else "",
        "init_model": str(init_dir),
    }


def main(argv: list[str] | None = None) -> int:
    """Build or find the embedded default; print its paths as JSON (`fgdiag run` calls this first)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fgclip.train.embedded", description=main.__doc__)
    parser.add_argument("--root", default=None, help="cache folder (default: $FGCLIP_HOME/embedded-vN)")
    parser.add_argument("--pretrain_steps", type=int, default=None, help="default: the recipe's (400)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    from fgclip.train.threads import configure_torch_threads

    configure_torch_threads()
    print(json.dumps(prepare_embedded(args.root, recipe=default_recipe(args.pretrain_steps)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
