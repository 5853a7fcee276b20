"""The X-ARES adapter: the contract its checker asks for, and the checker itself where ``xares`` is installed."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ajepa.errors import AudioInputError
from ajepa.inference import Embedder
from ajepa.models import ENCODER_SIZES
from ajepa.xares import AjepaEncoder


@pytest.fixture(scope="module")
def encoder() -> AjepaEncoder:
    enc = replace(ENCODER_SIZES["mini"], embed_dim=32, depth=2, num_heads=2)
    return AjepaEncoder(Embedder.from_config(enc, clip_seconds=1.0, device="cpu", average_layers="all"))


def test_frames_have_the_declared_width_and_hop(encoder):
    assert type(encoder).__name__.endswith("Encoder") and isinstance(encoder, torch.nn.Module)
    assert encoder.sampling_rate == 16000 and encoder.hop_size_in_ms == 160.0 and encoder.output_dim == 8 * 32
    audio = torch.randn(2, 50000) * 0.1  # what the checker feeds: 3.125 s
    frames = encoder(audio)
    assert frames.shape[0] == 2 and frames.shape[2] == encoder.output_dim
    assert abs(frames.shape[1] - 3125 / encoder.hop_size_in_ms) <= 1
    # X-ARES's mean over time is ajepa's freqcat clip embedding.
    clip = encoder.embedder.embed(audio.numpy(), sr=16000, pooling="freqcat")
    torch.testing.assert_close(frames.mean(1), torch.from_numpy(clip), atol=1e-5, rtol=1e-4)
    with pytest.raises(AudioInputError):
        encoder(torch.zeros(50000))


def test_the_xares_checker_accepts_the_encoder(encoder):
    checker = pytest.importorskip("xares.audio_encoder_checker",
                                  reason="xares is not installed: pip install 'ajepa[xares]'")
    assert checker.check_audio_encoder(encoder) is True
    assert checker.check_audio_encoder(AjepaEncoder()) is True  # the shipped default


def test_xares_decodes_with_soundfile_only_inside_the_run(tmp_path):
    import numpy as np
    import soundfile as sf
    import torchaudio

    from ajepa.evals.xares_esc50 import _decoding_with_soundfile

    try:  # the stand-in matters only where torchcodec is absent
        import torchcodec  # noqa: F401
        pytest.skip("torchcodec is installed: torchaudio.load decodes by itself")
    except ImportError:
        pass
    wav = (0.1 * np.random.default_rng(0).standard_normal((800, 2))).astype(np.float32)
    sf.write(tmp_path / "a.wav", wav, 16000, subtype="FLOAT")
    original = torchaudio.load
    with _decoding_with_soundfile():
        data, sr = torchaudio.load(str(tmp_path / "a.wav"))
        assert sr == 16000 and data.shape == (2, 800)  # channels first, as torchaudio gives them
        torch.testing.assert_close(data, torch.from_numpy(wav.T.copy()))
        with pytest.raises(TypeError, match="path only"):
            torchaudio.load(str(tmp_path / "a.wav"), frame_offset=100)
    assert torchaudio.load is original
