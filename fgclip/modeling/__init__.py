"""FG-CLIP model: towers, region features, losses, memory bank."""

from transformers import AutoConfig, AutoModel

from fgclip.config import FGCLIPConfig
from fgclip.modeling.model import FGCLIPModel, FGCLIPOutput, LoadingReport, load_config

# so AutoConfig/AutoTokenizer/AutoModel recognise saved fgclip checkpoints (model_type "fgclip")
AutoConfig.register(FGCLIPConfig.model_type, FGCLIPConfig, exist_ok=True)
AutoModel.register(FGCLIPConfig, FGCLIPModel, exist_ok=True)

__all__ = ["FGCLIPModel", "FGCLIPOutput", "LoadingReport", "load_config"]
