"""Models: patch-token ViT encoder, predictor and the Audio-JEPA / MAE pre-training wrapper."""

from ajepa.models.jepa import AudioJEPA, ObjectiveConfig, apply_masks, normalize_patches
from ajepa.models.pos_embed import SinCosPosEmbed2d, sincos_pos_embed_2d
from ajepa.models.predictor import Predictor
from ajepa.models.sizes import ENCODER_SIZES, EncoderConfig, PredictorConfig, encoder_config
from ajepa.models.vit import ViTEncoder

__all__ = [
    "AudioJEPA",
    "ENCODER_SIZES",
    "EncoderConfig",
    "ObjectiveConfig",
    "Predictor",
    "PredictorConfig",
    "SinCosPosEmbed2d",
    "ViTEncoder",
    "apply_masks",
    "encoder_config",
    "normalize_patches",
    "sincos_pos_embed_2d",
]
