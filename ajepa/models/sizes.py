"""Model size presets and the configuration dataclasses of the encoder and predictor."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ajepa.errors import ConfigError
from ajepa.paths import config_dir


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
        self.patch = tuple(int(p) for p in self.patch)  # type: ignore[assignment]
        if len(self.patch) != 2 or min(self.patch) < 1:
            raise ConfigError(f"EncoderConfig.patch must be two positive ints (patch_f, patch_t), got {self.patch}")
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
        _check_width("PredictorConfig", self.embed_dim, self.num_heads, self.depth, self.mlp_ratio)


def _check_width(owner: str, embed_dim: int, num_heads: int, depth: int, mlp_ratio: float) -> None:
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


# Read-only presets: use encoder_config() to get a private copy to modify.
ENCODER_SIZES: dict[str, EncoderConfig] = _encoder_presets()


def encoder_config(size: str, **overrides: object) -> EncoderConfig:
    """A copy of the preset ``size`` with ``overrides`` applied, e.g. ``encoder_config("tiny", patch=(16, 8))``.

    Raises ``ConfigError`` for an unknown size or field name.
    """
    if size not in ENCODER_SIZES:
        raise ConfigError(f"unknown encoder size {size!r}; choose one of {sorted(ENCODER_SIZES)}")
    unknown = set(overrides) - {f.name for f in fields(EncoderConfig)}
    if unknown:
        raise ConfigError(f"unknown EncoderConfig field(s) {sorted(unknown)}")
    return replace(ENCODER_SIZES[size], **overrides)
