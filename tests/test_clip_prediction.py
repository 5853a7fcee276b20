"""Tests for the clip-level term (ajepa.objectives.ClipPrediction) and its wiring into AudioJEPA."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ajepa.errors import ConfigError
from ajepa.models import ENCODER_SIZES, AudioJEPA, PredictorConfig
from ajepa.objectives import ClipPrediction, ObjectiveConfig
from ajepa.objectives.clip import masked_mean

GRID = (4, 6)
N = GRID[0] * GRID[1]
MINI = ENCODER_SIZES["mini"]
PRED = PredictorConfig(embed_dim=64, depth=2, num_heads=4)


def masks(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ctx, tgt = [], []
    for _ in range(batch):
        perm = torch.randperm(N, generator=gen)
        tgt.append(perm[:8].reshape(2, 4).sort(dim=-1).values)
        ctx.append(perm[8:].sort().values)
    return torch.stack(ctx), torch.stack(tgt)


def test_masked_mean_ignores_invalid_tokens() -> None:
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    valid = torch.tensor([[True, True, False]])
    torch.testing.assert_close(masked_mean(x, valid), torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(masked_mean(x, None), x.mean(1))
    # A clip with no valid token gives zeros rather than NaN.
    assert torch.equal(masked_mean(x, torch.zeros(1, 3, dtype=torch.bool)), torch.zeros(1, 2))


def test_clip_target_is_the_layer_normed_mean_of_the_valid_targets() -> None:
    torch.manual_seed(0)
    term = ClipPrediction(8, "l2")
    dense = torch.randn(2, 5, 8)
    valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
    target = torch.nn.functional.layer_norm(masked_mean(dense, valid), (8,), eps=1e-6)
    context = torch.randn(2, 3, 8)
    expected = torch.nn.functional.mse_loss(term.head(context.mean(1)), target)
    torch.testing.assert_close(term(context, None, dense, valid), expected)
    # Changing a padded target token leaves the loss as it is; changing a real one does not.
    changed = dense.clone()
    changed[1, 4, 0] += 50.0
    torch.testing.assert_close(term(context, None, changed, valid), expected)
    changed[1, 0, 0] += 50.0  # one dimension: layer-norm would undo a shift of all
    assert not torch.allclose(term(context, None, changed, valid), expected)


def test_clip_weight_adds_a_term_that_trains_the_context_encoder_and_head() -> None:
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(3, N, MINI.patch_dim, generator=gen)
    ctx, tgt = masks(3, gen)
    torch.manual_seed(0)
    plain = AudioJEPA(MINI, PRED, ObjectiveConfig())
    torch.manual_seed(0)
    with_clip = AudioJEPA(MINI, PRED, ObjectiveConfig(clip_weight=2.0))
    assert plain.clip_prediction is None and "clip_prediction.head.weight" in with_clip.state_dict()
    missing = with_clip.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["clip_prediction.head.bias", "clip_prediction.head.weight"]
    base, out = plain(tokens, GRID, ctx, tgt), with_clip(tokens, GRID, ctx, tgt)
    assert "clip" not in base["loss_terms"]
    torch.testing.assert_close(out["loss_terms"]["prediction"], base["loss_terms"]["prediction"])
    torch.testing.assert_close(out["loss"], base["loss"] + 2.0 * out["loss_terms"]["clip"])
    out["loss"].backward()
    assert with_clip.clip_prediction.head.weight.grad.abs().sum() > 0
    assert with_clip.target_encoder.patch_embed.weight.grad is None
    # The term alone reaches the context encoder.
    with_clip.zero_grad()
    term = with_clip.clip_prediction(with_clip.context_encoder(tokens, GRID, keep_idx=ctx), None,
                                     torch.randn(3, N, MINI.embed_dim), None)
    term.backward()
    assert with_clip.context_encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_clip_weight_is_checked() -> None:
    with pytest.raises(ConfigError, match="clip_weight"):
        ObjectiveConfig(clip_weight=-0.5)
    with pytest.raises(ConfigError, match="jepa only"):
        ObjectiveConfig(name="mae", clip_weight=1.0)
