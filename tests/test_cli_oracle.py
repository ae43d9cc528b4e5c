"""`eeg2image embed --encoder sim-features`: the simulator's generating features; refused on other data."""

from __future__ import annotations

from typer.testing import CliRunner

from eeg2image.cli import app
from eeg2image.features.store import EmbeddingStore


def test_oracle_features_from_the_command_line(tiny_dataset, tmp_path):
    res = CliRunner().invoke(app, ["embed", str(tiny_dataset), str(tmp_path / "store"), "--encoder", "sim-features"])
    assert res.exit_code == 0, res.output
    table = EmbeddingStore(tmp_path / "store").load("test", "original", "sim-features")
    assert table.embeddings.shape == (8, 97)


def test_oracle_features_are_refused_without_a_simulation(dataset_copy, tmp_path):
    (dataset_copy / "simulation.json").unlink()
    res = CliRunner().invoke(app, ["embed", str(dataset_copy), str(tmp_path / "store"), "--encoder", "sim-features"])
    assert res.exit_code != 0 and "only for datasets made by" in str(res.exception)
