"""The ``eeg2image`` command: one subcommand per pipeline stage, each a thin call into its module."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .io import Eeg2ImageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Decode what a person saw from EEG (THINGS-EEG2): simulate, preprocess, inspect.",
)


def _ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError as exc:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from exc


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Folder to write the simulated dataset into.")],
    preset: Annotated[str, typer.Option(help="Size: tiny | small | demo | full (real counts).")] = "tiny",
    subjects: Annotated[str, typer.Option(help="Comma-separated subject numbers.")] = "1",
    seed: Annotated[int, typer.Option(help="Seed of the whole simulation.")] = 0,
    formats: Annotated[str, typer.Option(help="Extra preprocessed layouts: nice,ubp.")] = "",
    config: Annotated[Path | None, typer.Option(help="YAML SimulationConfig (overrides the preset).")] = None,
) -> None:
    """Write a simulated THINGS-EEG2 with the real on-disk layout (raw, preprocessed, images, metadata)."""
    from .config import load_config, to_dict
    from .data.simulate import SIMULATION_PRESETS, SimulationConfig, simulate_dataset, simulation_config

    if config is not None:
        cfg = load_config(SimulationConfig, config)
    else:
        if preset not in SIMULATION_PRESETS:
            raise typer.BadParameter(f"unknown preset {preset!r}; known: {', '.join(SIMULATION_PRESETS)}")
        cfg = simulation_config(preset, subjects=_ints(subjects), seed=seed)
    fmts = tuple(f for f in formats.split(",") if f)
    t0 = time.perf_counter()
    simulate_dataset(out, cfg, formats=fmts)
    c = to_dict(cfg)
    typer.echo(
        f"simulated THINGS-EEG2 ({cfg.preset}) in {out} in {time.perf_counter() - t0:.1f} s: "
        f"{c['n_train_concepts']} x {c['images_per_concept']} training images, {c['n_test_concepts']} test "
        f"images, subjects {c['subjects']}"
    )


@app.command()
def preprocess(
    root: Annotated[Path, typer.Argument(help="Dataset root (holding raw_data/).")],
    out: Annotated[Path, typer.Argument(help="Output folder; sub-XX/ is written inside.")],
    subjects: Annotated[str, typer.Option(help="Comma-separated subject numbers.")] = "1",
    preset: Annotated[str, typer.Option(help="nice (63 ch, 250 Hz) | authors (17 ch, 100 Hz) | ubp.")] = "nice",
    config: Annotated[Path | None, typer.Option(help="YAML PreprocessConfig (overrides the preset).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Raw EEG -> epoched, whitened, memory-mappable arrays with a manifest (resumable)."""
    from .config import load_config, save_config, to_dict
    from .data.preprocess import PREPROCESS_PRESETS, PreprocessConfig, preprocess_subject

    if config is not None:
        cfg = load_config(PreprocessConfig, config)
    else:
        if preset not in PREPROCESS_PRESETS:
            raise typer.BadParameter(f"unknown preset {preset!r}; known: {', '.join(PREPROCESS_PRESETS)}")
        cfg = PREPROCESS_PRESETS[preset]
    for s in _ints(subjects) or [1]:
        t0 = time.perf_counter()
        folder = preprocess_subject(root, out, s, cfg, progress=not quiet)
        save_config(cfg, folder / "config.yaml")
        typer.echo(f"{folder}: done in {time.perf_counter() - t0:.1f} s ({to_dict(cfg)['preset']} preset)")


@app.command()
def info(
    root: Annotated[Path, typer.Argument(help="Dataset root or eeg2image output folder.")],
    deep: Annotated[bool, typer.Option(help="Open every EEG file (slow on real data).")] = False,
) -> None:
    """What a dataset folder holds, with shapes, and what is missing or wrong."""
    from .data.inspect import format_findings, inspect_dataset

    findings = inspect_dataset(root, deep=deep)
    typer.echo(format_findings(findings))
    if any(f.status == "error" for f in findings):
        raise typer.Exit(1)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes everything.")] = Path("demo_output"),
    preset: Annotated[str, typer.Option(help="Simulation size.")] = "demo",
) -> None:
    """The main job end to end on a simulated dataset: simulate -> preprocess -> show what it holds."""
    from .demo import run_demo

    run_demo(workdir, preset=preset)


def main() -> None:
    try:
        app(standalone_mode=False)
    except Eeg2ImageError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
