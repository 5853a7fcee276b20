import pytest
import torch

from ajepa.training.monitors import CollapseError, CollapseGuard, effective_rank


def test_effective_rank_extremes():
    g = torch.Generator().manual_seed(0)
    constant = torch.full((64, 16), 3.0)
    one_direction = torch.randn(64, 1, generator=g) * torch.randn(1, 16, generator=g)
    isotropic = torch.randn(4096, 16, generator=g)
    assert effective_rank(one_direction) == pytest.approx(1.0, abs=1e-3)
    assert effective_rank(constant) == 1.0  # centring removes a shared offset
    assert effective_rank(isotropic) > 15.0
    assert effective_rank(torch.zeros(8, 4)) == 1.0


def test_guard_warns_after_patience_and_resets():
    guard = CollapseGuard(threshold=1.5, patience=3)
    assert not guard.update(1.0, 0)
    assert not guard.update(1.0, 1)
    assert not guard.update(5.0, 2)  # a healthy observation resets the streak
    assert not guard.update(1.0, 3)
    assert not guard.update(1.0, 4)
    with pytest.warns(RuntimeWarning, match="COLLAPSE"):
        assert guard.update(1.0, 5)
    restored = CollapseGuard(threshold=1.5, patience=3)
    restored.load_state_dict(guard.state_dict())
    assert restored.state_dict() == guard.state_dict()


def test_guard_aborts_when_configured():
    guard = CollapseGuard(threshold=1.5, patience=2, abort=True)
    guard.update(1.0, 0)
    with pytest.raises(CollapseError):
        guard.update(1.0, 1)

