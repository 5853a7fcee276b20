import pytest
import torch

from ajepa.inference.quantization import SCALE_SUFFIX, dequantize_int8, quantize_int8


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 5, generator=g)
    w[2] *= 100.0  # one row with a far larger range must not cost the others their precision
    w[4] = 0.0
    return {"fc.weight": w, "fc.bias": torch.randn(6, generator=g),
            "patch.weight": torch.randn(4, 1, 3, 3, generator=g), "pos": torch.randn(1, 7, 5, generator=g),
            "steps": torch.tensor([3, 4], dtype=torch.int64)}


def test_matrices_become_int8_with_one_scale_per_output_channel_and_vectors_float16():
    state = _state()
    before = {k: v.clone() for k, v in state.items()}
    q = quantize_int8(state)
    assert q["fc.weight"].dtype == torch.int8 and q["fc.weight" + SCALE_SUFFIX].shape == (6,)
    assert q["patch.weight"].dtype == torch.int8 and q["patch.weight" + SCALE_SUFFIX].shape == (4,)
    assert q["fc.bias"].dtype == torch.float16 and q["pos"].dtype == torch.float16  # a vector; one output channel
    assert q["fc.weight"].abs().max() <= 127
    assert q["steps"].dtype == torch.int64 and torch.equal(q["steps"], state["steps"])  # integers are not floats
    assert all(torch.equal(state[k], before[k]) for k in state)  # the input is not modified


def test_round_trip_error_is_at_most_half_a_step_of_each_row():
    state = _state()
    q = quantize_int8(state)
    back = dequantize_int8(q)
    assert set(back) == set(state)
    assert back["fc.weight"].dtype == back["patch.weight"].dtype == torch.float32
    assert back["fc.bias"].dtype == torch.float16  # left as stored; loading copies it into float32 parameters
    for name in ("fc.weight", "patch.weight"):
        w, r = state[name], back[name]
        step = w.reshape(w.shape[0], -1).abs().amax(1) / 127
        err = (w - r).reshape(w.shape[0], -1).abs().amax(1)
        assert (err <= step / 2 + 1e-7).all()
    assert torch.equal(back["fc.weight"][4], torch.zeros(5))  # an all-zero row stays exactly zero
    assert (state["fc.weight"][0] - back["fc.weight"][0]).abs().max() < 0.02  # its own scale, not row 2's
    assert torch.equal(back["fc.bias"], state["fc.bias"].half())


def test_inconsistent_int8_tensors_are_refused():
    q = quantize_int8(_state())
    missing = {k: v for k, v in q.items() if k != "fc.weight" + SCALE_SUFFIX}
    with pytest.raises(ValueError, match="without its scale"):
        dequantize_int8(missing)
    with pytest.raises(ValueError, match="without its int8 tensor"):
        dequantize_int8({k: v for k, v in q.items() if k != "fc.weight"})
    with pytest.raises(ValueError, match="does not match"):
        dequantize_int8({**q, "fc.weight" + SCALE_SUFFIX: torch.ones(5)})
    with pytest.raises(ValueError, match="stored as"):
        dequantize_int8({**q, "fc.weight": q["fc.weight"].float()})


def test_reserved_names_and_non_finite_weights_are_refused():
    with pytest.raises(ValueError, match="reserved suffix"):
        quantize_int8({"w" + SCALE_SUFFIX: torch.ones(2, 2)})
    with pytest.raises(ValueError, match="reserved for quantised"):
        quantize_int8({"w": torch.ones(2, 2, dtype=torch.int8)})
    with pytest.raises(ValueError, match="NaN"):
        quantize_int8({"w": torch.tensor([[1.0, float("nan")], [0.0, 1.0]])})
