"""The one-command leave-one-corpus-out reproduction (evals.loco): its plan and how it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ajepa.evals import loco
from ajepa.evals.suite import TASKS, member_for_task, parse_method

ROOT = Path(__file__).resolve().parents[1]


def test_every_holdout_has_its_config_and_task():
    for holdout, task in loco.HOLDOUT_TASKS.items():
        assert (ROOT / "configs" / "holdout" / f"{holdout}.yaml").is_file()
        assert TASKS[task].holdout == holdout


def test_plan_trains_each_run_then_runs_one_suite():
    commands = loco.plan("../shared/data", holdouts=["esc", "fsdd"], seeds=[0, 1], random_seeds=[0, 1],
                         python="py", train_overrides=["trainer.max_steps=10"])
    train, suite = commands[:-1], commands[-1]
    assert len(train) == 2 * 2 * 2
    dirs = [c[-1] for c in train]
    assert dirs[0] == "hydra.run.dir=runs/loco_esc_s0"
    assert "hydra.run.dir=runs/loco_mae_fsdd_s1" in dirs and len(set(dirs)) == len(dirs)
    for c in train:
        assert c[:3] == ["py", "-m", "ajepa.train"]
        assert {"experiment=cpu15", "resume=auto", "data.root=../shared/data", "trainer.max_steps=10"} <= set(c)
    mae_fsdd_s1 = train[dirs.index("hydra.run.dir=runs/loco_mae_fsdd_s1")]
    assert {"holdout=fsdd", "objective=mae", "seed=1"} <= set(mae_fsdd_s1)

    assert suite[:3] == ["py", "-m", "ajepa.evals.suite"]
    assert suite[suite.index("--tasks") + 1] == "esc50,fsdd"
    assert suite[suite.index("--probe") + 1] == "logreg-cv"
    assert suite[suite.index("--pooling") + 1] == "freqcat+std"
    methods = dict(parse_method(suite[i + 1]) for i, a in enumerate(suite) if a == "--method")
    assert set(methods) == {"jepa", "mae", "random", "logmel"}
    # each task is read out by the runs that left its corpus out
    assert [member_for_task(m, "fsdd") for m in methods["mae"]] == [
        "runs/loco_mae_fsdd_s0/checkpoints/last.pt", "runs/loco_mae_fsdd_s1/checkpoints/last.pt"]
    assert [member_for_task(m, "esc50") for m in methods["jepa"]][1] == "runs/loco_esc_s1/checkpoints/last.pt"
    assert methods["random"] == ["random:runs/loco_esc_s0/checkpoints/last.pt:0",
                                 "random:runs/loco_esc_s0/checkpoints/last.pt:1"]


@pytest.mark.parametrize("kwargs, message", [
    ({"holdouts": ["esc", "audioset"]}, "unknown holdout 'audioset'"),
    ({"objectives": ["byol"]}, "unknown objective 'byol'"),
    ({"seeds": [0, 0]}, "listed twice"),
    ({"seeds": []}, "at least one"),
])
def test_plan_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        loco.plan("data", **kwargs)


def test_run_plan_stops_at_the_first_failure(capsys):
    ran = []

    def runner(command):
        ran.append(command[0])
        return 3 if command[0] == "b" else 0

    assert loco.run_plan([["a"], ["b"], ["c"]], runner=runner) == 3
    assert ran == ["a", "b"]
    assert "command 2 of 3 failed with exit status 3" in capsys.readouterr().err
    assert loco.run_plan([["a"], ["c"]], runner=runner) == 0


def test_dry_run_prints_the_commands_and_runs_nothing(capsys, tmp_path):
    assert loco.main(["--data-root", str(tmp_path), "--holdouts", "esc", "--seeds", "0", "--objectives", "jepa",
                      "--runs", str(tmp_path / "runs"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert "ajepa.train" in lines[0] and "holdout=esc" in lines[0]
    assert "evals.suite" in lines[1] and "--tasks esc50" in lines[1]
    assert not (tmp_path / "runs").exists()


def test_cli_names_a_bad_holdout(capsys):
    with pytest.raises(SystemExit):
        loco.main(["--data-root", "d", "--holdouts", "nope", "--dry-run"])
    assert "unknown holdout 'nope'" in capsys.readouterr().err
