"""Model size presets and the configuration dataclasses of the encoder and predictor."""

from __future__ import annotations

from dataclasses import dataclass

from ajepa.errors import ConfigError
from ajepa.validation import check_fields, check_range
from ajepa.paths import config_dir


# Bounds on what a config (a user's, or an untrusted model file's) may ask for, checked before anything is built:
# far above any model trained here (ViT-H is 1280 wide and 32 deep) and far below what would exhaust memory.
MAX_WIDTH = 4096
MAX_DEPTH = 64
MAX_HEADS = 64
MAX_MLP_RATIO = 16.0
MAX_PATCH = 128


@dataclass
class EncoderConfig:
    """A ViT encoder over time-frequency patch tokens.

    ``patch`` is ``(patch_f, patch_t)``; ``embed_dim`` must split into whole heads and into the four
    sin/cos quarters of the 2-D position embedding.
    """

    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    patch: tuple[int, int] = (16, 16)
    drop_path: float = 0.0

    def __post_init__(self) -> None:
        # Hydra and JSON hand lists over; a tuple keeps equality and hashing stable.
        check_fields(self, "EncoderConfig")
        try:
            patch = tuple(self.patch)
            ok = len(patch) == 2 and all(not isinstance(p, bool) and int(p) == p and 1 <= p <= MAX_PATCH
                                         for p in patch)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"EncoderConfig.patch must be two ints in 1..{MAX_PATCH} (patch_f, patch_t), "
                              f"got {self.patch!r}")
        self.patch = tuple(int(p) for p in patch)  # type: ignore[assignment]
        _check_width("EncoderConfig", self.embed_dim, self.num_heads, self.depth, self.mlp_ratio)
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"EncoderConfig.drop_path must be in [0, 1), got {self.drop_path}")

    @property
    def patch_dim(self) -> int:
        """Length of one flattened patch vector, ``patch_f * patch_t``."""
        return self.patch[0] * self.patch[1]


@dataclass
class PredictorConfig:
    """The narrow ViT predictor.

    ``joint_targets=True`` puts the mask tokens of all K target blocks into one sequence per sample
    (cheaper); ``False`` repeats the context once per block as I-JEPA does.
    """

    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 6
    mlp_ratio: float = 4.0
    joint_targets: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "PredictorConfig")
        _check_width("PredictorConfig", self.embed_dim, self.num_heads, self.depth, self.mlp_ratio)


def _check_width(owner: str, embed_dim: int, num_heads: int, depth: int, mlp_ratio: float) -> None:
    check_range(f"{owner}.embed_dim", embed_dim, 4, MAX_WIDTH)
    check_range(f"{owner}.depth", depth, 1, MAX_DEPTH)
    check_range(f"{owner}.num_heads", num_heads, 1, MAX_HEADS)
    check_range(f"{owner}.mlp_ratio", mlp_ratio, 1e-3, MAX_MLP_RATIO)
    if embed_dim < 4 or embed_dim % 4:
        raise ConfigError(f"{owner}.embed_dim must be a positive multiple of 4 (2-D sin-cos), got {embed_dim}")
    if num_heads < 1 or embed_dim % num_heads:
        raise ConfigError(f"{owner}.embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
    if depth < 1:
        raise ConfigError(f"{owner}.depth must be >= 1, got {depth}")
    if mlp_ratio <= 0:
        raise ConfigError(f"{owner}.mlp_ratio must be > 0, got {mlp_ratio}")


def _encoder_presets() -> dict[str, EncoderConfig]:
    """The encoder of each model preset, read from ``configs/model/<size>.yaml``: the presets' one source, which
    ``python -m ajepa.train model=<size>`` composes too."""
    import yaml  # PyYAML, a dependency of hydra-core's omegaconf

    presets = {}
    for path in sorted((config_dir() / "model").glob("*.yaml")):
        encoder = dict(yaml.safe_load(path.read_text(encoding="utf-8"))["encoder"])
        presets[path.stem] = EncoderConfig(**{**encoder, "patch": tuple(encoder.get("patch", (16, 16)))})
    return presets


# Read-only presets: dataclasses.replace(ENCODER_SIZES[name], ...) gives a private copy to modify.
ENCODER_SIZES: dict[str, EncoderConfig] = _encoder_presets()
