"""The command line as a user runs it: clear output, clear errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

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
