"""The command line as a user runs it: clear output, clear errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from eeg2image.cli import app


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eeg2image.cli", *args], capture_output=True, text=True, timeout=300)


def test_info_reports_what_is_there_and_what_is_missing(dataset_copy):
    res = CliRunner().invoke(app, ["info", str(dataset_copy), "--deep"])
    assert res.exit_code == 0, res.output
    assert "training_images" in res.output and "matches the sorted folders" in res.output
    assert "official format" in res.output and "ubp format" in res.output
    (dataset_copy / "raw_data/sub-01/ses-02/raw_eeg_training.npy").unlink()
    res = CliRunner().invoke(app, ["info", str(dataset_copy)])
    assert "MISSING" in res.output and "ses-02/raw_eeg_training.npy" in res.output


def test_preprocess_missing_subject_is_one_clear_line(tiny_dataset, tmp_path):
    res = _run("preprocess", str(tiny_dataset), str(tmp_path), "--subjects", "7", "--quiet")
    assert res.returncode == 2
    assert "error:" in res.stderr and "sub-07 not found" in res.stderr and "Traceback" not in res.stderr


def test_simulate_then_preprocess_from_the_command_line(tmp_path):
    res = _run("simulate", str(tmp_path / "ds"), "--preset", "tiny", "--seed", "9")
    assert res.returncode == 0, res.stderr
    cfg = tmp_path / "pre.yaml"
    cfg.write_text("preset: custom\nchannels: occipitoparietal17\nsfreq: 100.0\nmvnn: none\n")
    res = _run("preprocess", str(tmp_path / "ds"), str(tmp_path / "out"), "--config", str(cfg), "--quiet")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out/sub-01/config.yaml").is_file() and (tmp_path / "out/sub-01/manifest.json").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("chanels: all63\n")
    res = _run("preprocess", str(tmp_path / "ds"), str(tmp_path / "out2"), "--config", str(bad))
    assert res.returncode == 2 and "unknown key(s) chanels" in res.stderr


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run ``eeg2image ARGS`` in this process as the console script does: (exit code, stderr)."""
    from eeg2image.cli import main

    monkeypatch.setattr(sys, "argv", ["eeg2image", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (
            ["train", "RUN", "--preset", "demo", "--set", "train.eeg_options.n_filterz=3"],
            r"train\.eeg_options\.n_filterz \(EEG encoder 'ved'\): unknown option 'n_filterz'; known: n_filters",
        ),
        (["train", "RUN", "--encoder", "vedd"], r"train\.eeg_encoder: unknown EEG encoder 'vedd'; known: atms"),
        (
            ["train", "RUN", "--preset", "demoo"],
            r"unknown run preset 'demoo'; known: atms, cogcap, demo, neuralbench, nice, reference",
        ),
        (["train", "RUN", "--set", "train.lrr=3"], r"unknown key\(s\) train\.lrr; known keys: amp"),
        (["simulate", "OUT", "--preset", "huge"], r"unknown simulation preset 'huge'; known: demo, full, small"),
        (["preprocess", "ROOT", "OUT", "--preset", "fancy"], r"unknown preprocess preset 'fancy'; known: authors"),
        (["simulate", "OUT", "--set", "n_test_concept=3"], r"unknown key\(s\) n_test_concept"),
    ],
)
def test_unknown_names_exit_2_with_one_message(monkeypatch, capsys, tmp_path, args, named):
    import re

    args = [str(tmp_path / a) if a.isupper() else a for a in args]
    code, err = _main(monkeypatch, capsys, *args)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(named, lines[0]), err
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_presets_are_yaml_files_listed_with_their_descriptions():
    from importlib import resources

    from eeg2image.config import list_presets
    from eeg2image.data.preprocess import preset_config
    from eeg2image.data.simulate import simulation_config
    from eeg2image.runs import run_config

    res = CliRunner().invoke(app, ["presets"])
    assert res.exit_code == 0, res.output
    expected = {
        "simulation": ["demo", "full", "small", "tiny"],
        "preprocess": ["authors", "nice", "ubp"],
        "run": [
            "atms",
            "cogcap",
            "demo",
            "neuralbench",
            "nice",
            "reference",
            "samga",
            "shallow",
            "ubp",
            "ubp-meg",
            "ved-meg",
        ],
    }
    listed = list_presets()
    assert {st: [n for s, n, _ in listed if s == st] for st in expected} == expected
    build = {"simulation": simulation_config, "preprocess": preset_config, "run": run_config}
    for stage, name, desc in listed:
        assert len(desc) > 20 and f"{stage} {name}" in res.output and desc[:40] in res.output
        assert (resources.files("eeg2image") / "configs" / stage / f"{name}.yaml").is_file()
        build[stage](name)  # every preset builds its stage's config
    assert run_config("reference").seeds == list(range(21, 31)) and run_config("demo").train.epochs == 20


def test_the_readmes_sweep_example_plans_subject_ranges(monkeypatch, capsys, tmp_path):
    """``eeg2image sweep OUT --config a.yaml --subjects 1-10 --seeds 0-9`` (the README's line) used to crash on
    the subject range."""
    (tmp_path / "a.yaml").write_text("train:\n  epochs: 5\n")
    code, err = _main(
        monkeypatch,
        capsys,
        "sweep",
        str(tmp_path / "sw"),
        "--config",
        str(tmp_path / "a.yaml"),
        "--subjects",
        "1-10",
        "--seeds",
        "0-9",
    )
    assert code == 0, err
    jobs = (tmp_path / "sw/jobs.txt").read_text().splitlines()
    jobs = [j for j in jobs if j.strip() and not j.startswith("#")]
    assert len(jobs) == 10 and all("--seeds 0,1,2,3,4,5,6,7,8,9" in j for j in jobs), jobs[:2]
    assert [int(j.split("--subjects ")[1].split()[0]) for j in jobs] == list(range(1, 11))
