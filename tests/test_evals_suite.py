"""Tests of ``evals.suite``: several methods x seeds x tasks, one report with mean ± std over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_evals import FakeEmbedder, _tone, _write, make_esc50, make_sc_archive  # tiny official layouts


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # never write into the real ~/.cache


def make_fsdd(root: Path, n_speakers: int = 5) -> Path:
    """FSDD layout: 3 digits x ``n_speakers`` speakers x 2 recordings, 8 kHz like the real set."""
    rng = np.random.default_rng(3)
    for d in range(3):
        for s in range(n_speakers):
            for i in (0, 7):
                _write(root / "recordings" / f"{d}_spk{chr(97 + s)}_{i}.wav", _tone(rng, 500.0 * (d + 1)), sr=8000)
    return root


def _data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_esc50(root / "esc10")
    make_sc_archive(root / "speech_commands", n_speakers=5)
    make_fsdd(root / "fsdd")
    return root


def _argv(tmp_path: Path, *methods: str, tasks: str = "esc10,speech_commands", probe: str = "linear") -> list[str]:
    argv = ["--data-root", str(tmp_path / "data"), "--tasks", tasks, "--probe", probe, "--seed", "0",
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--batch-size", "16",
            "--no-progress"]
    for m in methods:
        argv += ["--method", m]
    return argv


def test_suite_end_to_end_logmel_and_random_seeds(tmp_path: Path) -> None:
    from ajepa.evals import suite

    _data(tmp_path)
    argv = _argv(tmp_path, "logmel=logmel", "random=random:mini:0,random:mini:1", tasks="esc10,fsdd")
    assert suite.main(argv) == 0
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["complete"] is True
    assert payload["methods"] == {"logmel": ["logmel"], "random": ["random:mini:0", "random:mini:1"]}
    assert set(payload["results"]) == {"esc10", "fsdd"}
    assert payload["tasks"]["esc10"]["n_folds"] == 5 and "leave-one-fold-out" in payload["tasks"]["esc10"]["protocol"]
    assert payload["tasks"]["fsdd"]["n_folds"] == 5 and "grouped by speaker" in payload["tasks"]["fsdd"]["protocol"]
    for task, by_method in payload["results"].items():
        n_folds = payload["tasks"][task]["n_folds"]
        for method, r in by_method.items():
            members = r["members"]
            assert [m["member"] for m in members] == payload["methods"][method]
            accs = [m["accuracy"] for m in members]
            for m in members:
                assert len(m["fold_accuracies"]) == len(m["per_fold"]) == n_folds
                assert m["accuracy"] == pytest.approx(np.mean(m["fold_accuracies"]))
                assert np.array(m["confusion"]).sum() == payload["tasks"][task]["n_clips"]
            assert r["n"] == len(members) and r["mean"] == pytest.approx(np.mean(accs))
            assert r["std"] == (None if len(accs) == 1 else pytest.approx(np.std(accs, ddof=1)))
    # two random seeds are two different models, so two cache entries and (almost surely) two figures
    rnd = payload["results"]["esc10"]["random"]["members"]
    assert rnd[0]["model_key"] != rnd[1]["model_key"]
    assert payload["results"]["esc10"]["logmel"]["mean"] >= 0.9  # separable tones

    md = (tmp_path / "out" / "results.md").read_text()
    r = payload["results"]["fsdd"]["random"]
    assert f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f} (2 seeds)" in md
    assert "| logmel |" in md and "(1 seed)" in md and "`random:mini:1`" in md
    assert "python -m ajepa.evals.suite --data-root" in md and "grouped by speaker" in md
    assert payload["meta"]["average_layers"] == 1 and "`mean` pooling of the final block's output" in md
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 6  # 3 members x 2 tasks


def test_suite_with_stand_in_models_and_task_overrides(tmp_path: Path) -> None:
    from ajepa.evals import suite

    _data(tmp_path)
    fakes = {"a0": FakeEmbedder("fake:a0", bins=24), "a1": FakeEmbedder("fake:a1", bins=16)}
    for name in fakes:
        (tmp_path / name).write_text("stand-in weights")

    settings = []

    def resolve(spec, **kw):
        settings.append(kw["average_layers"])
        return f"fake:{Path(spec).name}", fakes[Path(spec).name]

    moved = tmp_path / "elsewhere"
    (tmp_path / "data" / "speech_commands").rename(moved)
    argv = _argv(tmp_path, f"a={tmp_path / 'a0'},{tmp_path / 'a1'}", probe="knn")
    argv += ["--data", f"speech_commands={moved}", "--average-layers", "all"]
    assert suite.main(argv, resolve=resolve) == 0
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    # --average-layers reaches every member and is recorded in the report.
    assert settings == ["all", "all"] and payload["meta"]["average_layers"] == "all"
    assert "mean of every layer's output (patch embedding and blocks) (`--average-layers all`" in (tmp_path / "out" / "results.md").read_text()
    assert payload["tasks"]["speech_commands"]["data"] == str(moved)
    r = payload["results"]["speech_commands"]["a"]
    assert r["n"] == 2 and r["mean"] > 0.5
    assert "grouped by speaker (no official lists)" in payload["tasks"]["speech_commands"]["protocol"]
    assert fakes["a0"].calls == 2 and fakes["a1"].calls == 2  # one embedding per task, nothing else


def test_missing_member_is_named_before_any_work(tmp_path: Path, capsys) -> None:
    from ajepa.evals import suite

    _data(tmp_path)
    missing = tmp_path / "runs" / "mae_s1" / "last.pt"
    assert suite.main(_argv(tmp_path, "logmel=logmel", f"mae={missing}")) == 2
    err = capsys.readouterr().err
    assert "'mae'" in err and str(missing) in err and "not found" in err
    assert not (tmp_path / "out").exists()  # failed before embedding anything
    assert suite.main(_argv(tmp_path, "random=random:mini:0,random:nowhere/last.pt:1")) == 2
    assert "random:nowhere/last.pt:1" in capsys.readouterr().err
    with pytest.raises(suite.SuiteError, match="twice"):
        suite.parse_method("jepa=a.pt,a.pt")
    assert suite.main(_argv(tmp_path, "logmel=logmel", tasks="esc10,nope")) == 2
    assert "nope" in capsys.readouterr().err


def test_missing_task_data_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from ajepa.evals import suite

    assert suite.main(_argv(tmp_path, "logmel=logmel", tasks="fsdd")) == 2
    err = capsys.readouterr().err
    assert "task fsdd" in err and "recordings/" in err


def test_random_member_copies_the_architecture_of_a_model(tmp_path: Path) -> None:
    from ajepa.inference import Embedder
    from ajepa.models.sizes import ENCODER_SIZES
    from dataclasses import replace

    from ajepa.evals.baselines import resolve_model

    cfg = replace(ENCODER_SIZES["mini"], depth=2)
    Embedder.from_config(cfg, clip_seconds=1.0, seed=5).save(tmp_path / "export")
    name, emb = resolve_model(f"random:{tmp_path / 'export'}:3")
    assert emb.embedder.encoder_config == cfg and emb.embedder.clip_seconds == 1.0
    assert emb.embedder.source_encoder == "random" and name.startswith("random-init:like:")
    _, again = resolve_model(f"random:{tmp_path / 'export'}:3")
    _, other = resolve_model(f"random:{tmp_path / 'export'}:4")
    assert again.key == emb.key != other.key
    w = {k: v for k, v in emb.embedder.encoder.state_dict().items()}
    w2 = again.embedder.encoder.state_dict()
    assert all(np.array_equal(w[k].numpy(), w2[k].numpy()) for k in w)  # same seed, same weights
    _, plain = resolve_model("random:mini:3")
    assert plain.key != emb.key and plain.embedder.clip_seconds == 2.0


def test_summarise() -> None:
    from ajepa.evals.suite import summarise

    assert summarise([0.5]) == {"mean": 0.5, "std": None, "n": 1}
    s = summarise([0.5, 0.7, 0.9])
    assert s["mean"] == pytest.approx(0.7) and s["std"] == pytest.approx(0.2) and s["n"] == 3


def test_mae_checkpoint_falls_back_to_its_context_encoder(tmp_path: Path) -> None:
    from dataclasses import asdict

    from ajepa.checkpoint import save_checkpoint
    from ajepa.errors import CheckpointError
    from ajepa.features.logmel import FrontendConfig
    from ajepa.models.sizes import ENCODER_SIZES
    from ajepa.models.vit import ViTEncoder
    from ajepa.evals.baselines import resolve_model

    enc = ENCODER_SIZES["mini"]
    vit = ViTEncoder(enc)
    state = {"step": 1, "model": {f"context_encoder.{k}": v for k, v in vit.state_dict().items()}, "optimizer": {},
             "rng": {}, "data": {"epoch": 0, "batch_in_epoch": 1}, "config": {"seed": 0},
             "frontend": asdict(FrontendConfig(norm_mean=-5.0)), "encoder": asdict(enc), "clip_seconds": 1.0}
    path = save_checkpoint(tmp_path / "mae" / "last.pt", state)
    _, emb = resolve_model(str(path), encoder=None)
    assert emb.embedder.source_encoder == "context" and emb.key.endswith(":context")
    with pytest.raises(CheckpointError, match="context"):
        resolve_model(str(path), encoder="target")
    _, rnd = resolve_model(f"random:{path}:0")
    assert rnd.embedder.clip_seconds == 1.0 and rnd.embedder.frontend_config.norm_mean == -5.0
    assert ":fe" in rnd.key  # another front end, another cache identity


def test_leave_one_corpus_out_members_resolve_per_task_and_report_exposure(tmp_path: Path) -> None:
    """``{holdout}`` picks each task's own checkpoint; the report says its corpus was held out of pretraining."""
    from ajepa.checkpoint import save_checkpoint
    from ajepa.evals import suite

    data = _data(tmp_path)
    loaded = []
    for holdout, excluded in (("esc", ["esc10"]), ("fsdd", ["fsdd"])):
        save_checkpoint(tmp_path / f"loco_{holdout}.pt",
                        {"config": {"data": {"source": "folder", "root": str(data), "exclude": excluded}}})

    def resolve(spec, **kw):
        loaded.append(Path(spec).name)
        return f"fake:{Path(spec).name}", FakeEmbedder(f"fake:{Path(spec).name}", bins=20)

    argv = _argv(tmp_path, f"jepa={tmp_path / 'loco_{holdout}.pt'}", tasks="esc10,fsdd", probe="knn")
    assert suite.main(argv, resolve=resolve) == 0
    assert loaded == ["loco_esc.pt", "loco_fsdd.pt"]  # one checkpoint per task
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    for task, holdout in (("esc10", "esc"), ("fsdd", "fsdd")):
        (member,) = payload["results"][task]["jepa"]["members"]
        assert member["resolved"].endswith(f"loco_{holdout}.pt") and member["pretraining"] == "held out"
    assert "(held out)" in (tmp_path / "out" / "results.md").read_text()
    # a typo in the template is caught before any work, naming the member it produced
    bad = _argv(tmp_path, f"jepa={tmp_path / 'loco_{holdout}_typo.pt'}", tasks="esc10", probe="knn")
    assert suite.main(bad, resolve=resolve) == 2


def _report(path, method, accuracies):
    """A minimal suite results.json with ``method``'s member accuracies on esc50."""
    import json

    members = [{"member": f"m{i}", "accuracy": a} for i, a in enumerate(accuracies)]
    path.write_text(json.dumps({"results": {"esc50": {method: {"members": members}}}}))
    return path


def test_scaling_plot_reads_members_and_subtracts_the_baseline(tmp_path, capsys):
    from ajepa.evals.scaling_plot import main as scaling_plot

    base = _report(tmp_path / "base.json", "random", [0.50, 0.52])
    short = _report(tmp_path / "short.json", "jepa", [0.55, 0.57])
    long = _report(tmp_path / "long.json", "jepa", [0.60])
    out = tmp_path / "curve.png"
    assert scaling_plot(["--task", "esc50", "--baseline", f"{base}:random", "--point", f"100={short}:jepa",
                         "--point", f"400={long}:jepa", "--seconds-per-step", "0.6", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| JEPA minus random | 100 | 1 | 2 | 56.0 ± 1.4 | +5.0 |" in table
    assert "| JEPA minus random | 400 | 4 | 1 | 60.0 | +9.0 |" in table
    assert out.stat().st_size > 0
    # --series starts a new curve: the points after it are its own, the earlier ones keep the default label
    assert scaling_plot(["--task", "esc50", "--baseline", f"{base}:random", "--point", f"100={short}:jepa",
                         "--series", "lr / 4", "--point", f"400={long}:jepa", "--point", f"100={long}:jepa",
                         "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| JEPA minus random | 100 | - | 2 | 56.0 ± 1.4 | +5.0 |" in table
    assert "| lr / 4 | 100 | - | 1 | 60.0 | +9.0 |" in table and "| lr / 4 | 400 | - | 1 | 60.0 | +9.0 |" in table
    assert "| JEPA minus random | 400 |" not in table
    with pytest.raises(KeyError, match="no 'mae'"):
        scaling_plot(["--task", "esc50", "--baseline", f"{base}:random", "--point", f"1={short}:mae", "--out", str(out)])


def test_scaling_plot_keeps_its_figures_in_a_csv_that_replots_the_curve(tmp_path, capsys):
    from ajepa.evals.scaling_plot import main as scaling_plot

    base = _report(tmp_path / "base.json", "random", [0.50, 0.52])
    short = _report(tmp_path / "short.json", "jepa", [0.55, 0.57])
    first = tmp_path / "first.png"
    assert scaling_plot(["--task", "esc50", "--baseline", f"{base}:random", "--point", f"100={short}:jepa",
                         "--out", str(first)]) == 0
    rows = (tmp_path / "first.csv").read_text().splitlines()
    assert rows[0] == "series,steps,accuracy,source" and len(rows) == 5
    assert f"JEPA minus random,100,57.0,{short}:jepa" in rows and f"baseline,,50.0,{base}:random" in rows
    capsys.readouterr()
    # the reports are gone: the CSV alone replots the curve, and a new point joins it
    base.unlink(), short.unlink()
    long = _report(tmp_path / "long.json", "jepa", [0.60])
    again = tmp_path / "again.png"
    assert scaling_plot(["--task", "esc50", "--from-csv", str(tmp_path / "first.csv"),
                         "--point", f"400={long}:jepa", "--out", str(again)]) == 0
    table = capsys.readouterr().out
    assert "| JEPA minus random | 100 | - | 2 | 56.0 ± 1.4 | +5.0 |" in table
    assert "| JEPA minus random | 400 | - | 1 | 60.0 | +9.0 |" in table
    assert len((tmp_path / "again.csv").read_text().splitlines()) == 6
    (tmp_path / "bad.csv").write_text("series,steps,accuracy,source\njepa,many,50,x\n")
    with pytest.raises(ValueError, match="line 2: bad steps"):
        scaling_plot(["--task", "esc50", "--from-csv", str(tmp_path / "bad.csv"), "--out", str(again)])
    with pytest.raises(SystemExit):  # no baseline anywhere
        scaling_plot(["--task", "esc50", "--point", f"400={long}:jepa", "--out", str(again)])
    assert "need a baseline" in capsys.readouterr().err
