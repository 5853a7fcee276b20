"""Audio of any length -> encoder windows, and the windows' column features -> one clip's columns.

Windows are the model's ``clip_seconds`` long and overlap by half, with starts on the patch-column grid, so every
time column of the long spectrogram is computed identically in each window that holds it. Each column keeps the
result of the window in which it lies closest to the window centre (ties go to the earlier window).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from ajepa.errors import AudioInputError, ConfigError
from ajepa.features.audio import clip_samples
from ajepa.features.tokenizer import AudioTokenizer
from ajepa.inference.readout import ClipFeatures, ColumnFeatures, Readout

__all__ = ["ClipState", "WindowPlan"]


class ClipState:
    """Accumulates the window results of one clip: ``(n_cols, D)`` column features and where each came from."""

    def __init__(self, n_windows: int, n_cols: int, dim: int, n_freq: int, readout: Readout) -> None:
        self.remaining = n_windows
        self.col_mean = torch.zeros(n_cols, dim)
        self.col_max = torch.zeros(n_cols, dim) if readout.keeps_max else None
        self.col_cat = torch.zeros(n_cols, n_freq * dim) if readout.keeps_cat else None
        self.col_count = torch.zeros(n_cols, dtype=torch.long)
        self.distance = torch.full((n_cols,), math.inf)

    def take(self, first_col: int, cols_of_window: ColumnFeatures, i: int) -> None:
        """Window ``i`` of a batch's column features (each ``(B, T_p, ...)``), starting at clip column ``first_col``;
        keep the more central columns."""
        col_mean, count = cols_of_window.mean[i], cols_of_window.count[i]
        t_p = col_mean.shape[0]
        centrality = (torch.arange(t_p) + 0.5 - t_p / 2).abs()
        cols = torch.arange(t_p) + first_col
        take = (count > 0) & (centrality < self.distance[cols])
        idx = cols[take]
        self.distance[idx] = centrality[take]
        self.col_mean[idx] = col_mean[take]
        self.col_count[idx] = count[take]
        if self.col_max is not None:
            self.col_max[idx] = cols_of_window.max[i][take]
        if self.col_cat is not None:
            self.col_cat[idx] = cols_of_window.cat[i][take]
        self.remaining -= 1


class WindowPlan:
    """The window arithmetic of one model: ``clip_seconds`` windows on the patch-column grid of ``tokenizer``."""

    def __init__(self, tokenizer: AudioTokenizer, clip_seconds: float) -> None:
        self.tokenizer = tokenizer
        self.clip_samples = clip_samples(clip_seconds, tokenizer.sample_rate)
        self.grid = tokenizer.grid(self.clip_samples)
        if self.grid[1] < 2:
            raise ConfigError(
                f"clip_seconds={clip_seconds} gives a window of {self.grid[1]} patch column(s); need at least 2")
        self.hop_cols = max(1, self.grid[1] // 2)  # 50 % overlap
        self.window_hop = self.hop_cols * tokenizer.column_samples

    def num_windows(self, num_samples: int) -> int:
        """How many windows a clip of ``num_samples`` samples is cut into."""
        return 1 + max(0, math.ceil((int(num_samples) - self.clip_samples) / self.window_hop))

    def cut(self, wav: Tensor, clip_id: int) -> Iterator[tuple[int, int, Tensor]]:
        """``(clip_id, window index, samples)`` for each window of a mono waveform ``(N,)``; the last may be short."""
        if wav.ndim != 1 or wav.numel() == 0:
            raise AudioInputError(f"clip {clip_id}: expected a non-empty mono waveform (N,), got {tuple(wav.shape)}")
        for w in range(self.num_windows(wav.numel())):
            start = w * self.window_hop
            yield clip_id, w, wav[start:start + self.clip_samples]

    def new_state(self, num_samples: int, dim: int, readout: Readout) -> ClipState:
        """The accumulator for a clip of ``num_samples`` samples, keeping what ``readout`` pools."""
        n_windows = self.num_windows(num_samples)
        n_cols = (n_windows - 1) * self.hop_cols + self.grid[1]
        return ClipState(n_windows, n_cols, dim, self.grid[0], readout)

    def finish(self, st: ClipState) -> ClipFeatures:
        """The clip's columns that hold audio, with their centre times."""
        cols = torch.nonzero(st.col_count > 0).flatten()
        return ClipFeatures(
            col_mean=st.col_mean[cols],
            col_max=None if st.col_max is None else st.col_max[cols],
            col_count=st.col_count[cols],
            col_cat=None if st.col_cat is None else st.col_cat[cols],
            times=self.tokenizer.column_centres(cols).numpy(),
        )
