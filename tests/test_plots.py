"""The mask plot: target outlines on the patch grid."""

from __future__ import annotations

import torch


def test_mask_plot_outlines_stay_on_the_grid_and_close_blocks_at_its_edges(tmp_path):
    import numpy as np

    from ajepa.training.plots import block_outline, plot_masks

    grid = (8, 6)  # (F_p, T_p)
    corner = np.zeros(grid, dtype=bool)
    corner[6:, 4:] = True  # a 2 x 2 block in the top-right corner: two of its sides are the grid's border
    segments = block_outline(corner)
    assert segments.shape == (8, 2, 2)  # its perimeter in unit edges
    assert segments[..., 0].min() == 4 and segments[..., 0].max() == 6  # time: columns 4..6, not past the grid
    assert segments[..., 1].min() == 6 and segments[..., 1].max() == 8
    l_shape = np.zeros(grid, dtype=bool)
    l_shape[0, 0:3] = l_shape[1, 0] = True  # touches the origin corner
    assert len(block_outline(l_shape)) == 10
    n = grid[0] * grid[1]
    target_idx = torch.tensor([[0, 1, 8], [46, 47, 40]])  # time-major: token t * F_p + f; blocks at two corners
    context_idx = torch.tensor([i for i in range(n) if i not in target_idx.flatten().tolist()])
    path = plot_masks(torch.randn(128, 100), grid, (16, 16), context_idx, target_idx, tmp_path / "masks.png")
    assert path.stat().st_size > 0
