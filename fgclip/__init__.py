"""fgclip: FG-CLIP-style fine-grained CLIP training on transformers (standalone; never imports fgdiag)."""

from fgclip.config import FGCLIPConfig

__all__ = ["FGCLIPConfig", "FGCLIPModel"]


def __getattr__(name: str):
    if name == "FGCLIPModel":
        from fgclip.modeling import FGCLIPModel

        return FGCLIPModel
    raise AttributeError(name)
