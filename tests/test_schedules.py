import math

import pytest

from ajepa.training.schedules import cosine_schedule, linear_schedule, warmup_cosine


def test_linear_endpoints_and_hold():
    assert linear_schedule(0, 100, 0.996, 1.0) == pytest.approx(0.996)
    assert linear_schedule(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert linear_schedule(100, 100, 0.996, 1.0) == pytest.approx(1.0)
    assert linear_schedule(1000, 100, 0.996, 1.0) == pytest.approx(1.0)


def test_warmup_then_cosine():
    lrs = [warmup_cosine(s, total=100, warmup=10, peak=1e-3, final=1e-5) for s in range(120)]
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(5e-4)
    assert lrs[10] == pytest.approx(1e-3)
    assert max(lrs) == pytest.approx(1e-3)
    # Monotone non-increasing after warm-up, reaching the final value and holding it.
    after = lrs[10:]
    assert all(a >= b - 1e-15 for a, b in zip(after, after[1:]))
    assert lrs[100] == pytest.approx(1e-5)
    assert lrs[119] == pytest.approx(1e-5)
    # Midpoint of the cosine is the mean of peak and final.
    assert lrs[55] == pytest.approx((1e-3 + 1e-5) / 2)


def test_cosine_degenerate_total():
    assert cosine_schedule(3, 0, 1.0, 0.5) == 0.5
    assert math.isfinite(warmup_cosine(0, total=5, warmup=5, peak=1.0, final=0.1))
