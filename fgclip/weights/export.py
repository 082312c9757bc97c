"""FGCLIPModel (a checkpoint of any supported layout, or a live model) as a plain transformers CLIPModel
folder.

For users who only want the fine-tuned CLIP: the towers, both projections and the global scale, saved with
`CLIPModel.save_pretrained`, plus the tokenizer and image processor when the source folder has them. FG-CLIP's
additions (long-caption table and projection, region / hard-negative scales, roi head, temporal pooling,
memory bank) have no place in a CLIPModel; `fgclip_export.json` lists them by name instead of dropping them
silently. An existing non-empty DST is refused: nothing the user owns is written over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "fgclip_export.json"
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.json")


@dataclass
class ExportResult:
    dst: Path
    kept: int
    dropped: list[str] = field(default_factory=list)
    tokenizer: str | None = None
    image_processor: bool = False

    def summary(self) -> str:
        extras = [
            x for x in (self.tokenizer and "tokenizer", self.image_processor and "image processor") if x
        ]
        return (
            f"wrote {self.dst}: CLIPModel with {self.kept} tensors"
            + (f" + {' + '.join(extras)}" if extras else "")
            + f"; {len(self.dropped)} FG-CLIP tensors not part of CLIPModel (listed in {MANIFEST})"
        )


def clip_config_of(model: Any):
    """The transformers CLIPConfig of an FGCLIPModel's towers (global scale = the model's current value)."""
    from transformers import CLIPConfig

    config = model.config
    return CLIPConfig(
        text_config=config.text_config.to_dict(),
        vision_config=config.vision_config.to_dict(),
        projection_dim=config.projection_dim,
        logit_scale_init_value=float(model.logit_scale.detach().float()),
    )


def _has_tokenizer(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in TOKENIZER_FILES)


def export_clip(src: Any, dst: str | Path, tokenizer: str | Path | None = None) -> ExportResult:
    """Write `src` (a path `FGCLIPModel.from_pretrained` accepts, or a live FGCLIPModel) to `dst` as a
    CLIPModel folder. `tokenizer` defaults to the source folder's own tokenizer, if it has one."""
    import torch
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    from fgclip.modeling import FGCLIPModel

    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(
            f"{dst}: exists and is not empty; export writes only into a new or empty folder"
        )
    source_path = None if isinstance(src, torch.nn.Module) else Path(str(src)).expanduser()
    if (
        source_path is not None
        and not source_path.exists()
        and (source_path.is_absolute() or str(src)[:1] == ".")
    ):
        raise FileNotFoundError(f"{source_path}: no such file or folder")
    model = src if source_path is None else FGCLIPModel.from_pretrained(str(source_path))
    state = model.state_dict()
    clip = CLIPModel(clip_config_of(model)).to(model.dtype)
    wanted = clip.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(f"the model lacks CLIPModel tensors: {', '.join(missing[:8])}")
    with torch.no_grad():
        clip.load_state_dict({k: state[k] for k in wanted}, strict=True)
    dst.mkdir(parents=True, exist_ok=True)
    clip.save_pretrained(dst)
    result = ExportResult(dst, len(wanted), sorted(k for k in state if k not in wanted))
    tokenizer_from = tokenizer or (
        source_path if source_path is not None and _has_tokenizer(source_path) else None
    )
    if tokenizer_from is not None:
        AutoTokenizer.from_pretrained(str(tokenizer_from)).save_pretrained(dst)
        result.tokenizer = str(tokenizer_from)
    if source_path is not None and (source_path / "preprocessor_config.json").is_file():
        CLIPImageProcessor.from_pretrained(str(source_path)).save_pretrained(dst)
        result.image_processor = True
    manifest = {
        "source": str(source_path) if source_path is not None else f"live {type(model).__name__}",
        "kept": result.kept,
        "dropped": result.dropped,
        "why": (
            "FG-CLIP additions with no CLIPModel counterpart; load the source with FGCLIPModel to use them"
        ),
        "tokenizer": result.tokenizer,
    }
    (dst / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return result


__all__ = ["MANIFEST", "ExportResult", "clip_config_of", "export_clip"]
