"""The embedded default: synthetic data rendered to disk and a tiny CLIP built and saved locally (no hub).

Generated once per folder (a `READY` marker records the settings); later runs reuse it. Everything goes
through the real loaders: images/videos on disk, a tokenizer loaded with AutoTokenizer, the model with
`FGCLIPModel.from_pretrained` from a plain `CLIPModel.save_pretrained` directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

EMBEDDED_VERSION = 1
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
    # a CLIP checkpoint ships with logit_scale = ln 100; the tiny one does too, like the models users fine-tune
    config = CLIPConfig(
        text_config=text, vision_config=vision, projection_dim=WIDTH, logit_scale_init_value=4.6052
    )
    model = CLIPModel(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def prepare_embedded(root: str | Path | None = None, seed: int = 0) -> dict[str, str]:
    """Generate (or reuse) the embedded data and tiny CLIP; returns data_path, image_root, model dir."""
    from filelock import FileLock  # a dependency of transformers (huggingface_hub)

    from fgclip.data.synthetic import generate_embedded
    from fgclip.data.tokenizer import build_tokenizer

    root = Path(root) if root is not None else default_root()
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "READY"
    settings = {"version": EMBEDDED_VERSION, "seed": seed, "image_size": IMAGE_SIZE}
    paths = {
        "data_path": str(root / "data" / "images.json"),
        "image_root": str(root / "data"),
        "model_name_or_path": str(root / "tiny-clip"),
    }
    # torchrun starts every rank at once: one generates, the others wait for its marker
    with FileLock(str(root / "generate.lock")):
        if marker.exists() and json.loads(marker.read_text()).get("settings") == settings:
            return json.loads(marker.read_text())["paths"]
        info = generate_embedded(root / "data", seed=seed, image_size=IMAGE_SIZE)
        paths["data_path"] = str(info.images_json)
        paths["video_data_path"] = str(info.videos_json) if info.videos_json else ""
        tokenizer = build_tokenizer(root / "tokenizer", info.texts())
        build_tiny_clip(Path(paths["model_name_or_path"]), tokenizer, seed=seed)
        marker.write_text(json.dumps({"settings": settings, "paths": paths}, indent=2))
    return paths
