"""Tests for ajepa.masking: invariants of every mask, reachability, determinism, fallbacks, curriculum."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from ajepa.errors import AudioInputError, ConfigError
from ajepa.masking import (
    MaskCollator,
    batch_seed,
    build_masker,
    MaskingConfig,
    Masks,
    TimeFrequencyBlockMasker,
    curriculum_probability,
)
from ajepa.masking.blocks import random_equal_subset
from ajepa.masking.config import BLOCK_STRATEGIES


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cells(idx: torch.Tensor, n_f: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-major token index -> (freq row, time column)."""
    return idx % n_f, idx // n_f


def check_invariants(masks: Masks, grid: tuple[int, int], batch: int, cfg: MaskingConfig) -> None:
    n_f, n_t = grid
    ctx, tgt = masks.context_idx, masks.target_idx
    assert ctx.dtype == torch.int64 and tgt.dtype == torch.int64
    assert ctx.shape[0] == batch and tgt.shape[:2] == (batch, cfg.num_targets)
    assert ctx.shape[1] >= max(1, cfg.min_context) and tgt.shape[2] >= 1
    for idx in (ctx, tgt):
        assert idx.min() >= 0 and idx.max() < n_f * n_t
    assert (ctx[:, 1:] > ctx[:, :-1]).all(), "context must be sorted and unique"
    assert (tgt[..., 1:] > tgt[..., :-1]).all(), "each target block must be sorted and unique"
    for b in range(batch):
        context = set(ctx[b].tolist())
        for k in range(cfg.num_targets):
            block = tgt[b, k]
            assert context.isdisjoint(block.tolist()), f"sample {b} block {k} overlaps the context"
            f, t = cells(block, n_f)
            # A block is a full rectangle: its bounding box holds exactly its cells.
            box = (f.max() - f.min() + 1) * (t.max() - t.min() + 1)
            assert box == block.numel()


GRIDS = [(8, 1), (8, 2), (8, 13), (8, 32), (8, 100), (4, 1000)]


def feasible_cfg(strategy: str, grid: tuple[int, int]) -> MaskingConfig:
    # min_context as large as the smallest grids allow, so the fallback paths also run.
    n_f, n_t = grid
    min_context = min(10, n_f * n_t - max(n_f, n_t) if strategy == "curriculum" else n_f * n_t // 4)
    return MaskingConfig(strategy=strategy, min_context=max(1, min_context))


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("strategy", BLOCK_STRATEGIES)
def test_invariants_on_many_grids(strategy: str, grid: tuple[int, int]) -> None:
    cfg = feasible_cfg(strategy, grid)
    n_f, n_t = grid
    smallest = {"time": n_f, "frequency": n_t}.get(strategy, 1)
    if strategy == "curriculum":
        smallest = n_f
    if smallest + max(1, cfg.min_context) > n_f * n_t:
        with pytest.raises(ConfigError, match="cannot fit"):
            TimeFrequencyBlockMasker(cfg, grid)
        return
    masker = TimeFrequencyBlockMasker(cfg, grid)
    g = gen(1)
    for step in (0, 5000, 20000):
        check_invariants(masker(6, g, step=step), grid, 6, cfg)


def test_impossible_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="1 x 1"):
        TimeFrequencyBlockMasker(MaskingConfig(min_context=1), (1, 1))
    with pytest.raises(ConfigError, match="min_context=10"):
        TimeFrequencyBlockMasker(MaskingConfig(), (8, 1))  # 8 tokens cannot hold 10 context + 1 target
    with pytest.raises(ConfigError, match="'time'"):
        TimeFrequencyBlockMasker(MaskingConfig(strategy="time", min_context=1), (8, 1))
    with pytest.raises(ConfigError, match="'frequency'"):
        TimeFrequencyBlockMasker(MaskingConfig(strategy="frequency", min_context=1), (1, 50))
    with pytest.raises(ConfigError, match="'time'"):  # curriculum also needs room for time spans
        TimeFrequencyBlockMasker(MaskingConfig(strategy="curriculum", min_context=1), (8, 1))
    with pytest.raises(ConfigError, match="grid"):
        TimeFrequencyBlockMasker(MaskingConfig(), (0, 10))
    # The largest feasible min_context works and is honoured exactly.
    masks = TimeFrequencyBlockMasker(MaskingConfig(min_context=7), (8, 1))(16, gen())
    assert masks.context_idx.shape[1] == 7 and masks.target_idx.shape[2] == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "random"},
        {"num_targets": 0},
        {"target_scale": (0.3, 0.2)},
        {"target_scale": (0.0, 0.2)},
        {"context_scale": (0.9, 1.1)},
        {"target_aspect": (-1.0, 2.0)},
        {"target_aspect": 3.0},
        {"min_context": -1},
        {"curriculum_c0": 1.5},
        {"curriculum_steps": 0},
    ],
)
def test_invalid_config_values_raise(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        MaskingConfig(**kwargs)


def test_config_accepts_lists_from_yaml() -> None:
    cfg = MaskingConfig(target_scale=[0.1, 0.2], target_aspect=[1, 2], context_scale=[1, 1])
    assert cfg.target_scale == (0.1, 0.2) and cfg.target_aspect == (1.0, 2.0)


@pytest.mark.parametrize("strategy", ["multiblock", "time", "frequency"])
@pytest.mark.parametrize("grid", [(8, 13), (8, 32), (5, 7)])
def test_every_cell_is_reachable_as_target_and_context(strategy: str, grid: tuple[int, int]) -> None:
    n_f, n_t = grid
    masker = TimeFrequencyBlockMasker(MaskingConfig(strategy=strategy, min_context=4), grid)
    g = gen(2)
    target_hits = torch.zeros(n_f * n_t)
    context_hits = torch.zeros(n_f * n_t)
    for _ in range(60):
        masks = masker(32, g)
        target_hits += torch.bincount(masks.target_idx.flatten(), minlength=n_f * n_t)
        context_hits += torch.bincount(masks.context_idx.flatten(), minlength=n_f * n_t)
    assert (target_hits > 0).all(), f"unreachable target cells: {(target_hits == 0).nonzero().flatten()}"
    assert (context_hits > 0).all(), f"cells never in context: {(context_hits == 0).nonzero().flatten()}"


def test_block_corners_are_uniform_including_last_row_and_column() -> None:
    # Fixed block size, full-grid context and a small min_context, so no redraw conditions positions:
    # top-left corners must be uniform over every valid position, the last one included.
    grid = (8, 20)
    cfg = MaskingConfig(target_scale=(0.1, 0.1), target_aspect=(1.0, 1.0), context_scale=(1, 1), min_context=1)
    masker = TimeFrequencyBlockMasker(cfg, grid)
    g = gen(3)
    starts = torch.cat([masker(64, g).target_idx[..., 0].flatten() for _ in range(40)])
    tgt = masker(1, g).target_idx
    h = int(tgt[0, 0, -1] % 8 - tgt[0, 0, 0] % 8) + 1
    w = int(tgt[0, 0, -1] // 8 - tgt[0, 0, 0] // 8) + 1
    top, left = cells(starts, 8)
    n = starts.numel()
    for values, positions in ((top, 8 - h + 1), (left, 20 - w + 1)):
        counts = torch.bincount(values, minlength=positions).double()
        assert counts.numel() == positions, "a corner position outside the valid range was drawn"
        p = 1.0 / positions
        sigma = math.sqrt(n * p * (1 - p))
        # 5 binomial sigmas: a fair sampler fails this with probability ~1e-6 per position.
        assert (counts - n * p).abs().max() < 5 * sigma, counts


def test_edge_columns_hit_as_often_as_uniform_corners_imply() -> None:
    # With uniform corners, column 0 and column T-1 are each covered by exactly one corner position
    # out of T-w+1, and a middle column by w of them. The test checks this exact expectation (so a
    # sampler biased against the end of the clip, or one that never reaches the last column, fails)
    # and the mirror symmetry between the first and last column, both within 5 binomial sigmas.
    n_f, n_t = 8, 24
    cfg = MaskingConfig(
        strategy="time", num_targets=1, target_scale=(0.25, 0.25), context_scale=(1, 1), min_context=1
    )
    masker = TimeFrequencyBlockMasker(cfg, (n_f, n_t))
    g = gen(4)
    batches = [masker(64, g).target_idx[:, 0] for _ in range(30)]
    w = batches[0].shape[1] // n_f
    hits = torch.zeros(n_t)
    for tgt in batches:
        hits += torch.bincount(cells(tgt, n_f)[1].flatten(), minlength=n_t) / n_f
    trials = 64 * len(batches)
    rate = hits / trials
    positions = n_t - w + 1
    for col, expected in ((0, 1 / positions), (n_t - 1, 1 / positions), (n_t // 2, w / positions)):
        sigma = math.sqrt(expected * (1 - expected) / trials)
        assert abs(rate[col] - expected) < 5 * sigma, (col, rate[col], expected)
    sigma_edge = math.sqrt(2 * (1 / positions) / trials)
    assert abs(rate[0] - rate[-1]) < 5 * sigma_edge


def test_time_and_frequency_strategies_span_their_axis() -> None:
    n_f, n_t = 8, 32
    g = gen(5)
    time_masks = TimeFrequencyBlockMasker(MaskingConfig(strategy="time"), (n_f, n_t))(16, g)
    f, t = cells(time_masks.target_idx, n_f)
    for b in range(16):
        for k in range(4):
            assert set(f[b, k].tolist()) == set(range(n_f))
            cols = sorted(set(t[b, k].tolist()))
            assert cols == list(range(cols[0], cols[-1] + 1))
    freq_masks = TimeFrequencyBlockMasker(MaskingConfig(strategy="frequency", min_context=4), (n_f, n_t))(16, g)
    f, t = cells(freq_masks.target_idx, n_f)
    for b in range(16):
        for k in range(4):
            assert set(t[b, k].tolist()) == set(range(n_t))
            rows = sorted(set(f[b, k].tolist()))
            assert rows == list(range(rows[0], rows[-1] + 1))


def test_multiblock_size_and_aspect_follow_the_config() -> None:
    # Tall blocks on a square grid: aspect 2 means twice as many frequency rows as time columns.
    masks = TimeFrequencyBlockMasker(
        MaskingConfig(target_scale=(0.1, 0.1), target_aspect=(2, 2), min_context=1), (64, 64)
    )(2, gen(6))
    f, t = cells(masks.target_idx[0, 0], 64)
    h, w = int(f.max() - f.min() + 1), int(t.max() - t.min() + 1)
    assert abs(h / w - 2) < 0.2
    assert abs(h * w - 0.1 * 64 * 64) <= max(h, w) / 2
    # On a flat 8-row grid the height clamps to 8 and the width grows to keep the requested area.
    masks = TimeFrequencyBlockMasker(
        MaskingConfig(target_scale=(0.15, 0.15), target_aspect=(1, 1), min_context=1), (8, 100)
    )(2, gen(6))
    assert abs(masks.target_idx.shape[2] - 0.15 * 800) <= 8 / 2


def test_min_context_fallback_terminates_and_holds() -> None:
    # Four blocks of half the grid each leave too little context almost always; with no redraws at
    # all the deterministic fallback (whole-grid context, then collapsed targets) must still deliver.
    cfg = MaskingConfig(num_targets=4, target_scale=(0.5, 0.5), min_context=30)
    for attempts in (0, 20):
        masker = TimeFrequencyBlockMasker(cfg, (8, 10), max_attempts=attempts)
        masks = masker(32, gen(7))
        check_invariants(masks, (8, 10), 32, cfg)
        assert masks.target_idx.shape[2] <= 80 - 30
        if attempts == 0:  # the last fallback ran: some sample has its blocks stacked on block 0
            assert (masks.target_idx[:, 1:] == masks.target_idx[:, :1]).all(-1).any()
    # A block larger than grid - min_context is shrunk for the batch rather than looping.
    big = MaskingConfig(num_targets=2, target_scale=(1.0, 1.0), min_context=50)
    masks = TimeFrequencyBlockMasker(big, (8, 10))(8, gen(7))
    check_invariants(masks, (8, 10), 8, big)
    assert masks.target_idx.shape[2] <= 30


def test_large_grids_are_cheap_and_valid() -> None:
    for grid in ((8, 1000), (128, 64)):
        cfg = MaskingConfig()
        masks = TimeFrequencyBlockMasker(cfg, grid)(4, gen(8))
        check_invariants(masks, grid, 4, cfg)


def test_context_reduction_is_a_uniform_random_subset() -> None:
    # Row 0 has all 40 cells, row 1 only 10: row 0 must keep a random 10, not its first 10, so the
    # last cells (end of the clip) are kept as often as the first ones.
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[0] = True
    mask[1, 5:15] = True
    g = gen(9)
    kept = torch.zeros(40)
    draws = 2000
    for _ in range(draws):
        idx = random_equal_subset(mask, g)
        assert idx.shape == (2, 10)
        assert idx[1].tolist() == list(range(5, 15))
        kept += torch.bincount(idx[0], minlength=40)
    p = 10 / 40
    sigma = math.sqrt(draws * p * (1 - p))
    assert (kept - draws * p).abs().max() < 5 * sigma


def test_batch_counts_are_equal_even_when_samples_differ() -> None:
    masker = TimeFrequencyBlockMasker(MaskingConfig(context_scale=(0.5, 0.5)), (8, 32))
    masks = masker(32, gen(10))
    # Rectangular tensors already imply equal counts; check rows really differ (so a reduction ran).
    assert len({tuple(r) for r in masks.context_idx.tolist()}) > 1
    assert masks.context_idx.shape[1] >= 10


def test_curriculum_probability_formula() -> None:
    steps = 1000
    for c0 in (0.0, 0.3, 0.5, 0.9, 1.0):
        assert curriculum_probability(0, steps, c0) == pytest.approx(c0**2)
        assert curriculum_probability(steps, steps, c0) == 1.0
        assert curriculum_probability(3 * steps, steps, c0) == 1.0
        ps = [curriculum_probability(s, steps, c0) for s in range(0, steps + 1, 10)]
        assert all(b >= a for a, b in zip(ps, ps[1:]))
        assert all(0.0 <= p <= 1.0 for p in ps)
    # c0 = 0 reduces to the plain square-root schedule.
    assert curriculum_probability(250, 1000, 0.0) == pytest.approx(0.5)
    for bad in ((-1, 10, 0.5), (1, 0, 0.5), (1, 10, 1.5)):
        with pytest.raises(ConfigError):
            curriculum_probability(*bad)


def test_curriculum_mix_follows_the_probability() -> None:
    # On a 32 x 32 grid multiblock blocks are at most ~18 rows high, so a target block spanning all
    # 32 rows identifies a `time` batch unambiguously.
    n_f = 32
    cfg = MaskingConfig(strategy="curriculum", curriculum_c0=0.5, curriculum_steps=1000, min_context=4)
    masker = TimeFrequencyBlockMasker(cfg, (n_f, 32))
    g = gen(11)
    batches = 400
    for step in (0, 250, 1000):
        multiblock = 0
        for _ in range(batches):
            tgt = masker(1, g, step=step).target_idx[0, 0]
            multiblock += int(len(set((tgt % n_f).tolist())) < n_f)
        p = curriculum_probability(step, 1000, 0.5)
        sigma = math.sqrt(batches * p * (1 - p))
        assert abs(multiblock - batches * p) <= 5 * sigma, (step, multiblock, p)


def samples(batch_index: int, n: int = 4, length: int = 3200) -> list[dict]:
    rng = np.random.default_rng(batch_index)
    return [
        {"wav": rng.standard_normal(length).astype(np.float32), "length": length - i, "batch_index": batch_index}
        for i in range(n)
    ]


def _collate(cfg: MaskingConfig, grid: tuple[int, int], seed: int):
    from ajepa.training.loader import RankMaskCollate

    return RankMaskCollate(MaskCollator(cfg, grid, seed))


def test_collator_output() -> None:
    collate = _collate(MaskingConfig(min_context=4), (8, 13), seed=0)
    batch_in = samples(3)
    out = collate(batch_in)
    assert out["wav"].shape == (4, 3200) and out["wav"].dtype == torch.float32
    assert torch.equal(out["wav"][2], torch.from_numpy(batch_in[2]["wav"]))
    assert out["lengths"].dtype == torch.int64 and out["lengths"].tolist() == [3200, 3199, 3198, 3197]
    assert out["batch_index"] == 3
    check_invariants(Masks(out["context_idx"], out["target_idx"]), (8, 13), 4, collate.collator.masker.cfg)


def test_collator_masks_are_a_pure_function_of_seed_and_batch_index() -> None:
    cfg = MaskingConfig(strategy="curriculum", min_context=4)
    a = _collate(cfg, (8, 32), seed=1)
    b = pickle.loads(pickle.dumps(_collate(cfg, (8, 32), seed=1)))  # as in a spawned worker
    # Different call order (other workers, resume) must not matter.
    first = {i: a(samples(i)) for i in (5, 2, 9)}
    second = {i: b(samples(i)) for i in (9, 5, 2)}
    for i in first:
        for key in ("context_idx", "target_idx"):
            assert torch.equal(first[i][key], second[i][key])
    differs = lambda x, y: x["context_idx"].shape != y["context_idx"].shape or not torch.equal(
        x["context_idx"], y["context_idx"]
    )
    assert differs(first[5], first[2])
    assert differs(first[5], _collate(cfg, (8, 32), seed=2)(samples(5)))


def test_collator_rejects_inconsistent_batches() -> None:
    collate = _collate(MaskingConfig(min_context=4), (8, 13), seed=0)
    mixed = samples(1) + samples(2, n=1)
    with pytest.raises(ValueError, match="batch_index"):
        collate(mixed)
    ragged = samples(1) + samples(1, n=1, length=1600)
    with pytest.raises(AudioInputError, match="one shape"):
        collate(ragged)
    with pytest.raises(ValueError, match="empty"):
        collate([])
    with pytest.raises(ConfigError):
        MaskCollator(MaskingConfig(), (8, 13), seed=-1)


# ----------------------------------------------------------------------------------------------------------
# Inverse block masking and masked copies (data2vec 2.0 / EAT)


@pytest.mark.parametrize("grid", [(8, 6), (8, 12), (4, 3), (1, 9), (8, 100)])
@pytest.mark.parametrize("block", [(1, 1), (2, 2), (3, 5)])
def test_inverse_masks_partition_the_grid_with_the_keep_ratio(grid: tuple[int, int], block: tuple[int, int]) -> None:
    cfg = MaskingConfig(strategy="inverse", keep_ratio=0.25, visible_block=block)
    masker = build_masker(cfg, grid)
    n = grid[0] * grid[1]
    masks = masker(64, gen(3))
    keep = min(max(1, round(0.25 * n)), n - 1)
    assert masks.context_idx.shape == (64, keep) and masks.target_idx.shape == (64, 1, n - keep)
    both = torch.cat([masks.context_idx, masks.target_idx[:, 0]], dim=1).sort(dim=1).values
    assert torch.equal(both, torch.arange(n).expand(64, n))  # disjoint, and together the whole grid
    assert torch.equal(masks.context_idx, masks.context_idx.sort(dim=1).values)
    assert torch.equal(masks.target_idx, masks.target_idx.sort(dim=-1).values)
    assert len({tuple(r) for r in masks.context_idx.tolist()}) >= 8  # rows differ (few ways on tiny grids)


def test_inverse_context_is_made_of_visible_blocks() -> None:
    grid, block = (8, 12), (2, 2)
    masks = build_masker(MaskingConfig(strategy="inverse", keep_ratio=0.25, visible_block=block), grid)(256, gen(5))
    # A visible cell has a visible 4-neighbour far more often than scattered cells would (25 % of the grid).
    visible = torch.zeros(256, 96, dtype=torch.bool).scatter_(1, masks.context_idx, True).view(256, 12, 8)
    neighbours = torch.zeros_like(visible)
    neighbours[:, 1:] |= visible[:, :-1]
    neighbours[:, :-1] |= visible[:, 1:]
    neighbours[:, :, 1:] |= visible[:, :, :-1]
    neighbours[:, :, :-1] |= visible[:, :, 1:]
    assert (neighbours & visible).sum() / visible.sum() > 0.9


def test_inverse_masks_are_a_pure_function_of_seed_and_batch_index() -> None:
    cfg = MaskingConfig(strategy="inverse", copies=4)
    a = MaskCollator(cfg, (8, 6), seed=1).masks(8, batch_index=7)
    b = MaskCollator(cfg, (8, 6), seed=1).masks(8, batch_index=7)
    c = MaskCollator(cfg, (8, 6), seed=1).masks(8, batch_index=8)
    assert a.copies == 4 and a.context_idx.shape[0] == 32 and a.target_idx.shape[0] == 32
    assert torch.equal(a.context_idx, b.context_idx) and not torch.equal(a.context_idx, c.context_idx)
    # Each clip's copies are masked differently.
    rows = a.context_idx.view(8, 4, -1)
    assert all(len({tuple(r) for r in clip.tolist()}) > 1 for clip in rows)


def test_copies_of_a_block_strategy_draw_b_times_copies_rows() -> None:
    masks = MaskCollator(MaskingConfig(copies=3), (8, 6), seed=0).masks(5, batch_index=0)
    assert masks.copies == 3 and masks.context_idx.shape[0] == 15 and masks.target_idx.shape[:2] == (15, 4)
    # One copy is the masks of the one-copy collator drawn for 5 * 3 rows: same generator, same draw.
    one = MaskCollator(MaskingConfig(), (8, 6), seed=0).masker(15, torch.Generator().manual_seed(
        batch_seed(0, 0)), step=0)
    assert torch.equal(masks.context_idx, one.context_idx)


@pytest.mark.parametrize("bad", [{"copies": 0}, {"copies": 2.5}, {"copies": True}, {"keep_ratio": 1.0},
                                 {"keep_ratio": 0.0}, {"visible_block": [0, 2]}, {"visible_block": "ab"}])
def test_bad_inverse_settings_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError):
        MaskingConfig(strategy="inverse", **bad)


def test_block_masker_refuses_the_inverse_strategy() -> None:
    with pytest.raises(ConfigError, match="not a block strategy"):
        TimeFrequencyBlockMasker(MaskingConfig(strategy="inverse"), (8, 6))
    with pytest.raises(ConfigError, match="2 cells"):
        build_masker(MaskingConfig(strategy="inverse"), (1, 1))
