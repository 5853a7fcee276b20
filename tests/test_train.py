"""Fast, in-process tests of the training loop: config composition, schedules wiring, loop outputs, resume.

Runs use a tiny setup (mini model cut to one layer, 1 s clips, batch 4, no workers) so each takes seconds.
Subprocess runs (CLI, SIGKILL + resume, DDP, torch.compile) are in test_train_e2e.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ajepa.checkpoint import load_checkpoint
from ajepa.training.config import run_config_from_dict
from ajepa.errors import ConfigError
from ajepa.masking import MaskCollator, MaskingConfig
from ajepa.models import ENCODER_SIZES
from ajepa.training.monitors import CollapseError
from ajepa.training.plots import mask_grid
from ajepa.train import compose_config, summary
from ajepa.training.loader import RankMaskCollate
from ajepa.training.optim import apply_hyperparams, build_optimizer, hyperparams_at
from ajepa.training.loop import build_model, train

TINY = [
    "model.encoder.depth=1", "model.predictor.depth=1", "data.clip_seconds=1.0", "data.batch_size=4",
    "data.num_workers=0", "data.synthetic_size=64", "trainer.log_every=1", "trainer.progress=false",
    "trainer.tensorboard=false", "trainer.plots=false",
]


def tiny(*overrides: str):
    return compose_config([*TINY, *overrides])


def losses(result) -> list[float]:
    return [r["loss"] for r in result.records]


# ------------------------------------------------------------------------------------------- config


def test_overrides_compose_into_typed_configs(tmp_path):
    cfg = compose_config(["model=tiny", f"data.root={tmp_path}", "trainer.max_steps=100", "objective=mae",
                          "masking=curriculum", "seed=3", "resume=true", "trainer.accumulate=2"])
    assert cfg.model.encoder == ENCODER_SIZES["tiny"]
    assert cfg.data.source == "folder" and cfg.data.root == str(tmp_path)
    assert cfg.objective.name == "mae"
    assert cfg.masking.strategy == "curriculum"
    # The curriculum clock is the global batch index: max_steps * accumulate batches.
    assert cfg.masking.curriculum_steps == 200
    assert (cfg.seed, cfg.resume, cfg.trainer.max_steps) == (3, True, 100)


def test_relative_data_root_is_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "audio").mkdir()
    monkeypatch.chdir(tmp_path)
    assert compose_config(["data.root=audio"]).data.root == str(tmp_path / "audio")


def test_model_presets_are_the_model_configs():
    from ajepa.paths import config_dir

    assert set(ENCODER_SIZES) == {p.stem for p in (config_dir() / "model").glob("*.yaml")}
    # The ViT shapes these names promise (ViT-S, ViT-B).
    small, base = ENCODER_SIZES["small"], ENCODER_SIZES["base"]
    assert (small.embed_dim, small.depth, small.num_heads, base.embed_dim, base.num_heads) == (384, 12, 6, 768, 12)
    assert compose_config(["model=tiny"]).model.encoder == ENCODER_SIZES["tiny"]


def test_defaults_are_synthetic_mini_jepa():
    cfg = compose_config()
    assert (cfg.model.name, cfg.data.source, cfg.objective.name) == ("mini", "synthetic", "jepa")


@pytest.mark.parametrize("overrides, message", [
    (["data=folder"], "data.root"),
    (["data=shards"], "data.root"),
    (["+trainer.bogus=1"], "bogus"),
    (["trainer.precision=fp16"], "precision"),
    (["masking.strategy=diagonal"], "strategy"),
])
def test_bad_configs_raise_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose_config(overrides)


def test_effective_config_round_trips():
    cfg = tiny("data.root=/some/where")
    assert run_config_from_dict(asdict(cfg)) == cfg


# ---------------------------------------------------------------------------------------- schedules


def test_schedules_reach_their_endpoints():
    optim = tiny("optim.start_lr=1e-5", "optim.lr=1e-3", "optim.min_lr=1e-6", "optim.warmup_steps=10").optim
    assert hyperparams_at(0, optim, 100).lr == pytest.approx(1e-5)
    assert hyperparams_at(10, optim, 100).lr == pytest.approx(1e-3)
    end = hyperparams_at(100, optim, 100)
    assert end.lr == pytest.approx(1e-6)
    assert (end.weight_decay, end.momentum) == pytest.approx((0.4, 1.0))
    start = hyperparams_at(0, optim, 100)
    assert (start.weight_decay, start.momentum) == pytest.approx((0.04, 0.996))
    lrs = [hyperparams_at(s, optim, 100).lr for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_ema_horizon_ties_the_start_momentum_to_the_run_length():
    for steps in (1600, 6400):
        optim = tiny("optim.ema_horizon=0.16").optim
        momentum = hyperparams_at(0, optim, steps).momentum
        assert 1.0 / (1.0 - momentum) == pytest.approx(0.16 * steps)  # the averaging horizon
        assert hyperparams_at(steps, optim, steps).momentum == pytest.approx(1.0)
    assert hyperparams_at(0, tiny("optim.ema_horizon=0.16").optim, 1600).momentum == pytest.approx(0.99609375)
    with pytest.raises(ConfigError, match="ema_horizon"):
        tiny("optim.ema_horizon=0")


def test_cosine_ema_schedule_stays_near_its_start_longer_than_linear():
    linear = tiny("optim.ema_momentum=0.99").optim
    cosine = tiny("optim.ema_momentum=0.99", "optim.ema_schedule=cosine").optim
    for optim in (linear, cosine):
        assert hyperparams_at(0, optim, 100).momentum == pytest.approx(0.99)
        assert hyperparams_at(100, optim, 100).momentum == pytest.approx(1.0)
        assert hyperparams_at(50, optim, 100).momentum == pytest.approx(0.995)
    assert hyperparams_at(25, cosine, 100).momentum < hyperparams_at(25, linear, 100).momentum
    assert hyperparams_at(75, cosine, 100).momentum > hyperparams_at(75, linear, 100).momentum
    with pytest.raises(ConfigError, match="ema_schedule"):
        tiny("optim.ema_schedule=step")


def test_weight_decay_schedule_spares_norms_and_biases():
    cfg = tiny()
    model = build_model(cfg, torch.device("cpu"))
    optimizer = build_optimizer(model, cfg.optim, torch.device("cpu"))
    apply_hyperparams(optimizer, hyperparams_at(50, cfg.optim, 100))
    decay = {g["name"]: g["weight_decay"] for g in optimizer.param_groups}
    assert decay["no_decay"] == 0.0
    assert decay["decay"] == pytest.approx(0.04 + 0.5 * (0.4 - 0.04))
    assert all(g["lr"] == pytest.approx(hyperparams_at(50, cfg.optim, 100).lr) for g in optimizer.param_groups)


def test_model_init_depends_only_on_seed():
    state = torch.random.get_rng_state()
    a = build_model(tiny("seed=1"), torch.device("cpu")).state_dict()
    torch.manual_seed(12345)  # the caller's global RNG must not matter
    b = build_model(tiny("seed=1"), torch.device("cpu")).state_dict()
    c = build_model(tiny("seed=2"), torch.device("cpu")).state_dict()
    torch.random.set_rng_state(state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# -------------------------------------------------------------------------------------- data / masks


def test_rank_collates_together_equal_the_single_process_batch():
    grid = (8, 7)
    collator = MaskCollator(MaskingConfig(), grid, seed=5)
    samples = [{"wav": torch.full((400,), float(i)), "length": 400, "batch_index": 9, "path": f"clip{i}"}
               for i in range(4)]
    whole = RankMaskCollate(collator)(samples)
    parts = [RankMaskCollate(collator, rank, 2)(samples[2 * rank:2 * rank + 2]) for rank in range(2)]
    for key in ("wav", "context_idx", "target_idx"):
        assert torch.equal(torch.cat([p[key] for p in parts]), whole[key])


def test_mask_grid_uses_time_major_token_order():
    grid = (3, 4)  # F_p = 3, T_p = 4
    labels = mask_grid(grid, torch.tensor([0, 1]), torch.tensor([[3 * 2 + 1]]))  # token (f=1, t=2)
    assert labels.shape == grid
    assert labels[0, 0] == 1 and labels[1, 0] == 1
    assert labels[1, 2] == 2
    assert (labels > 0).sum() == 3


# ------------------------------------------------------------------------------------------ the loop


def test_run_writes_metrics_checkpoint_and_plots(tmp_path):
    cfg = tiny("trainer.max_steps=3", "trainer.checkpoint_every=2", "trainer.keep_step_checkpoints=true",
               "trainer.plots=true", "trainer.tensorboard=true")
    rng_before = torch.random.get_rng_state()
    result = train(cfg, tmp_path)
    assert torch.equal(torch.random.get_rng_state(), rng_before)

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert {"step", "loss", "lr", "wd", "momentum", "target_std", "effective_rank", "clips_per_s"} <= set(r)
        assert np.isfinite(r["loss"]) and r["effective_rank"] >= 1.0
        assert r["loss_prediction"] == pytest.approx(r["loss"])  # no VICReg terms: the loss is the prediction
        assert "loss_variance" not in r
    assert records[0]["momentum"] < records[-1]["momentum"]

    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")  # weights_only=True inside
    assert ckpt["step"] == 3
    assert {"model", "optimizer", "rng", "data", "config"} <= set(ckpt)
    assert not {"frontend", "encoder", "clip_seconds"} & set(ckpt)  # the run config is their one source
    prefixes = {k.split(".")[0] for k in ckpt["model"]}
    assert prefixes == {"context_encoder", "target_encoder", "predictor"}
    assert ckpt["config"]["model"]["encoder"] == asdict(cfg.model.encoder)
    assert ckpt["config"]["data"]["clip_seconds"] == 1.0
    assert ckpt["data"]["global_batch_index"] == 3
    assert run_config_from_dict(ckpt["config"]) == cfg
    assert (tmp_path / "checkpoints" / "step_000002.pt").is_file()

    for name in ("loss", "rank", "masks"):
        path = tmp_path / "plots" / f"{name}.png"
        assert result.plots[name] == path and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    assert result.checkpoint.is_absolute() and result.final_loss == records[-1]["loss"]


def test_resume_from_step_checkpoint_repeats_the_tail(tmp_path):
    args = ["trainer.max_steps=4", "trainer.checkpoint_every=2", "trainer.keep_step_checkpoints=true",
            "model.encoder.drop_path=0.2"]  # drop-path makes the per-step RNG part of what must match
    full = train(tiny(*args), tmp_path / "full")
    step2 = tmp_path / "full" / "checkpoints" / "step_000002.pt"
    resumed = train(tiny(*args, f"resume={step2}"), tmp_path / "resumed")
    assert [r["step"] for r in resumed.records] == [3, 4]
    assert losses(resumed) == losses(full)[2:]
    assert summary(resumed).splitlines()[0].startswith("Training finished: step 4 (2 steps this time, resumed at step 2)")
    assert summary(full).splitlines()[0].startswith("Training finished: 4 steps in")


def test_resume_auto_on_a_finished_run_trains_nothing_and_says_so(tmp_path):
    full = train(tiny("trainer.max_steps=2"), tmp_path)
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    again = train(tiny("trainer.max_steps=2", "resume=auto"), tmp_path)
    assert again.steps == 2 and again.start_step == 2
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before
    assert summary(again).splitlines()[0] == (
        f"Nothing to train: the run had already finished at step 2, final loss {full.final_loss:.4f}")


def test_resume_true_without_checkpoint_explains(tmp_path):
    with pytest.raises(ConfigError, match="hydra.run.dir"):
        train(tiny("resume=true"), tmp_path)


def test_resume_refuses_a_different_global_batch(tmp_path):
    train(tiny("trainer.max_steps=1"), tmp_path)
    with pytest.raises(ConfigError, match="global batch"):
        train(tiny("trainer.max_steps=2", "data.batch_size=2", "resume=true"), tmp_path)


def test_accumulation_consumes_batches_per_step(tmp_path):
    result = train(tiny("trainer.max_steps=2", "trainer.accumulate=2"), tmp_path)
    assert load_checkpoint(result.checkpoint)["data"]["global_batch_index"] == 4


def test_bf16_autocast_and_mae_objective_run_on_cpu(tmp_path):
    result = train(tiny("trainer.max_steps=1", "trainer.precision=bf16", "objective=mae"), tmp_path)
    assert np.isfinite(result.final_loss)
    assert not any(k.startswith("target_encoder.") for k in load_checkpoint(result.checkpoint)["model"])


def test_vicreg_terms_are_logged_and_add_up_to_the_loss(tmp_path):
    train(tiny("trainer.max_steps=2", "objective.variance_weight=0.5", "objective.covariance_weight=0.04"), tmp_path)
    for r in (json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()):
        assert r["loss_variance"] > 0 and r["loss_covariance"] > 0
        expected = r["loss_prediction"] + 0.5 * r["loss_variance"] + 0.04 * r["loss_covariance"]
        assert r["loss"] == pytest.approx(expected, rel=1e-5)


def test_collapse_guard_aborts_after_checkpoint(tmp_path):
    cfg = tiny("trainer.max_steps=5", "trainer.collapse.threshold=1e9", "trainer.collapse.patience=2",
               "trainer.collapse.abort=true")
    with pytest.raises(CollapseError):
        train(cfg, tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2


def test_folder_source_skips_and_reports_unreadable_files(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        sf.write(audio / f"clip{i}.wav", (0.1 * rng.standard_normal(8000 + 2000 * i)).astype(np.float32), 16000)
    (audio / "broken.wav").write_bytes(b"RIFF not really a wave file")
    # 6 files, batch 6: every step reads every file, including the broken one.
    result = train(tiny("trainer.max_steps=2", f"data.root={audio}", "data.batch_size=6"), tmp_path / "run")
    assert result.skipped_files == [str(audio / "broken.wav")]
    assert all(np.isfinite(losses(result)))


def noise_folder(folder, lengths, seed=0):
    """``folder`` of 16 kHz noise WAVs of the given lengths (samples): clip00.wav, clip01.wav, ..."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i, n in enumerate(lengths):
        sf.write(folder / f"clip{i:02d}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
    return folder


def test_several_crops_per_item_train_with_masks_for_every_crop(tmp_path):
    audio = noise_folder(tmp_path / "audio", [48000] * 4)
    cfg = tiny("trainer.max_steps=2", f"data.root={audio}", "data.batch_size=2", "data.crops_per_item=3",
               "data.clip_seconds=2.0", "masking=inverse", "masking.copies=2", "objective=data2vec")
    result = train(cfg, tmp_path / "run")
    assert all(np.isfinite(losses(result)))
    # 2 files x 3 crops = 6 clips a step, each masked twice.
    assert result.records[-1]["clips_per_s"] > 0
    grid = (8, 13)
    batch = RankMaskCollate(MaskCollator(cfg.masking, grid, 0))(
        [{"wav": np.zeros((3, 32000), np.float32), "length": [32000] * 3, "batch_index": 0, "path": "x"}] * 2)
    assert batch["wav"].shape == (6, 32000) and batch["context_idx"].shape[0] == 12
    with pytest.raises(ConfigError, match="crops_per_item"):
        tiny("data.crops_per_item=2")  # the synthetic source has no files to crop


def test_shards_source_trains_and_resumes_exactly(tmp_path):
    from ajepa.data.shard import write_shards

    audio = noise_folder(tmp_path / "audio", [12000] * 12, seed=1)
    write_shards(audio, tmp_path / "shards", shard_size=4, progress=False)
    args = ["data=shards", f"data.root={tmp_path / 'shards'}", "data.shuffle_buffer=4", "trainer.max_steps=4",
            "trainer.checkpoint_every=2", "trainer.keep_step_checkpoints=true"]
    full = train(tiny(*args), tmp_path / "full")
    step2 = tmp_path / "full" / "checkpoints" / "step_000002.pt"
    resumed = train(tiny(*args, f"resume={step2}"), tmp_path / "resumed")
    assert losses(resumed) == losses(full)[2:]


def test_dist_info_from_torchrun_or_slurm_environment():
    from ajepa.training.distributed import env_dist_info, rendezvous_url

    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "SLURM_NTASKS": "8", "SLURM_PROCID": "5"}
    assert (env_dist_info(torchrun).rank, env_dist_info(torchrun).world_size) == (3, 4)
    assert rendezvous_url(torchrun) == "env://"
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123",
             "MASTER_ADDR": "node7"}
    info = env_dist_info(slurm)
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (5, 8, 1, False)
    assert rendezvous_url(slurm) == "tcp://node7:20123"
    assert not env_dist_info({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}).enabled


def test_cpu_threads_leave_cores_to_the_data_workers(monkeypatch):
    from ajepa.runtime import cpu_thread_count

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert cpu_thread_count("auto", num_workers=2, procs_per_node=1) == 6
    assert cpu_thread_count("auto", num_workers=1, procs_per_node=2) == 3
    assert cpu_thread_count("auto", num_workers=9, procs_per_node=1) == 1
    assert cpu_thread_count(3, num_workers=2, procs_per_node=1) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert cpu_thread_count("auto", num_workers=2, procs_per_node=1) is None


def test_cpu15_experiment_preset_composes(tmp_path):
    from ajepa.train import compose_config

    cfg = compose_config(["experiment=cpu15", f"data.root={tmp_path}", "objective=mae"])
    assert cfg.data.source == "folder" and cfg.data.clip_seconds == 1.0 and cfg.data.batch_size == 32
    assert cfg.data.sampling == "duration" and cfg.objective.variance_weight == 1.0
    assert cfg.model.predictor.embed_dim == 128 and cfg.model.predictor.depth == 4
    assert cfg.optim.final_weight_decay == cfg.optim.weight_decay == 0.04
    assert cfg.model.encoder.embed_dim == 192 and cfg.model.encoder.depth == 4
    assert cfg.trainer.max_steps == 1600 and cfg.objective.name == "mae" and cfg.objective.ignore_padding
    assert cfg.model.name == "cpu15-w192" and cfg.data.exclude == ()


def test_holdout_group_sets_the_excluded_corpora(tmp_path):
    from ajepa.training.config import ConfigError
    from ajepa.train import compose_config

    cfg = compose_config(["experiment=cpu15", "holdout=esc", f"data.root={tmp_path}"])
    assert cfg.data.exclude == ("esc10", "esc50_dev") and cfg.model.encoder.embed_dim == 192
    assert compose_config(["holdout=fsdd", f"data.root={tmp_path}"]).data.exclude == ("fsdd",)
    with pytest.raises(ConfigError, match="folder source"):
        compose_config(["holdout=fsdd"])  # the synthetic corpus has no folders to leave out


def test_deterministic_scope_restores_the_callers_setting():
    from ajepa.runtime import deterministic as _deterministic

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        for enabled in (True, False):
            with _deterministic(enabled):
                pass
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_plots_cli_compares_runs(tmp_path) -> None:
    from ajepa.training.plots import main as plots_main

    for name, rank in (("a", 10.0), ("b", 40.0)):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.jsonl").write_text("".join(
            json.dumps({"step": s, "effective_rank": rank + s}) + "\n" for s in (10, 20, 30)))
    out = tmp_path / "rank.png"
    assert plots_main(["effective_rank", str(out), f"A={tmp_path / 'a'}", f"B={tmp_path / 'b'}"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    with pytest.raises(SystemExit):
        plots_main(["effective_rank", str(out), f"C={tmp_path / 'missing'}"])


def test_loss_plot_draws_each_logged_loss_term(tmp_path, monkeypatch) -> None:
    import ajepa.training.plots as plots

    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault(
        Path(path).name, [line.get_label() for line in fig.axes[0].get_lines()]))
    records = [{"step": s, "loss": 1.0 / s, "loss_prediction": 0.5 / s, "loss_variance": 0.1} for s in (1, 2, 3)]
    plots.plot_loss(records, tmp_path / "terms.png")
    assert drawn["terms.png"] == ["loss", "loss_prediction", "loss_variance"]
    plots.plot_loss([{"step": 1, "loss": 1.0}], tmp_path / "plain.png")  # older runs: the total alone
    assert len(drawn["plain.png"]) == 1
    runs = {"A": records, "B": records}
    plots.plot_curves(runs, ["loss", "loss_variance"], tmp_path / "two.png", title="t", ylabel="y")
    assert drawn["two.png"] == ["A loss", "A loss_variance", "B loss", "B loss_variance"]
