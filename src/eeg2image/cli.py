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
def embed(
    root: Annotated[Path, typer.Argument(help="Dataset root (holding the image set).")],
    store: Annotated[Path, typer.Argument(help="Embedding store folder.")],
    encoder: Annotated[
        str, typer.Option(help="Image encoder: evnet | openclip:RN50/openai | ipadapter:h94/IP-Adapter")
    ] = "evnet",
    views: Annotated[
        str, typer.Option(help="Views: original, blur12, blur8, fovea, edges, depth, blur:k=9, ...")
    ] = "original",
    text_encoder: Annotated[
        str | None, typer.Option(help="Also embed texts: minilm | openclip:ViT-H-14/laion2b_s32b_b79k")
    ] = None,
    template: Annotated[str, typer.Option(help="Text template on the concept name.")] = "This picture is {concept}",
    captions: Annotated[
        Path | None, typer.Option(help="JSON {image path or concept: caption} instead of the template.")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="Local weights file/folder for the image encoder.")] = None,
    partitions: Annotated[str, typer.Option(help="training,test")] = "training,test",
    batch_size: Annotated[int | None, typer.Option(help="Images per batch (default: the encoder's).")] = None,
    workers: Annotated[int, typer.Option(help="Image-decoding worker processes.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu | cuda (default: cuda when available).")] = None,
) -> None:
    """Embed the stimulus images (each view x encoder) and texts once into a cached, resumable store."""
    import json

    from .features.embed import embed_images, embed_texts
    from .features.encoders import build_image_encoder, build_text_encoder
    from .features.views import parse_views

    parts = tuple(p for p in partitions.split(",") if p)
    results = []
    if views:
        enc = build_image_encoder(encoder, weights=weights, device=device)
        results += embed_images(root, store, parse_views(views), enc, partitions=parts, batch_size=batch_size,
                                workers=workers)  # fmt: skip
    if text_encoder:
        caps = json.loads(captions.read_text()) if captions else None
        tenc = build_text_encoder(text_encoder, device=device)
        results += embed_texts(root, store, tenc, template=template, captions=caps, partitions=parts)
    for r in results:
        typer.echo(f"{r.partition:<9} {r.view:<26} {r.encoder:<36} {r.status:<10} {r.n_images} images")


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
