"""Models: patch-token ViT encoder, predictor and the Audio-JEPA / MAE pre-training wrapper."""

from typing import TYPE_CHECKING, Any

from ajepa.models.pos_embed import SinCosPosEmbed2d, sincos_pos_embed_2d
from ajepa.models.predictor import Predictor
from ajepa.models.sizes import ENCODER_SIZES, EncoderConfig, PredictorConfig, encoder_config
from ajepa.models.vit import ViTEncoder, apply_masks

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ below imports it
    from ajepa.models.jepa import AudioJEPA

__all__ = [
    "AudioJEPA",
    "ENCODER_SIZES",
    "EncoderConfig",
    "Predictor",
    "PredictorConfig",
    "SinCosPosEmbed2d",
    "ViTEncoder",
    "apply_masks",
    "encoder_config",
    "sincos_pos_embed_2d",
]


def __getattr__(name: str) -> Any:
    # AudioJEPA is imported on first use: it needs ajepa.objectives, whose modules need ajepa.models.vit, so an
    # eager import here made `import ajepa.objectives` (before ajepa.models) fail on the circle.
    if name == "AudioJEPA":
        from ajepa.models.jepa import AudioJEPA

        return AudioJEPA
    raise AttributeError(f"module 'ajepa.models' has no attribute {name!r}")
