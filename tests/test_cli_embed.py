"""`eeg2image embed` from the command line: computes, then reuses; unknown names are one clear line."""

from __future__ import annotations

from typer.testing import CliRunner

from eeg2image.cli import app


def test_embed_then_cached(tiny_dataset, tmp_path):
    args = [
        "embed",
        str(tiny_dataset),
        str(tmp_path / "store"),
        "--encoder",
        "evnet",
        "--views",
        "original,edges",
        "--partitions",
        "test",
        "--text-encoder",
        "minilm",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.output.count("computed") == 3 and "text-template" in first.output
    second = CliRunner().invoke(app, args)
    assert second.output.count("cached") == 3
    assert (tmp_path / "store/test/original__evnet.safetensors").is_file()
