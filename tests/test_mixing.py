"""Tests of ajepa.data.mixing: clip mixing for pre-training, its SNR, padding, determinism and config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ajepa.config import DataConfig
from ajepa.data.loader import RankMaskCollate
from ajepa.data.mixing import ClipMixer, mix_clips
from ajepa.errors import ConfigError
from ajepa.masking import MaskCollator, MaskingConfig


def _batch(lengths: list[int], n: int = 1600, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    wav = torch.randn(len(lengths), n, generator=g) * torch.linspace(0.1, 1.0, len(lengths))[:, None]
    for i, length in enumerate(lengths):
        wav[i, length:] = 0.0
    return wav, torch.tensor(lengths)


def test_every_clip_gets_its_neighbour_at_the_drawn_snr() -> None:
    wav, lengths = _batch([1600, 800, 1600, 1200])
    mixed, new_len = mix_clips(wav, lengths, torch.Generator().manual_seed(1), prob=1.0, snr_db=(6.0, 6.0))
    added = mixed - wav
    for i in range(4):
        j = (i - 1) % 4
        # the added signal is the partner, scaled
        scale = added[i, : lengths[j]].dot(wav[j, : lengths[j]]) / wav[j, : lengths[j]].pow(2).sum()
        assert torch.allclose(added[i], scale * wav[j], atol=1e-6)
        power = wav[i, : lengths[i]].pow(2).mean()
        added_power = added[i, : lengths[j]].pow(2).mean()
        assert 10 * torch.log10(power / added_power).item() == pytest.approx(6.0, abs=1e-3)
        assert new_len[i] == max(lengths[i], lengths[j])
    assert torch.equal(wav, _batch([1600, 800, 1600, 1200])[0])  # inputs untouched


def test_no_mixing_below_prob_and_silence_left_alone() -> None:
    wav, lengths = _batch([1600, 1600, 1600, 1600])
    same, same_len = mix_clips(wav, lengths, torch.Generator().manual_seed(0), prob=0.0, snr_db=(0.0, 10.0))
    assert torch.equal(same, wav) and torch.equal(same_len, lengths)
    wav[1] = 0.0
    lengths[1] = 0
    mixed, new_len = mix_clips(wav, lengths, torch.Generator().manual_seed(0), prob=1.0, snr_db=(0.0, 10.0))
    assert torch.equal(mixed[1], wav[1]) and new_len[1] == 0  # silent clip: no SNR to meet
    assert torch.equal(mixed[2], wav[2])  # its partner is the silent clip
    assert not torch.equal(mixed[3], wav[3]) and torch.isfinite(mixed).all()
    half, _ = mix_clips(*_batch([1600] * 400), torch.Generator().manual_seed(3), prob=0.5, snr_db=(0.0, 10.0))
    changed = (half != _batch([1600] * 400)[0]).any(1).float().mean().item()
    assert 0.4 < changed < 0.6


def test_the_collate_mix_is_a_function_of_seed_and_batch_and_leaves_the_masks() -> None:
    rng = np.random.default_rng(0)
    samples = [{"wav": rng.standard_normal(16000).astype(np.float32), "length": 16000 - 1000 * i, "batch_index": 7}
               for i in range(4)]
    collator = MaskCollator(MaskingConfig(min_context=4), (8, 7), seed=0)
    plain = RankMaskCollate(collator)(samples)
    mixed = RankMaskCollate(collator, mixer=ClipMixer(1.0, (0.0, 10.0), seed=0))(samples)
    again = RankMaskCollate(collator, mixer=ClipMixer(1.0, (0.0, 10.0), seed=0))(samples)
    other = RankMaskCollate(collator, mixer=ClipMixer(1.0, (0.0, 10.0), seed=1))(samples)
    assert torch.equal(mixed["wav"], again["wav"]) and not torch.equal(mixed["wav"], other["wav"])
    assert not torch.equal(mixed["wav"], plain["wav"])
    assert mixed["lengths"].tolist() == [16000, 16000, 15000, 14000]
    assert torch.equal(mixed["context_idx"], plain["context_idx"]) and torch.equal(mixed["target_idx"],
                                                                                   plain["target_idx"])


@pytest.mark.parametrize("prob, snr", [(1.5, (0.0, 10.0)), (-0.1, (0.0, 10.0)), (0.5, (10.0, 0.0))])
def test_bad_mix_settings_are_config_errors(prob: float, snr: tuple[float, float]) -> None:
    with pytest.raises(ConfigError, match="mix"):
        DataConfig(mix_prob=prob, mix_snr_db=snr)
    with pytest.raises(ConfigError, match="mix"):
        ClipMixer(prob, snr, seed=0)
