"""FG-CLIP model: towers, region features, losses, memory bank."""

from fgclip.modeling.model import FGCLIPModel, FGCLIPOutput, LoadingReport, load_config

__all__ = ["FGCLIPModel", "FGCLIPOutput", "LoadingReport", "load_config"]
