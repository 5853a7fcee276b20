"""A fine-tuned audio classifier: the pretrained front end and encoder plus a linear head, saved and used to label files.

    from ajepa.evals.classifier import load_classifier, predict_files
    model, labels = load_classifier("ft_model/")                      # model.safetensors + config.json
    for result in predict_files(model, labels, ["dog.wav"], top_k=3):  # per file and per window: top-k
        print(result["path"], result["top"])

or from the command line: ``python -m ajepa.evals.predict ft_model/ dog.wav clips/ --top-k 3``.

The files are pickle-free like the encoder exports: ``model.safetensors`` holds the encoder (``encoder.*``, keys as
in ``ViTEncoder``) and the head (``head.*``); ``config.json`` holds ``format`` (``"ajepa-classifier"``),
``version``, ``frontend``, ``encoder``, ``clip_seconds``, ``labels`` and ``pooling``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ajepa.errors import CheckpointError
from ajepa.features.logmel import LogMelFrontend
from ajepa.features.tokenizer import AudioTokenizer
from ajepa.inference.windows import WindowPlan
from ajepa.inference.model_files import check_weights, parse_model_settings, read_json_config, read_safetensors
from ajepa.io import atomic_write
from ajepa.models.vit import ViTEncoder

__all__ = ["CLASSIFIER_FORMAT", "AudioClassifier", "load_classifier", "predict_files", "save_classifier"]

CLASSIFIER_FORMAT = "ajepa-classifier"
CLASSIFIER_VERSION = 1
MAX_LABELS = 100_000  # more classes than any audio benchmark; bounds the head a config can ask for


class AudioClassifier(nn.Module):
    """``forward(wav (B, N), lengths (B,), keep_idx (B, M) | None, spec (B, F, T) | None) -> logits (B, C)``.

    The encoder's final tokens are mean-pooled over the tokens that hold audio (and, when ``keep_idx`` is given,
    were kept by token dropping), standardised by a batch norm without affine parameters (MAE's linear-probe head:
    the pooled features of any initialisation differ from clip to clip by a small part of their scale, which a
    layer norm keeps small and the head then learns slowly) and mapped by a linear head. ``spec`` lets the caller pass an
    augmented log-mel of the same batch (:meth:`AudioTokenizer.spectrogram` of ``wav``).
    """

    def __init__(self, frontend: LogMelFrontend, encoder: ViTEncoder, num_classes: int, clip_seconds: float) -> None:
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        self.clip_seconds = float(clip_seconds)
        self.tokenizer = AudioTokenizer(frontend, encoder.cfg.patch)
        self.norm = nn.BatchNorm1d(encoder.cfg.embed_dim, affine=False)
        self.head = nn.Linear(encoder.cfg.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)  # small logits at the start: a calm first epoch
        nn.init.zeros_(self.head.bias)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward(self, wav: Tensor, lengths: Tensor, keep_idx: Tensor | None = None,
                spec: Tensor | None = None) -> Tensor:
        tok = self.tokenizer.from_spec(self.tokenizer.spectrogram(wav) if spec is None else spec, lengths)
        valid = tok.valid
        if keep_idx is not None:
            valid = valid.gather(1, keep_idx)
        h = self.encoder(tok.tokens, tok.grid, keep_idx=keep_idx)  # (B, M, D)
        w = valid.to(h.dtype)[..., None]
        pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)
        return self.head(self.norm(pooled))


def classifier_from_embedder(embedder: Any, num_classes: int, *, drop_path: float = 0.0,
                             clip_seconds: float | None = None) -> AudioClassifier:
    """A classifier around an :class:`ajepa.inference.Embedder`'s front end and encoder (copied, trainable), with
    ``drop_path`` set on the encoder's blocks. Its window is ``clip_seconds`` (default: the embedder's); the
    sin-cos positions extend to any grid, so a window longer than the pretraining crops is allowed."""
    if clip_seconds is not None and clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be positive, got {clip_seconds}")
    enc_cfg = replace(embedder.encoder_config, drop_path=float(drop_path))
    encoder = ViTEncoder(enc_cfg)
    encoder.load_state_dict(embedder.encoder.state_dict())
    frontend = LogMelFrontend(embedder.frontend_config)
    return AudioClassifier(frontend, encoder, num_classes,
                           embedder.clip_seconds if clip_seconds is None else clip_seconds)


def save_classifier(model: AudioClassifier, labels: Sequence[str], out: str | os.PathLike) -> Path:
    """Write ``out/model.safetensors`` and ``out/config.json`` (atomically); return the folder."""
    from safetensors.torch import save_file

    if len(labels) != model.num_classes:
        raise ValueError(f"{len(labels)} labels for a head of {model.num_classes} classes")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _classifier_state(model)
    tensors = {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().contiguous().clone()
               for k, v in state.items()}
    atomic_write(out / "model.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    encoder = asdict(replace(model.encoder.cfg, drop_path=0.0))
    encoder["patch"] = list(encoder["patch"])
    config = {"format": CLASSIFIER_FORMAT, "version": CLASSIFIER_VERSION, "frontend": asdict(model.frontend.cfg),
              "encoder": encoder, "clip_seconds": model.clip_seconds, "labels": list(labels), "pooling": "mean"}
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out


def _classifier_state(model: AudioClassifier) -> dict[str, Tensor]:
    """The saved weights of a classifier: encoder, norm and head, by prefix."""
    state = {f"encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    state.update({f"norm.{k}": v for k, v in model.norm.state_dict().items()})
    state.update({f"head.{k}": v for k, v in model.head.state_dict().items()})
    return state


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[AudioClassifier, list[str]]:
    """A saved classifier in eval mode and its label names.

    Raises:
        CheckpointError: a missing folder or file, another format, or weights that do not fit the config.
    """
    path = Path(path)
    cfg_path, weights = path / "config.json", path / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise CheckpointError(f"{path}: not a saved classifier (needs config.json and model.safetensors)")
    cfg = read_json_config(cfg_path, CLASSIFIER_FORMAT, "classifier")
    labels = cfg.get("labels")
    if not isinstance(labels, list) or not 1 <= len(labels) <= MAX_LABELS or not all(isinstance(x, str) for x in labels):
        raise CheckpointError(f"{cfg_path}: 'labels' must be a list of 1..{MAX_LABELS} strings")
    settings = parse_model_settings(cfg, cfg_path)  # the same bounds as an exported encoder's
    state = read_safetensors(weights)

    frontend = LogMelFrontend(settings["frontend"])  # bounded by the checked settings; no weights of its own

    def build() -> AudioClassifier:
        return AudioClassifier(frontend, ViTEncoder(settings["encoder"]), len(labels), settings["clip_seconds"])

    with torch.device("meta"):  # shapes without memory: the config cannot allocate what the weights do not hold
        expected = _classifier_state(build())
    check_weights(expected, state, weights)
    model = build()
    groups = {"encoder": model.encoder, "norm": model.norm, "head": model.head}
    for name, module in groups.items():
        module.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")})
    return model.to(device).eval(), labels


@torch.inference_mode()
def predict_files(model: AudioClassifier, labels: Sequence[str], files: Sequence[str | os.PathLike], *,
                  top_k: int = 3, batch_size: int = 32) -> list[dict]:
    """Top-``k`` labels with probabilities for each file, and per window of the model's ``clip_seconds``.

    Long files are cut into the same half-overlapping windows as embeddings (:class:`WindowPlan`); a file's
    probabilities are the mean of its windows'. Returns ``[{"path", "top": [(label, p), ...], "windows":
    [{"start_s", "end_s", "top"}, ...]}, ...]`` in input order.
    """
    from ajepa.features.audio import load_audio

    plan = WindowPlan(model.tokenizer, model.clip_seconds)
    device = next(model.parameters()).device
    k = max(1, min(int(top_k), len(labels)))
    results = []
    for path in files:
        wav = load_audio(path, target_sr=model.tokenizer.sample_rate)
        windows = [x for _, _, x in plan.cut(wav, 0)]
        probs = []
        for i in range(0, len(windows), batch_size):
            chunk = windows[i:i + batch_size]
            lengths = torch.tensor([len(x) for x in chunk])
            batch = torch.zeros(len(chunk), plan.clip_samples)
            for j, x in enumerate(chunk):
                batch[j, :len(x)] = x
            probs.append(model(batch.to(device), lengths.to(device)).softmax(-1).cpu())
        p = torch.cat(probs)
        sr = model.tokenizer.sample_rate

        def top(row: Tensor) -> list[tuple[str, float]]:
            values, idx = row.topk(k)
            return [(labels[int(i)], float(v)) for v, i in zip(values, idx)]

        results.append({
            "path": str(path), "top": top(p.mean(0)),
            "windows": [{"start_s": w * plan.window_hop / sr,
                         "end_s": min(wav.numel(), w * plan.window_hop + plan.clip_samples) / sr, "top": top(p[w])}
                        for w in range(len(windows))],
        })
    return results
