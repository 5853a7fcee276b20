"""The objectives take tensors; the multi-mask data2vec 2.0 / EAT mode: targets, one teacher pass, training."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ajepa.errors import CheckpointError
from ajepa.masking import MaskCollator, MaskingConfig
from ajepa.models import ENCODER_SIZES, PredictorConfig
from ajepa.objectives import ObjectiveConfig, build_objective, centre_per_position, instance_norm
from ajepa.train import compose_config
from ajepa.training.loop import build_model, train
from ajepa.training.model import AudioJEPA

ENCODER = replace(ENCODER_SIZES["mini"], embed_dim=32, depth=3, num_heads=2)
PREDICTOR = PredictorConfig(embed_dim=16, depth=1, num_heads=2)
GRID = (8, 6)
N = GRID[0] * GRID[1]
TINY = ["model.encoder.depth=2", "model.encoder.embed_dim=32", "model.encoder.num_heads=2",
        "model.predictor.depth=1", "model.predictor.embed_dim=16", "model.predictor.num_heads=2",
        "data.batch_size=4", "data.num_workers=0", "data.synthetic_size=64", "trainer.log_every=1",
        "trainer.progress=false", "trainer.tensorboard=false", "trainer.plots=false", "trainer.cpu_threads=1"]
MULTIMASK = ["objective=data2vec", "masking=inverse", "masking.copies=4"]


def test_instance_norm_uses_only_valid_tokens() -> None:
    h = torch.randn(2, 10, 4) * 3 + 5
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[1, 6:] = False
    h[1, 6:] = 1e4  # padding: must not move the statistics of clip 1
    out = instance_norm(h, valid)
    for b, n in ((0, 10), (1, 6)):
        assert torch.allclose(out[b, :n].mean(0), torch.zeros(4), atol=1e-5)
        assert torch.allclose(out[b, :n].var(0, unbiased=False), torch.ones(4), atol=1e-3)
    torch.testing.assert_close(instance_norm(h[:1]), instance_norm(h[:1], valid[:1]))


def test_centring_per_position_removes_what_the_position_predicts() -> None:
    position = torch.randn(1, N, 8)
    h = position + 0.1 * torch.randn(16, N, 8)
    centred = centre_per_position(h)
    assert torch.allclose(centred.mean(0), torch.zeros(N, 8), atol=1e-6)
    valid = torch.ones(16, N, dtype=torch.bool)
    valid[8:, N // 2:] = False  # half the clips are padded in the second half of the grid
    weighted = centre_per_position(h, valid)
    assert torch.allclose(weighted[:, : N // 2].mean(0), torch.zeros(N // 2, 8), atol=1e-6)
    assert torch.allclose(weighted[:8, N // 2:].mean(0), torch.zeros(N - N // 2, 8), atol=1e-6)


def test_data2vec_targets_are_the_mean_of_instance_normalised_top_blocks() -> None:
    objective = build_objective(ObjectiveConfig(name="data2vec", target_layers=2))
    assert objective.teacher_layers(3) == [2, 3] and not objective.teacher_norm
    assert build_objective(ObjectiveConfig(name="data2vec")).teacher_layers(3) == [1, 2, 3]  # every block
    states = [torch.randn(2, N, 8) for _ in range(2)]
    expected = (instance_norm(states[0]) + instance_norm(states[1])) / 2
    torch.testing.assert_close(objective.target_tokens(torch.zeros(2, N, 256), states, None), expected)
    with pytest.raises(Exception, match="target_layers"):
        build_objective(ObjectiveConfig(name="data2vec", target_layers=4)).teacher_layers(3)


def test_the_teacher_runs_once_per_clip_and_every_copy_reads_it(monkeypatch) -> None:
    torch.manual_seed(0)
    model = AudioJEPA(ENCODER, PREDICTOR, ObjectiveConfig(name="data2vec"))
    b, copies = 3, 4
    masks = MaskCollator(MaskingConfig(strategy="inverse", copies=copies), GRID, seed=0).masks(b, 0)
    tokens = torch.randn(b, N, ENCODER.patch_dim)
    calls: list[tuple[int, ...]] = []
    teacher_forward = model.target_encoder.forward_intermediates

    def counted(x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return teacher_forward(x, *args, **kwargs)

    monkeypatch.setattr(model.target_encoder, "forward_intermediates", counted)
    out = model(tokens, GRID, masks.context_idx, masks.target_idx)
    assert calls == [(b, N, ENCODER.patch_dim)]  # one pass over the B clips, not B * copies
    assert torch.isfinite(out["loss"])
    # Predicting every masked token of every copy: R * (N - keep) target embeddings are monitored.
    assert out["target_embeddings"].shape == (b * copies * masks.target_idx.shape[-1], ENCODER.embed_dim)
    # The targets each copy regresses are the clip's one set of teacher targets at the copy's masked cells.
    per_clip = model.targets(tokens, GRID, None)
    row = 5  # clip 1, copy 1
    torch.testing.assert_close(per_clip[row // copies][masks.target_idx[row, 0]],
                               model.targets(tokens[row // copies:row // copies + 1], GRID, None)[0][
                                   masks.target_idx[row, 0]])


def test_copies_must_divide_the_mask_rows() -> None:
    model = AudioJEPA(ENCODER, PREDICTOR, ObjectiveConfig(name="data2vec"))
    masks = MaskCollator(MaskingConfig(strategy="inverse", copies=2), GRID, seed=0).masks(3, 0)
    with pytest.raises(Exception, match="B \\* copies"):
        model(torch.randn(4, N, ENCODER.patch_dim), GRID, masks.context_idx, masks.target_idx)


def test_multimask_loss_falls_on_the_synthetic_data(tmp_path) -> None:
    result = train(compose_config([*TINY, *MULTIMASK, "trainer.max_steps=40", "optim.lr=3e-3",
                                   "optim.warmup_steps=5"]), tmp_path)
    losses = [r["loss"] for r in result.records]
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5  # about 0.72x in 40 steps


def test_multimask_run_resumes_exactly(tmp_path) -> None:
    args = [*TINY, *MULTIMASK, "trainer.max_steps=4", "trainer.checkpoint_every=2",
            "trainer.keep_step_checkpoints=true"]
    full = train(compose_config(args), tmp_path / "full")
    step2 = tmp_path / "full" / "checkpoints" / "step_000002.pt"
    resumed = train(compose_config([*args, f"resume={step2}"]), tmp_path / "resumed")
    assert [r["loss"] for r in resumed.records] == [r["loss"] for r in full.records][2:]


def test_position_centring_changes_the_targets_not_their_shape() -> None:
    torch.manual_seed(0)
    plain = AudioJEPA(ENCODER, PREDICTOR, ObjectiveConfig())
    centred = AudioJEPA(ENCODER, PREDICTOR, ObjectiveConfig(position_centring=True))
    centred.load_state_dict(plain.state_dict())
    tokens = torch.randn(6, N, ENCODER.patch_dim)
    a, b = plain.targets(tokens, GRID, None), centred.targets(tokens, GRID, None)
    assert a.shape == b.shape and not torch.allclose(a, b)
    torch.testing.assert_close(b, a - a.mean(0, keepdim=True))


def test_frozen_teacher_stays_fixed_while_the_student_learns(tmp_path) -> None:
    from ajepa.checkpoint import load_checkpoint
    from ajepa.errors import ConfigError
    from ajepa.inference.model_files import read_training_checkpoint

    teacher_run = train(compose_config([*TINY, "trainer.max_steps=2", "seed=1"]), tmp_path / "teacher")
    teacher = read_training_checkpoint(teacher_run.checkpoint)[0]
    student_run = train(compose_config([*TINY, "trainer.max_steps=3", f"objective.teacher={teacher_run.checkpoint}"]),
                        tmp_path / "student")
    model = load_checkpoint(student_run.checkpoint)["model"]
    for key, value in teacher.items():  # the EMA never touched the teacher
        assert torch.equal(model[f"target_encoder.{key}"], value)
    init = build_model(compose_config(TINY), torch.device("cpu")).state_dict()  # the student's start (seed 0)
    qkv = "context_encoder.blocks.0.attn.qkv.weight"
    assert not torch.equal(model[qkv], init[qkv])  # the student learned
    assert not torch.equal(init[qkv], teacher["blocks.0.attn.qkv.weight"])  # from its own init, not the teacher
    # The run's result is its student: a checkpoint's default encoder is the context encoder.
    state, cfg = read_training_checkpoint(student_run.checkpoint)
    assert cfg["source_encoder"] == "context"
    assert torch.equal(state["blocks.0.attn.qkv.weight"], model["context_encoder.blocks.0.attn.qkv.weight"])
    # A teacher of another shape, or for an objective without targets of an encoder, is refused.
    with pytest.raises(ConfigError, match="encoder"):
        train(compose_config([*TINY, "model.encoder.embed_dim=64", "trainer.max_steps=1",
                              f"objective.teacher={teacher_run.checkpoint}"]), tmp_path / "wide")
    with pytest.raises(ConfigError, match="teacher"):
        compose_config([*TINY, "objective=mae", f"+objective.teacher={teacher_run.checkpoint}"])
    with pytest.raises(ConfigError, match="must name a model file"):
        compose_config([*TINY, "objective.teacher=''"])


def test_a_frozen_teacher_run_resumes_from_its_checkpoint_alone(tmp_path) -> None:
    teacher_run = train(compose_config([*TINY, "trainer.max_steps=1", "seed=1"]), tmp_path / "teacher")
    args = [*TINY, "trainer.max_steps=4", "trainer.checkpoint_every=2", "trainer.keep_step_checkpoints=true",
            f"objective.teacher={teacher_run.checkpoint}"]
    full = train(compose_config(args), tmp_path / "full")
    teacher_run.checkpoint.unlink()  # the checkpoint holds the teacher: its file is read only at the start
    step2 = tmp_path / "full" / "checkpoints" / "step_000002.pt"
    resumed = train(compose_config([*args, f"resume={step2}"]), tmp_path / "resumed")
    assert [r["loss"] for r in resumed.records] == [r["loss"] for r in full.records][2:]
    with pytest.raises(CheckpointError):  # a fresh run does need it
        train(compose_config(args), tmp_path / "fresh")


def test_with_a_frozen_teacher_the_monitors_watch_the_student() -> None:
    torch.manual_seed(0)
    model = AudioJEPA(ENCODER, PREDICTOR, ObjectiveConfig(teacher="teacher.pt"))  # the loop loads the weights
    b = 3
    masks = MaskCollator(MaskingConfig(), GRID, seed=0).masks(b, 0)
    tokens = torch.randn(b, N, ENCODER.patch_dim)
    out = model(tokens, GRID, masks.context_idx, masks.target_idx)
    # The teacher's targets cannot collapse, the student's features can: (R * N_ctx, D), not the targets' count.
    z = model.context_encoder(tokens, GRID, keep_idx=masks.context_idx)
    torch.testing.assert_close(out["target_embeddings"], z.reshape(-1, ENCODER.embed_dim))
    assert model.learned_encoder is model.context_encoder
    before = [p.clone() for p in model.target_encoder.parameters()]
    model.update_target(0.5)  # no EMA onto a frozen teacher
    assert all(torch.equal(a, p) for a, p in zip(before, model.target_encoder.parameters()))
