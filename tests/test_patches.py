"""patchify / grid_shape / valid_tokens: round trip, documented token order, masks."""

from __future__ import annotations

import pytest
import torch

from torch import Tensor

from ajepa.errors import AudioInputError, ConfigError
from ajepa.features.patches import _check_patch, grid_shape, patchify, valid_tokens



# The inverse of patchify, for the round trip only (the package never needs it).
def unpatchify(tokens: Tensor, grid: tuple[int, int], patch: tuple[int, int] = (16, 16)) -> Tensor:
    """Inverse of :func:`patchify`: ``(B, F_p * T_p, pf * pt)`` -> ``(B, F_p * pf, T_p * pt)`` (padding kept)."""
    pf, pt = _check_patch(patch)
    grid_f, grid_t = grid
    if tokens.ndim != 3 or tokens.shape[1] != grid_f * grid_t or tokens.shape[2] != pf * pt:
        raise AudioInputError(
            f"unpatchify expects (B, {grid_f * grid_t}, {pf * pt}) for grid {grid} and patch {patch}, "
            f"got {tuple(tokens.shape)}"
        )
    batch = tokens.shape[0]
    return (
        tokens.reshape(batch, grid_t, grid_f, pf, pt)
        .permute(0, 2, 3, 1, 4)  # (B, F_p, pf, T_p, pt)
        .reshape(batch, grid_f * pf, grid_t * pt)
    )


def test_grid_shape_rounds_up() -> None:
    assert grid_shape(128, 998) == (8, 63)
    assert grid_shape(128, 1024) == (8, 64)
    assert grid_shape(130, 17, patch=(16, 8)) == (9, 3)


@pytest.mark.parametrize(("n_mels", "frames", "patch"), [(128, 101, (16, 16)), (40, 37, (8, 4)), (32, 32, (16, 16))])
def test_round_trip_with_zero_padding(n_mels: int, frames: int, patch) -> None:
    spec = torch.randn(2, n_mels, frames, generator=torch.Generator().manual_seed(0))
    tokens, grid = patchify(spec, patch)
    assert grid == grid_shape(n_mels, frames, patch)
    assert tokens.shape == (2, grid[0] * grid[1], patch[0] * patch[1])
    restored = unpatchify(tokens, grid, patch)
    assert restored.shape == (2, grid[0] * patch[0], grid[1] * patch[1])
    assert torch.equal(restored[:, :n_mels, :frames], spec)
    assert restored[:, n_mels:].eq(0).all() and restored[:, :, frames:].eq(0).all()


def test_token_order_is_time_major_and_patch_is_freq_major() -> None:
    n_mels, frames, (pf, pt) = 12, 10, (4, 3)
    f = torch.arange(n_mels).view(-1, 1).expand(n_mels, frames)
    t = torch.arange(frames).view(1, -1).expand(n_mels, frames)
    spec = (1000 * f + t + 1).float().unsqueeze(0)  # value encodes (f, t); +1 keeps zero for padding
    tokens, (grid_f, grid_t) = patchify(spec, (pf, pt))
    assert (grid_f, grid_t) == (3, 4)
    for cell_t in range(grid_t):
        for cell_f in range(grid_f):
            token = tokens[0, cell_t * grid_f + cell_f]
            for k in range(pf * pt):
                i_f, i_t = divmod(k, pt)
                row, col = cell_f * pf + i_f, cell_t * pt + i_t
                expected = 1000 * row + col + 1 if col < frames else 0
                assert token[k].item() == expected


def test_padding_tail_is_a_sequence_tail() -> None:
    spec = torch.ones(1, 32, 20)  # 2 x 2 grid with 16x16 patches; second time column is mostly padding
    tokens, grid = patchify(spec)
    assert grid == (2, 2)
    assert tokens[0, :2].eq(1).all()  # first time column: fully real
    assert tokens[0, 2:].eq(0).sum() == 2 * 16 * 12  # second column: 12 of 16 frames are padding


def test_valid_tokens_marks_columns() -> None:
    frame_valid = torch.zeros(3, 40, dtype=torch.bool)
    frame_valid[0, :40] = True
    frame_valid[1, :17] = True  # one frame into the second column
    frame_valid[2, :16] = True  # exactly the first column
    grid = grid_shape(32, 40)  # (2, 3)
    valid = valid_tokens(frame_valid, grid)
    assert valid.shape == (3, 6) and valid.dtype == torch.bool
    assert valid.tolist() == [[True] * 6, [True] * 4 + [False] * 2, [True] * 2 + [False] * 4]


def test_errors() -> None:
    with pytest.raises(AudioInputError):
        patchify(torch.zeros(128, 100))
    with pytest.raises(AudioInputError):
        valid_tokens(torch.ones(1, 100, dtype=torch.bool), (8, 2))
    with pytest.raises(ConfigError):
        grid_shape(128, 100, patch=(0, 16))
