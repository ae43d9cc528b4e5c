"""Retrieval end to end on a simulated dataset: every encoder learns far above chance; runs, resume, sweeps;
and the test partition cannot reach training or selection."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from eeg2image.cli import app
from eeg2image.data.preprocess import preprocess_subject, preset_config
from eeg2image.data.simulate import simulate_dataset, simulation_config
from eeg2image.evaluation.evaluate import evaluate_run
from eeg2image.features.oracle import embed_simulation_features
from eeg2image.io import DataFormatError
from eeg2image.training.run import load_weights, run_config, train_run

N_TEST = 40  # chance: top-1 2.5%, top-5 12.5%


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    """300 training images, 40 test images, stronger image-specific EEG than the default simulation,
    preprocessed like the authors' files (17 channels, 100 Hz), oracle targets (the generating features)."""
    root = tmp_path_factory.mktemp("learnable")
    cfg = simulation_config("small", seed=5, n_test_concepts=N_TEST, specific_uv=12.0)
    simulate_dataset(root / "ds", cfg, progress=False)
    preprocess_subject(root / "ds", root / "pre", 1, preset_config("authors"), progress=False)
    embed_simulation_features(root / "ds", root / "store")
    return root


def config_for(root, **over):
    base = {"data.preprocessed": str(root / "pre"), "data.store": str(root / "store"), "data.dataset": str(root / "ds"),
            "data.image_encoder": "sim-features", "data.val_fraction": 0.0, "train.epochs": 30,
            "train.batch_size": 64, "train.lr": 1e-3, "train.target": {"adapter": False}, "seeds": [0]}  # fmt: skip
    return run_config(None, None, **{**base, **over})


def quiet(*_a, **_k):
    return None


@pytest.mark.parametrize(
    ("encoder", "over"),
    [("linear", {}), ("ved", {}), ("nice", {}), ("atms", {}), ("eegnet", {"train.lr": 3e-3}), ("shallow", {})],
)
def test_every_encoder_learns_far_above_chance(learnable, tmp_path, encoder, over):
    cfg = config_for(learnable, **{"train.eeg_encoder": encoder, **over})
    train_run(cfg, tmp_path / "run", progress=False, log=quiet)
    a = evaluate_run(tmp_path / "run", log=quiet)["final"]["sub-01"]["aggregate"]
    # measured (seed 0): top-1 0.33 (shallow) .. 0.78 (atms); chance 0.025 / 0.125
    assert a["top1"]["mean"] >= 8 / N_TEST, a
    assert a["top5"]["mean"] >= 0.5, a


def test_run_folder_outputs_resume_and_refusals(learnable, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(run), "--preprocessed", str(learnable / "pre"), "--store", str(learnable / "store"),
            "--dataset", str(learnable / "ds"), "--encoder", "ved", "--epochs", "6", "--seeds", "0-1", "--quiet",
            "--set", "data.image_encoder=sim-features", "--set", "data.val_fraction=0.2",
            "--set", "train.batch_size=64", "--set", "train.target.adapter=false"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    unit = ["units/sub-01/" + f for f in ("final.safetensors", "best.safetensors", "history.json", "curves.png",
                                          "checkpoint/state.safetensors")]  # fmt: skip
    for f in ["config.yaml", "manifest.json", *unit]:
        assert (run / f).is_file(), f
    res = CliRunner().invoke(app, ["evaluate", str(run)])
    assert res.exit_code == 0, res.output
    m = json.loads((run / "metrics.json").read_text())
    sub = m["final"]["sub-01"]
    assert set(sub["per_seed"]) == {"0", "1"}
    for k in ("top1", "top5", "mrr", "2way_top1", "4way_top1", "10way_top1"):
        assert 0 <= sub["per_seed"]["0"][k] <= 1 and sub["aggregate"][k]["n"] == 2
    assert "50way_top1" not in sub["per_seed"]["0"]  # k-way needs k < number of test images
    assert m["validation_selected"]["sub-01"]["epoch"] is not None
    assert "TRANSDUCTIVE" in m["transductive_hungarian"]["note"] and "final" in m["transductive_hungarian"]
    report = (run / "report.md").read_text()
    assert "## final" in report and "## validation-selected" in report and "TRANSDUCTIVE" in report
    assert (run / "top5.png").stat().st_size > 10_000
    sets = json.loads((run / "distractors.json").read_text())[str(N_TEST)]["sets"]
    assert len(sets["10"]) == N_TEST and len(sets["10"][0]) == 9
    first = (run / "metrics.json").read_text()
    evaluate_run(run, log=quiet)  # the same saved distractors: the same numbers
    assert json.loads((run / "metrics.json").read_text())["final"] == json.loads(first)["final"]

    # a second train call with the same config finds the run done; another config is refused, nothing touched
    before = (run / "units/sub-01/final.safetensors").read_bytes()
    res = CliRunner().invoke(app, [*args[:-1], "train.target.adapter=true"])
    assert res.exit_code != 0 and "another configuration" in str(res.exception)
    assert (run / "units/sub-01/final.safetensors").read_bytes() == before


def test_test_partition_never_reaches_training_or_selection(learnable, tmp_path):
    """Train once on the intact data and once with every test file destroyed: identical weights (final and
    validation-selected) and histories. Evaluation on the damaged copy then fails: it is what reads them."""
    damaged = tmp_path / "damaged"
    shutil.copytree(learnable / "pre", damaged / "pre")
    shutil.copytree(learnable / "store", damaged / "store")
    (damaged / "pre/sub-01/test_eeg.npy").write_bytes(b"destroyed")
    for f in (damaged / "store/test").iterdir():
        f.write_bytes(b"destroyed")
    over = {"train.eeg_encoder": "ved", "train.epochs": 4, "data.val_fraction": 0.2, "seeds": [0, 1]}
    train_run(config_for(learnable, **over), tmp_path / "a", progress=False, log=quiet)
    cfg_b = config_for(learnable, **over)
    cfg_b.data.preprocessed, cfg_b.data.store = str(damaged / "pre"), str(damaged / "store")
    train_run(cfg_b, tmp_path / "b", progress=False, log=quiet)
    for name in ("final", "best"):
        wa, _ = load_weights(tmp_path / f"a/units/sub-01/{name}.safetensors")
        wb, _ = load_weights(tmp_path / f"b/units/sub-01/{name}.safetensors")
        assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)
    ha = json.loads((tmp_path / "a/units/sub-01/history.json").read_text())["epochs"]
    hb = json.loads((tmp_path / "b/units/sub-01/history.json").read_text())["epochs"]
    assert ha == hb
    with pytest.raises(DataFormatError):
        evaluate_run(tmp_path / "b", log=quiet)


def test_sweep_runs_jobs_and_merges_seeds(learnable, tmp_path):
    cfg = tmp_path / "ved.yaml"
    cfg.write_text(
        f"data: {{preprocessed: {learnable / 'pre'}, store: {learnable / 'store'}, image_encoder: sim-features,"
        " val_fraction: 0.0}\ntrain: {eeg_encoder: ved, epochs: 3, batch_size: 64, target: {adapter: false}}\n"
    )
    out = tmp_path / "sweep"
    res = CliRunner().invoke(app, ["sweep", str(out), "--config", str(cfg), "--seeds", "0-2", "--seeds-per-job", "2",
                                   "--execute"])  # fmt: skip
    assert res.exit_code == 0, res.output
    jobs = (out / "jobs.txt").read_text().splitlines()
    assert len(jobs) == 2 and "--seeds 0,1" in jobs[0] and "--seeds 2" in jobs[1]
    rows = json.loads((out / "results.json").read_text())["rows"]
    final = [r for r in rows if r["selection"] == "final"]
    assert len(final) == 1 and final[0]["seeds"] == ["0", "1", "2"] and final[0]["aggregate"]["top1"]["n"] == 3
    assert "| ved | sub-01 | final | 3 |" in (out / "results.md").read_text()


def test_subject_modes_make_the_right_units():
    from eeg2image.training.run import units_of

    per = units_of(run_config(None, None, **{"data.subjects": [1, 2, 3]}))
    assert [(u.name, u.train_subjects, u.eval_subjects) for u in per][1] == ("sub-02", [2], [2])
    joint = units_of(run_config(None, None, **{"data.subjects": [1, 2], "data.mode": "joint"}))
    assert [(u.name, u.train_subjects, u.eval_subjects) for u in joint] == [("joint", [1, 2], [1, 2])]
    loso = units_of(run_config(None, None, **{"data.subjects": [1, 2, 3], "data.mode": "loso"}))
    first = loso[0]
    assert (first.train_subjects, first.eval_subjects, first.subject_aware_eval) == ([2, 3], [1], False)
    assert len(loso) == 3
