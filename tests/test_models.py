"""Tests for ajepa.models: shapes, position embeddings, masking isolation, EMA and learnability."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from ajepa.errors import ConfigError
from ajepa.masking import apply_masks
from ajepa.models import (
    ENCODER_SIZES,
    EncoderConfig,
    Predictor,
    PredictorConfig,
    SinCosPosEmbed2d,
    ViTEncoder,
    last_layers,
    mean_of_layers,
    sincos_pos_embed_2d,
)
from ajepa.training.model import AudioJEPA
from ajepa.objectives import ObjectiveConfig, VarianceCovariance, normalize_patches, regression_loss, variance_covariance

GRID = (4, 6)  # (F_p, T_p): non-square on purpose
N = GRID[0] * GRID[1]
MINI = ENCODER_SIZES["mini"]
SMALL_PRED = PredictorConfig(embed_dim=64, depth=2, num_heads=4)


def make_masks(batch: int, k: int, n_tgt: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint random context / target indices, sorted per row, same sizes for all samples."""
    ctx, tgt = [], []
    for _ in range(batch):
        perm = torch.randperm(N, generator=gen)
        tgt.append(perm[: k * n_tgt].reshape(k, n_tgt).sort(dim=-1).values)
        ctx.append(perm[k * n_tgt:].sort().values)
    return torch.stack(ctx), torch.stack(tgt)


def model(objective: str = "jepa", joint: bool = True, seed: int = 0, **enc: object) -> AudioJEPA:
    torch.manual_seed(seed)  # test-local: the library never seeds globally
    return AudioJEPA(replace(MINI, **enc), replace(SMALL_PRED, joint_targets=joint), ObjectiveConfig(name=objective))


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(3, N, MINI.patch_dim, generator=gen)
    ctx, tgt = make_masks(3, k=3, n_tgt=4, gen=gen)
    return tokens, ctx, tgt


# ---------------------------------------------------------------- configs


def test_encoder_config_presets_and_errors() -> None:
    assert (ENCODER_SIZES["tiny"].embed_dim, ENCODER_SIZES["tiny"].depth, ENCODER_SIZES["tiny"].num_heads) == (192, 12, 3)
    cfg = replace(ENCODER_SIZES["small"], patch=[16, 8])
    assert cfg.patch == (16, 8) and cfg.embed_dim == 384 and cfg.patch_dim == 128
    assert ENCODER_SIZES["small"].patch == (16, 16)  # the preset is not modified
    with pytest.raises(ConfigError):
        EncoderConfig(embed_dim=130, num_heads=4)
    with pytest.raises(ConfigError):
        ObjectiveConfig(loss="huber")


def test_latent_objective_keys_are_refused_for_mae_and_defaulted_per_objective() -> None:
    jepa = ObjectiveConfig()
    assert (jepa.loss, jepa.target_layernorm, jepa.target_layers, jepa.position_centring) == (
        "smooth_l1", True, 1, False)
    d2v = ObjectiveConfig(name="data2vec")
    assert (d2v.loss, d2v.target_layernorm, d2v.target_layers) == ("l2", False, None)
    assert ObjectiveConfig(name="mae").loss is None
    with pytest.raises(ConfigError, match="objective.loss applies to jepa and data2vec only"):
        ObjectiveConfig(name="mae", loss="l2")
    with pytest.raises(ConfigError, match="target_layernorm, objective.target_layers apply to jepa and data2vec"):
        ObjectiveConfig(name="mae", target_layernorm=False, target_layers=2)
    with pytest.raises(ConfigError, match="target_layers must be an int"):
        ObjectiveConfig(name="data2vec", target_layers=1.5)


# ---------------------------------------------------------------- position embedding


def test_pos_embed_matches_formula_per_cell_time_major() -> None:
    dim, (f_p, t_p) = 16, (3, 5)
    emb = sincos_pos_embed_2d(dim, (f_p, t_p))
    assert emb.shape == (f_p * t_p, dim)
    omega = [10000 ** (-i / (dim // 4)) for i in range(dim // 4)]
    for f in range(f_p):
        for t in range(t_p):
            want = ([math.sin(f * w) for w in omega] + [math.cos(f * w) for w in omega]
                    + [math.sin(t * w) for w in omega] + [math.cos(t * w) for w in omega])
            torch.testing.assert_close(emb[t * f_p + f], torch.tensor(want), atol=1e-6, rtol=0)


def test_pos_embed_distinct_and_grid_independent_halves() -> None:
    emb = sincos_pos_embed_2d(64, (8, 32))
    dists = torch.cdist(emb, emb) + torch.eye(len(emb)) * 1e3
    assert dists.min() > 1e-3
    # A cell's code does not depend on the grid it sits in: (f, t) of 8x12 equals (f, t) of 8x32.
    short = sincos_pos_embed_2d(64, (8, 12))
    torch.testing.assert_close(short, emb[: 8 * 12])
    cached = SinCosPosEmbed2d(64)
    first = cached((8, 12), torch.device("cpu"), torch.float32)
    assert cached((8, 12), torch.device("cpu"), torch.float32) is first
    torch.testing.assert_close(first, short)
    with pytest.raises(ConfigError):
        sincos_pos_embed_2d(30, (2, 2))


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("objective", ["jepa", "mae"])
@pytest.mark.parametrize("joint", [True, False])
def test_forward_shapes(objective: str, joint: bool, batch) -> None:
    tokens, ctx, tgt = batch
    m = model(objective, joint)
    out = m(tokens, GRID, ctx, tgt)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert out["target_std"].dim() == 0 and out["target_std"] > 0
    assert not out["target_embeddings"].requires_grad
    b, k, n_tgt = tgt.shape
    rows = b * k * n_tgt if objective == "jepa" else ctx.numel()
    assert out["target_embeddings"].shape == (rows, MINI.embed_dim)
    out_dim = MINI.embed_dim if objective == "jepa" else MINI.patch_dim
    z = m.context_encoder(tokens, GRID, keep_idx=ctx)
    assert z.shape == (b, ctx.shape[1], MINI.embed_dim)
    assert m.predictor(z, ctx, tgt, GRID).shape == (b, k, n_tgt, out_dim)


def test_non_square_patch_and_bad_inputs() -> None:
    enc = ViTEncoder(replace(ENCODER_SIZES["mini"], patch=(16, 8)))
    tokens = torch.randn(2, 8 * 3, 128)
    assert enc(tokens, (8, 3)).shape == (2, 24, MINI.embed_dim)
    with pytest.raises(ConfigError, match="values per patch"):
        enc(torch.randn(2, 24, 256), (8, 3))
    with pytest.raises(ConfigError, match="grid"):
        enc(tokens, (8, 4))


def test_apply_masks_gathers_rows() -> None:
    x = torch.randn(2, 7, 3)
    idx = torch.tensor([[[0, 6], [2, 3]], [[1, 1], [5, 4]]])
    out = apply_masks(x, idx)
    assert out.shape == (2, 2, 2, 3)
    for b in range(2):
        torch.testing.assert_close(out[b], x[b][idx[b]])


# ---------------------------------------------------------------- encoder / predictor semantics


def test_keep_all_equals_full_forward(batch) -> None:
    tokens = batch[0]
    enc = model().context_encoder
    keep = torch.arange(N).expand(tokens.shape[0], -1)
    torch.testing.assert_close(enc(tokens, GRID, keep_idx=keep), enc(tokens, GRID), atol=1e-5, rtol=1e-5)


def test_context_encoder_never_sees_target_tokens(batch) -> None:
    tokens, ctx, _ = batch
    enc = model().context_encoder
    outside = torch.ones(tokens.shape[:2], dtype=torch.bool).scatter_(1, ctx, False)
    changed = tokens.clone()
    changed[outside] = torch.randn(int(outside.sum()), tokens.shape[-1]) * 10
    torch.testing.assert_close(enc(changed, GRID, keep_idx=ctx), enc(tokens, GRID, keep_idx=ctx))
    # ...while a change inside the context does change it (the check above can fail).
    changed[~outside] += 1.0
    assert not torch.allclose(enc(changed, GRID, keep_idx=ctx), enc(tokens, GRID, keep_idx=ctx))


def test_joint_and_separate_predictors_agree_for_one_target(batch) -> None:
    tokens, ctx, tgt = batch
    torch.manual_seed(0)
    joint = Predictor(MINI.embed_dim, SMALL_PRED, out_dim=32)
    separate = Predictor(MINI.embed_dim, replace(SMALL_PRED, joint_targets=False), out_dim=32)
    separate.load_state_dict(joint.state_dict())
    z = torch.randn(tokens.shape[0], ctx.shape[1], MINI.embed_dim)
    one = tgt[:, :1]
    torch.testing.assert_close(joint(z, ctx, one, GRID), separate(z, ctx, one, GRID), atol=1e-5, rtol=1e-5)
    # With K > 1 the modes differ: the joint sequence lets mask tokens of different blocks attend each other.
    assert not torch.allclose(joint(z, ctx, tgt, GRID), separate(z, ctx, tgt, GRID), atol=1e-4)


def test_separate_predictor_blocks_are_independent(batch) -> None:
    tokens, ctx, tgt = batch
    torch.manual_seed(0)
    pred = Predictor(MINI.embed_dim, replace(SMALL_PRED, joint_targets=False), out_dim=16)
    z = torch.randn(tokens.shape[0], ctx.shape[1], MINI.embed_dim)
    moved = tgt.clone()
    moved[:, 1] = tgt[:, 2]  # move block 1 only
    a, b = pred(z, ctx, tgt, GRID), pred(z, ctx, moved, GRID)
    torch.testing.assert_close(a[:, 0], b[:, 0])
    assert not torch.allclose(a[:, 1], b[:, 1])


# ---------------------------------------------------------------- target encoder / EMA


def test_target_encoder_gets_no_gradient_and_optimizer_leaves_it(batch) -> None:
    tokens, ctx, tgt = batch
    m = model(drop_path=0.1)
    before = {k: v.clone() for k, v in m.target_encoder.state_dict().items()}
    ctx_before = m.context_encoder.patch_embed.weight.clone()
    opt = torch.optim.AdamW(m.param_groups(0.05), lr=1e-3)
    m.train()
    assert not m.target_encoder.training  # no drop-path on targets
    m(tokens, GRID, ctx, tgt)["loss"].backward()
    assert all(p.grad is None for p in m.target_encoder.parameters())
    assert m.context_encoder.patch_embed.weight.grad is not None
    opt.step()
    for k, v in m.target_encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(m.context_encoder.patch_embed.weight, ctx_before)


def test_update_target_follows_ema_formula() -> None:
    m = model()
    with torch.no_grad():
        for p in m.context_encoder.parameters():
            p.add_(torch.randn_like(p))
    target = [p.clone() for p in m.target_encoder.parameters()]
    online = [p.clone() for p in m.context_encoder.parameters()]
    m.update_target(0.9)
    for got, t, c in zip(m.target_encoder.parameters(), target, online):
        torch.testing.assert_close(got, 0.9 * t + 0.1 * c, atol=1e-6, rtol=1e-6)
    m.update_target(1.0)  # momentum 1 freezes the target
    m.update_target(0.0)  # momentum 0 copies the context encoder
    for got, c in zip(m.target_encoder.parameters(), online):
        torch.testing.assert_close(got, c)
    with pytest.raises(ConfigError):
        m.update_target(1.5)


def test_mae_builds_no_target_encoder(batch) -> None:
    m = model("mae")
    assert m.target_encoder is None
    assert not any(k.startswith("target_encoder.") for k in m.state_dict())
    m.update_target(0.5)  # documented no-op
    patches = normalize_patches(torch.randn(5, 256) * 3 + 2)
    torch.testing.assert_close(patches.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(patches.var(-1, unbiased=False), torch.ones(5), atol=1e-4, rtol=0)


def test_param_groups_split_decay() -> None:
    m = model()
    decay, no_decay = m.param_groups(0.04)
    assert decay["weight_decay"] == 0.04 and no_decay["weight_decay"] == 0.0
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert sorted(ids) == sorted(trainable)  # each trainable parameter exactly once, no target params
    assert all(p.dim() == 2 for p in decay["params"])
    assert any(p is m.predictor.mask_token for p in no_decay["params"])
    assert any(p is m.context_encoder.norm.weight for p in no_decay["params"])


# ---------------------------------------------------------------- learnability


@pytest.mark.parametrize("objective", ["jepa", "mae"])
def test_loss_falls_on_fixed_batch(objective: str, batch) -> None:
    tokens, ctx, tgt = batch
    m = model(objective)
    opt = torch.optim.AdamW(m.param_groups(0.0), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = m(tokens, GRID, ctx, tgt)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        m.update_target(0.99)
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


def test_padding_targets_do_not_count_in_the_loss():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 4, 8, generator=g), torch.randn(2, 3, 4, 8, generator=g)
    keep = torch.rand(2, 3, 4, generator=g) > 0.5
    for kind in ("smooth_l1", "l2", "l1"):
        expected = regression_loss(pred[keep], target[keep], kind)
        torch.testing.assert_close(regression_loss(pred, target, kind, keep), expected)

    model = AudioJEPA(ENCODER_SIZES["mini"], PredictorConfig(embed_dim=64, depth=1, num_heads=4), ObjectiveConfig())
    grid = (2, 6)
    n = grid[0] * grid[1]
    tokens = torch.randn(2, n, 256, generator=g)
    context_idx = torch.tensor([[0, 1, 2, 3]] * 2)
    target_idx = torch.tensor([[[4, 5, 10, 11]]] * 2)  # time columns 2 and 5 (time-major, F_p = 2)
    valid = torch.ones(2, n, dtype=torch.bool)
    with torch.no_grad():
        plain = model(tokens, grid, context_idx, target_idx)["loss"]
        torch.testing.assert_close(model(tokens, grid, context_idx, target_idx, valid)["loss"], plain)
        valid[:, 6:] = False  # the last three time columns are padding: targets 10 and 11 drop out
        assert not torch.allclose(model(tokens, grid, context_idx, target_idx, valid)["loss"], plain)


# ---------------------------------------------------------------- target variants and anti-collapse terms


def test_forward_intermediates_and_layer_means_match_hand_computed_states() -> None:
    torch.manual_seed(0)
    enc = ViTEncoder(replace(MINI, depth=3)).eval()
    tokens = torch.randn(2, N, MINI.patch_dim)
    assert torch.equal(enc.forward_intermediates(tokens, GRID, [3])[0], enc(tokens, GRID))
    x = x0 = enc.patch_embed(tokens) + enc.pos_embed(GRID, tokens.device, tokens.dtype)
    raw, outs = [], []
    for block in enc.blocks:
        x = block(x)
        raw.append(x)
        outs.append(torch.nn.functional.layer_norm(x, x.shape[-1:], eps=1e-6))
    outs[-1] = enc.norm(x)
    states = enc.forward_intermediates(tokens, GRID, last_layers(2, 3))
    torch.testing.assert_close(mean_of_layers(states), (outs[1] + outs[2]) / 2)
    # depth + 1 adds hidden state 0, the patch embedding (with positions).
    embedded = torch.nn.functional.layer_norm(x0, x0.shape[-1:], eps=1e-6)
    states = enc.forward_intermediates(tokens, GRID, last_layers(4, 3))
    torch.testing.assert_close(mean_of_layers(states), (embedded + outs[0] + outs[1] + outs[2]) / 4)
    # Without norm the states are the raw residual stream, the final one before the encoder's LayerNorm.
    for got, want in zip(enc.forward_intermediates(tokens, GRID, [1, 3], norm=False), (raw[0], raw[2])):
        torch.testing.assert_close(got, want)
    with pytest.raises(ConfigError, match="layers must be in 1..4"):
        last_layers(5, 3)
    with pytest.raises(ConfigError, match="ascending"):
        enc.forward_intermediates(tokens, GRID, [2, 1])
    with pytest.raises(ConfigError, match="target_layers"):
        AudioJEPA(replace(MINI, depth=2), SMALL_PRED, ObjectiveConfig(target_layers=4))
    # The targets are the layer-normed mean, for every token.
    m = AudioJEPA(replace(MINI, depth=3), SMALL_PRED, ObjectiveConfig(target_layers=2))
    expected = mean_of_layers(m.target_encoder.forward_intermediates(tokens, GRID, [2, 3]))
    expected = torch.nn.functional.layer_norm(expected, expected.shape[-1:])
    torch.testing.assert_close(m.targets(tokens, GRID, None), expected)


def test_variance_covariance_terms() -> None:
    gen = torch.Generator().manual_seed(0)
    white = torch.randn(4096, 8, generator=gen) * 2.0  # spread > 1, uncorrelated: both terms near zero
    var, cov = variance_covariance(white)
    assert var.item() == 0.0 and cov.item() < 0.05
    collapsed = torch.randn(4096, 1, generator=gen).expand(-1, 8) * 0.5  # one direction, small spread
    var, cov = variance_covariance(collapsed)
    assert var.item() == pytest.approx(0.5, abs=0.02)
    assert cov.item() == pytest.approx(7 * 0.25**2, rel=0.1)  # 56 off-diagonal entries of 0.25^2, / D = 8


def test_variance_covariance_weights_raise_the_loss_and_reach_the_encoder(batch) -> None:
    tokens, ctx, tgt = batch
    torch.manual_seed(0)
    plain = AudioJEPA(MINI, SMALL_PRED, ObjectiveConfig())
    reg = AudioJEPA(MINI, SMALL_PRED, ObjectiveConfig(variance_weight=1.0, covariance_weight=0.04))
    reg.load_state_dict(plain.state_dict())
    base = plain(tokens, GRID, ctx, tgt)["loss"]
    out = reg(tokens, GRID, ctx, tgt)["loss"]
    assert out > base
    out.backward()
    assert reg.context_encoder.patch_embed.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError):
        ObjectiveConfig(variance_weight=-1.0)


def test_variance_covariance_ignores_padding_tokens(batch) -> None:
    tokens, ctx, tgt = batch
    torch.manual_seed(0)
    m = AudioJEPA(MINI, SMALL_PRED, ObjectiveConfig(variance_weight=1.0, covariance_weight=0.04))
    valid = torch.ones(tokens.shape[:2], dtype=torch.bool)
    valid[1, N // 2:] = False  # sample 1: the second half of its tokens is padding
    z = m.context_encoder(tokens, GRID, keep_idx=ctx)
    kept = valid.gather(1, ctx)
    assert 2 <= kept.sum() < kept.numel()  # the batch really mixes audio and padding in the context
    var, cov = variance_covariance(z[kept])
    out = m(tokens, GRID, ctx, tgt, valid)
    torch.testing.assert_close(out["loss"], out["loss_terms"]["prediction"] + var + 0.04 * cov)
    torch.testing.assert_close(out["loss_terms"]["variance"], var)
    # Only padding in the context: nothing to regularise, and no error.
    loss, terms = VarianceCovariance(1.0, 0.04)(z, torch.zeros_like(kept))
    assert loss.item() == 0.0 and terms["covariance"].item() == 0.0


def test_objectives_and_models_import_in_either_order() -> None:
    # ajepa.objectives and ajepa.models use each other's modules; a user may import either first.
    for module in ("ajepa.objectives", "ajepa.objectives.jepa", "ajepa.models.vit", "ajepa.models"):
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
