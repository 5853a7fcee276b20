"""LogMelFrontend: parity with torchaudio's Kaldi fbank, normalisation, frame counts and padding masks."""

from __future__ import annotations

import pytest
import torch
from torchaudio.compliance import kaldi

from ajepa.errors import AudioInputError
from ajepa.features.audio import load_audio
from ajepa.features.logmel import FrontendConfig, LogMelFrontend

# Log domain. Wherever the mel energy is above e^-12 (~6e-6) we match Kaldi to 1e-3. Below that, float32
# rounding noise dominates: Kaldi's own float32 output is ~2e-3 away from its float64 output there, so
# the bound is looser rather than pretending either float32 result is exact.
PARITY_ATOL = 1e-3
FLOOR_ATOL = 5e-3
QUIET_LOG_ENERGY = -12.0


def _kaldi(wav: torch.Tensor) -> torch.Tensor:
    """Reference ``(F, T)`` for one clip, Audio-MAE settings."""
    return kaldi.fbank(
        wav.unsqueeze(0), htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
        num_mel_bins=128, dither=0.0, frame_shift=10, frame_length=25,
    ).T


def _assert_kaldi_parity(ours: torch.Tensor, wav: torch.Tensor) -> None:
    ref = _kaldi(wav)
    assert ours.shape == ref.shape
    loud = ref > QUIET_LOG_ENERGY
    torch.testing.assert_close(ours[loud], ref[loud], atol=PARITY_ATOL, rtol=0)
    torch.testing.assert_close(ours, ref, atol=FLOOR_ATOL, rtol=0)


@pytest.fixture(scope="module")
def frontend() -> LogMelFrontend:
    return LogMelFrontend(normalize=False)


def test_parity_with_kaldi_on_random_batch(frontend) -> None:
    gen = torch.Generator().manual_seed(0)
    # Noise plus a tone plus a DC offset, at different levels per clip.
    t = torch.arange(16000 + 321) / 16000
    wav = torch.randn(3, t.numel(), generator=gen) * torch.tensor([[0.3], [0.01], [1e-4]])
    wav = wav + 0.2 * torch.sin(2 * torch.pi * 440 * t) + 0.05
    out = frontend(wav)
    assert out.shape == (3, 128, frontend.num_frames(t.numel()))
    for clip, spec in zip(wav, out):
        _assert_kaldi_parity(spec, clip)


def test_parity_with_kaldi_on_real_audio(frontend, shared_data) -> None:
    patterns = ["esc10/audio/*.ogg", "fsdd/recordings/*.wav", "speech_commands_v2_test_dev/yes/*.wav"]
    files = [f for pattern in patterns for f in sorted(shared_data.glob(pattern))[:1]]
    if not files:
        pytest.skip(f"no ESC-10, FSDD or Speech Commands files under {shared_data}")
    for path in files:
        wav = load_audio(path)
        _assert_kaldi_parity(frontend(wav.unsqueeze(0))[0], wav)


def test_batch_rows_are_independent(frontend) -> None:
    gen = torch.Generator().manual_seed(1)
    wav = torch.randn(5, 4000, generator=gen)
    batched = frontend(wav)
    torch.testing.assert_close(batched[2:3], frontend(wav[2:3]), atol=1e-5, rtol=0)


def test_normalisation_uses_config_stats() -> None:
    cfg = FrontendConfig(norm_mean=-3.0, norm_std=2.5)
    wav = torch.randn(2, 3200, generator=torch.Generator().manual_seed(2))
    raw = LogMelFrontend(cfg, normalize=False)(wav)
    torch.testing.assert_close(LogMelFrontend(cfg)(wav), (raw + 3.0) / 5.0)


def test_silence_hits_the_log_floor(frontend) -> None:
    out = frontend(torch.zeros(1, 1600))
    assert torch.equal(out, torch.full_like(out, torch.log(torch.tensor(torch.finfo(torch.float32).eps)).item()))


@pytest.mark.parametrize("num_samples", [0, 1, 399, 400, 559, 560, 16000])
def test_num_frames_snip_edges(frontend, num_samples: int) -> None:
    expected = 1 + (max(num_samples, 400) - 400) // 160
    assert frontend.num_frames(num_samples) == expected
    if num_samples > 0:
        assert frontend(torch.randn(1, num_samples)).shape[-1] == expected


def test_short_clip_is_padded_to_one_window(frontend) -> None:
    wav = torch.randn(1, 250, generator=torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(wav, (0, 150))
    torch.testing.assert_close(frontend(wav), frontend(padded))


def test_valid_frames_never_count_padding(frontend) -> None:
    lengths = torch.tensor([16000, 8000, 400, 399, 100, 0])
    total = frontend.num_frames(16000)
    valid = frontend.valid_frames(lengths, total)
    assert valid.shape == (6, total) and valid.dtype == torch.bool
    assert valid.sum(1).tolist() == [total, frontend.num_frames(8000), 1, 1, 1, 0]
    # Valid frames form a prefix, and the last valid frame's window ends within the real samples.
    assert torch.equal(valid, valid.cummin(dim=1).values)
    last = valid[1].nonzero().max().item()
    assert last * 160 + 400 <= 8000 < (last + 1) * 160 + 400


def test_padding_does_not_change_valid_frames(frontend) -> None:
    gen = torch.Generator().manual_seed(4)
    clip = torch.randn(8000, generator=gen)
    batch = torch.zeros(2, 16000)
    batch[0] = torch.randn(16000, generator=gen)
    batch[1, :8000] = clip
    out = frontend(batch)
    valid = frontend.valid_frames(torch.tensor([16000, 8000]), out.shape[-1])
    torch.testing.assert_close(out[1][:, valid[1]], frontend(clip.unsqueeze(0))[0], atol=1e-5, rtol=0)


def test_mel_banks_follow_module_device_and_state_dict_is_empty(frontend) -> None:
    assert dict(frontend.named_buffers())["mel_banks"].shape == (128, 257)
    assert frontend.state_dict() == {}  # derived from the config, so nothing to save or load


@pytest.mark.parametrize(
    "bad", [torch.zeros(16000), torch.zeros(1, 1, 16000), torch.zeros(1, 16000, dtype=torch.int16), torch.zeros(0, 400)]
)
def test_bad_input_raises(frontend, bad) -> None:
    with pytest.raises(AudioInputError):
        frontend(bad)
