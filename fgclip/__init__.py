"""fgclip: FG-CLIP-style fine-grained CLIP training on transformers (standalone; never imports fgdiag).

Exports are lazy so that `import fgclip.data` (and the CLI commands that read data) does not pay for
importing torch and transformers.
"""

__all__ = ["FGCLIPConfig", "FGCLIPModel"]


def __getattr__(name: str):
    if name == "FGCLIPConfig":
        from fgclip.config import FGCLIPConfig

        return FGCLIPConfig
    if name == "FGCLIPModel":
        from fgclip.modeling import FGCLIPModel

        return FGCLIPModel
    raise AttributeError(name)
