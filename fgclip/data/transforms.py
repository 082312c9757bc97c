"""Image preprocessing: upstream's squash-resize to the model's square size, then CLIP's mean/std.

Squashing ignores the aspect ratio, so normalised boxes stay valid without any box transform. The steps are
torchvision's; the constants are transformers' OpenAI CLIP mean/std (what CLIPImageProcessor applies).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import v2
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


def image_transform(image_size: int) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> float tensor (3, image_size, image_size), CLIP-normalised."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((image_size, image_size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(OPENAI_CLIP_MEAN), std=list(OPENAI_CLIP_STD)),
        ]
    )


__all__ = ["image_transform"]
