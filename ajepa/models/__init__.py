"""Networks only: the patch-token ViT encoder, the predictor, position embeddings and the size presets.

The pre-training wrapper that combines them with an objective is :class:`ajepa.training.model.AudioJEPA`.
"""

from ajepa.models.pos_embed import SinCosPosEmbed2d, sincos_pos_embed_2d
from ajepa.models.predictor import Predictor
from ajepa.models.sizes import ENCODER_SIZES, EncoderConfig, PredictorConfig
from ajepa.models.vit import ViTEncoder, last_layers, mean_of_layers

__all__ = [
    "ENCODER_SIZES",
    "EncoderConfig",
    "Predictor",
    "PredictorConfig",
    "SinCosPosEmbed2d",
    "ViTEncoder",
    "last_layers",
    "mean_of_layers",
    "sincos_pos_embed_2d",
]
