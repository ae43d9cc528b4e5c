"""The ``eeg2image`` command: one subcommand per pipeline stage, each a thin call into its module."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .allocator import PEAK_CUDA_ENV
from .io import ConfigError, Eeg2ImageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Decode what a person saw from EEG (THINGS-EEG2): simulate, preprocess, embed, train, evaluate.\n\n"
    "Configs: a preset (`eeg2image presets`), then --config FILE.yaml, then --set key=value.",
)


def _ints(text: str | None, what: str = "--subjects") -> list[int] | None:
    """``1,2,3``, ``0-9`` or ``1-3,7``: a usage error names the option and the text."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in text.replace(" ", "").split(","):
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out += list(range(lo, hi + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise typer.BadParameter(f"{what}: expected numbers like 1,2,3 or 0-9, got {text!r}") from None
    return out


SET_HELP = "Any config key, repeatable: --set key=value (value parsed as YAML)."


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Folder to write the simulated dataset into.")],
    preset: Annotated[str, typer.Option(help="Size: tiny | small | demo | full (see `eeg2image presets`).")] = "tiny",
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subject numbers.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the whole simulation.")] = None,
    formats: Annotated[str, typer.Option(help="Extra preprocessed layouts: nice,ubp.")] = "",
    modality: Annotated[
        str, typer.Option(help="eeg: THINGS-EEG2 | meg: THINGS-MEG (official epochs + THINGS images).")
    ] = "eeg",
    config: Annotated[Path | None, typer.Option(help="YAML SimulationConfig (over the preset).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
) -> None:
    """Write a simulated THINGS-EEG2 (or THINGS-MEG) with the real on-disk layout."""
    from .config import parse_sets, to_dict
    from .data.simulate import simulate_dataset, simulation_config

    over = {"subjects": _ints(subjects), "seed": seed, "modality": modality, **parse_sets(set_)}
    cfg = simulation_config(preset, config, over)
    fmts = tuple(f for f in formats.split(",") if f)
    t0 = time.perf_counter()
    simulate_dataset(out, cfg, formats=fmts)
    c = to_dict(cfg)
    what = "THINGS-MEG" if cfg.modality == "meg" else "THINGS-EEG2"
    typer.echo(
        f"simulated {what} ({cfg.preset}) in {out} in {time.perf_counter() - t0:.1f} s: "
        f"{c['n_train_concepts']} x {c['images_per_concept']} training images, {c['n_test_concepts']} test "
        f"images, subjects {c['subjects']}"
    )


@app.command()
def preprocess(
    root: Annotated[Path, typer.Argument(help="Dataset root: THINGS-EEG2 (raw_data/) or THINGS-MEG (ds004212).")],
    out: Annotated[Path, typer.Argument(help="Output folder; sub-XX/ is written inside.")],
    subjects: Annotated[str, typer.Option(help="Comma-separated subject numbers.")] = "1",
    preset: Annotated[str, typer.Option(help="nice (63 ch, 250 Hz) | authors (17 ch, 100 Hz) | ubp.")] = "nice",
    config: Annotated[Path | None, typer.Option(help="YAML PreprocessConfig (over the preset).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    things: Annotated[
        Path | None, typer.Option(help="THINGS-MEG: THINGS' folder (Images/, Metadata/); default ROOT/THINGS.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Raw EEG -> epoched, whitened, memory-mappable arrays with a manifest (resumable); on a THINGS-MEG root, its
    official epochs -> the peers' train / test split (MEGSplitConfig) and an image set."""
    from .config import parse_sets, save_config, to_dict
    from .data.things_meg import is_meg_root

    if is_meg_root(root):
        from .data.preprocess_meg import meg_split_config, split_subject

        mcfg = meg_split_config(config, **parse_sets(set_))
        for s in _ints(subjects) or [1]:
            t0 = time.perf_counter()
            folder = split_subject(root, out, s, mcfg, things=things, progress=not quiet)
            save_config(mcfg, folder / "config.yaml")
            typer.echo(f"{folder}: THINGS-MEG P{s} split in {time.perf_counter() - t0:.1f} s (images: {out}/image_set)")
        return
    from .data.preprocess import preprocess_subject, preset_config

    cfg = preset_config(preset, config, parse_sets(set_))
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
        list[str] | None,
        typer.Option(
            help="Image encoder: effnet-lite0 (offline, ImageNet-trained, the default) | evnet | "
            "evnet-clip:effnet-lite0 | openclip:RN50/openai | ipadapter:h94/IP-Adapter | sim-features. "
            "Repeat it to embed with several encoders in one pass: each view (a depth map) is computed once."
        ),
    ] = None,
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
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Embed the stimulus images (each view x encoder) and texts once into a cached, resumable store."""
    import json

    from .features.embed import embed_images, embed_texts
    from .features.encoders import build_image_encoder, build_text_encoder
    from .features.views import parse_views

    parts = tuple(p for p in partitions.split(",") if p)
    specs = list(encoder or ["effnet-lite0"])
    if len(set(specs)) != len(specs) or (weights and len(specs) > 1):
        raise ConfigError(
            f"--encoder {' --encoder '.join(specs)}: expected distinct encoders, and --weights with one encoder only"
        )
    results = []
    if "sim-features" in specs:  # the simulator's generating features (oracle target; simulated data only)
        from .features.oracle import embed_simulation_features

        results += embed_simulation_features(root, store)
        specs.remove("sim-features")
    if views and specs:
        encs = [build_image_encoder(spec, weights=weights, device=device) for spec in specs]
        if len({e.name for e in encs}) != len(encs):
            raise ConfigError(f"--encoder {' --encoder '.join(specs)}: two of them name the same encoder")
        results += embed_images(
            root,
            store,
            parse_views(views),
            encs,
            partitions=parts,
            batch_size=batch_size,
            workers=workers,
            progress=not quiet,
        )
    if text_encoder:
        caps = json.loads(captions.read_text()) if captions else None
        tenc = build_text_encoder(text_encoder, device=device)
        results += embed_texts(
            root, store, tenc, template=template, captions=caps, partitions=parts, progress=not quiet
        )
    for r in results:
        typer.echo(f"{r.partition:<9} {r.view:<26} {r.encoder:<36} {r.status:<10} {r.n_images} images")


@app.command()
def train(
    out: Annotated[Path, typer.Argument(help="Run folder (created; a killed run resumes from it).")],
    preset: Annotated[
        str | None,
        typer.Option(help="Starting point: a run preset (`eeg2image presets`), e.g. reference | shallow | samga."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML RunConfig (over the preset).")] = None,
    preprocessed: Annotated[Path | None, typer.Option(help="Folder holding sub-XX/ from `preprocess`.")] = None,
    store: Annotated[Path | None, typer.Option(help="Embedding store from `embed`.")] = None,
    dataset: Annotated[Path | None, typer.Option(help="Dataset root (for pictures only).")] = None,
    subjects: Annotated[str | None, typer.Option(help="Comma-separated subject numbers.")] = None,
    mode: Annotated[str | None, typer.Option(help="per_subject | joint | loso.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Seeds trained together: 0,1,2 or 0-9.")] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="EEG encoder: ved | nice | atms | eegproject | eegnet | shallow | linear | cogcap | "
            "braindecode:<Model> (any braindecode model by name, e.g. braindecode:EEGConformer) | "
            "ridge | riemann (the classical baselines, fitted in closed form)."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Train EEG encoders (all seeds of a configuration together) into a run folder."""
    from .config import parse_sets
    from .runs import run_config
    from .training.run import train_run

    over = {
        "data.preprocessed": str(preprocessed) if preprocessed else None,
        "data.store": str(store) if store else None,
        "data.dataset": str(dataset) if dataset else None,
        "data.subjects": _ints(subjects),
        "data.mode": mode,
        "seeds": _ints(seeds, "--seeds"),
        "train.eeg_encoder": encoder,
        "train.epochs": epochs,
        "device": device,
        **parse_sets(set_),
    }
    cfg = run_config(preset, config, **over)
    try:
        train_run(cfg, out, progress=not quiet, log=typer.echo)
    finally:
        import torch.distributed as td

        if td.is_available() and td.is_initialized():  # started by train_run under torchrun
            td.destroy_process_group()


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A trained run folder.")],
) -> None:
    """Zero-shot retrieval on the test images: metrics.json, report.md, top5.png in the run folder."""
    from .evaluation.evaluate import evaluate_run

    evaluate_run(run, log=typer.echo)
    typer.echo(f"wrote {run / 'metrics.json'}, {run / 'report.md'}")


@app.command("evaluate-recon")
def evaluate_recon(
    folder: Annotated[
        Path,
        typer.Argument(help="`reconstruct`'s OUT (every OUT/<row>/sub-XX), or one folder FOLDER/seed-S/round-R/*.png."),
    ],
    dataset: Annotated[Path, typer.Option(help="Dataset root (its test images are the ground truth).")],
    metrics: Annotated[
        str | None, typer.Option(help="Comma-separated subset: pixcorr,ssim,alexnet2,...,effnet_lite0_proxy.")
    ] = None,
) -> None:
    """Reconstruction metrics (PixCorr, SSIM, 2-way on AlexNet/Inception/CLIP, EffNet/SwAV distances; the predicted
    embeddings' identification of the test image) of each folder of reconstructions: metrics.json, report.md,
    grid.png in it, and OUT/grid-sub-XX.png (the rows side by side). Networks without local weights are reported
    unavailable."""
    from .evaluation.reconstruction import evaluate_reconstructions, evaluate_rows

    names = [m for m in metrics.split(",") if m] if metrics else None
    if any(folder.glob("seed-*/round-*")):
        results = {folder: evaluate_reconstructions(folder, dataset, metrics=names, log=typer.echo)}
    else:
        results = evaluate_rows(folder, dataset, metrics=names, log=typer.echo)
    for f in results:
        typer.echo(f"wrote {f / 'metrics.json'}, {f / 'report.md'}, {f / 'grid.png'}")
    unavailable = sorted({k for r in results.values() for k in r["unavailable"]})
    if unavailable:
        typer.echo(
            f"not scored (no weights here): {', '.join(unavailable)}; see {next(iter(results)) / 'report.md'} for "
            "what each needs",
            err=True,
        )


@app.command("train-vae")
def train_vae(
    root: Annotated[Path, typer.Argument(help="Dataset root (its training images only are read).")],
    out: Annotated[Path, typer.Argument(help="Folder of the VAE (a diffusers AutoencoderKL folder).")],
    config: Annotated[Path | None, typer.Option(help="YAML VAEConfig.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config key: steps=600, image_size=64.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train the offline stand-in for SDXL-Turbo's VAE (a small diffusers AutoencoderKL) on the training images;
    `embed ROOT STORE --encoder vae:OUT` then writes their latents, the low-level path's target."""
    from .config import parse_sets, stage_config
    from .training.vae import VAEConfig
    from .training.vae import train_vae as train

    cfg = stage_config(VAEConfig, "vae", None, config, parse_sets(set_))
    folder = train(root, out, cfg, progress=not quiet, log=typer.echo)
    typer.echo(f"VAE in {folder} (embed its latents: eeg2image embed {root} STORE --encoder vae:{folder})")


@app.command()
def align(
    run: Annotated[Path, typer.Argument(help="A trained experts run (`train` with train.experts set).")],
    out: Annotated[Path | None, typer.Option(help="Align folder (default: RUN/align).")] = None,
    encoder: Annotated[
        str | None, typer.Option(help="Encoder of the targets in the run's store (default: the run's image encoder).")
    ] = None,
    targets: Annotated[str | None, typer.Option(help="Comma-separated: image,edge,depth (the default).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML AlignStageConfig.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config key: align.epochs=50.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Train STH-Align, one per seed: the frozen experts' embeddings of the training EEG -> the generator's space
    (the targets' embeddings); epochs selected on held-out training concepts, never the test images."""
    from .config import parse_sets, stage_config
    from .runs import AlignStageConfig
    from .training.align import align_run

    over = {
        "run": str(run),
        "encoder": encoder,
        "align.targets": [t for t in targets.split(",") if t] if targets else None,
        **parse_sets(set_),
    }
    cfg = stage_config(AlignStageConfig, "align", None, config, over)
    folder = align_run(cfg, out or run / "align", progress=not quiet, log=typer.echo)
    typer.echo(f"aligners in {folder / 'units'}")


@app.command()
def reconstruct(
    aligned: Annotated[Path, typer.Argument(help="An align folder (`eeg2image align`).")],
    out: Annotated[Path, typer.Option(help="Output folder: OUT/<row>/sub-XX/seed-S/round-R/<stimulus>.png.")],
    generator: Annotated[
        str | None,
        typer.Option(
            help="sdxl (SDXL-Turbo + IP-Adapters, local weights) | decoder (the offline decoder, --decoder) | nearest "
            "(retrieval baseline)."
        ),
    ] = None,
    rows: Annotated[
        str | None,
        typer.Option(help="Comma-separated: eeg (the default), low-level, shuffled, nearest, linear, ceiling."),
    ] = None,
    decoder: Annotated[Path | None, typer.Option(help="The offline decoder's folder (`train-decoder`).")] = None,
    dataset: Annotated[Path | None, typer.Option(help="Dataset root (default: the run's).")] = None,
    sdxl: Annotated[str | None, typer.Option(help="SDXL-Turbo folder or cache id.")] = None,
    ip_adapter: Annotated[str | None, typer.Option(help="h94/IP-Adapter folder or cache id.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML ReconstructConfig.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config key: generate.rounds=4.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Images from the test EEG: experts -> aligner (and EEG -> latent) -> generator, per subject and seed, with the
    controls beside them (--rows); a rerun resumes. Score them with `eeg2image evaluate-recon OUT --dataset ROOT`."""
    from .config import parse_sets, stage_config
    from .generation.reconstruct import ReconstructConfig, reconstruct_run

    over = {
        "generator": generator,
        "rows": [r for r in rows.split(",") if r] if rows else None,
        "decoder": str(decoder) if decoder else None,
        "sdxl": sdxl,
        "ip_adapter": ip_adapter,
        "device": device,
        **parse_sets(set_),
    }
    cfg = stage_config(ReconstructConfig, "reconstruct", None, config, over)
    folders = reconstruct_run(aligned, out, cfg, dataset=dataset, progress=not quiet, log=typer.echo)
    typer.echo(f"wrote {len(folders)} folder(s) under {out}; score: eeg2image evaluate-recon {out} --dataset DATASET")


@app.command("train-decoder")
def train_decoder(
    root: Annotated[Path, typer.Argument(help="Dataset root (its training images only are read).")],
    store: Annotated[Path, typer.Argument(help="Embedding store holding the targets' (and latents') tables.")],
    out: Annotated[Path, typer.Argument(help="Folder of the decoder.")],
    encoder: Annotated[str | None, typer.Option(help="Encoder of the target embeddings (the aligner's).")] = None,
    targets: Annotated[str | None, typer.Option(help="Comma-separated aligner targets: image,edge,depth.")] = None,
    latents: Annotated[
        str | None, typer.Option(help="The latents' table: vae:<folder>[;size=S] (from `embed --encoder vae:`).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML DecoderStageConfig.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config key: decoder.steps=800.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train the offline generator (a small conditional decoder, the demo's stand-in for SDXL-Turbo) on the training
    images: from their target embeddings and latents to the images; `reconstruct --generator decoder` uses it."""
    from .config import parse_sets, stage_config
    from .training.decoder import DecoderStageConfig
    from .training.decoder import train_decoder as train

    over = {
        "encoder": encoder,
        "targets": [t for t in targets.split(",") if t] if targets else None,
        "latents": latents,
        **parse_sets(set_),
    }
    cfg = stage_config(DecoderStageConfig, "decoder", None, config, over)
    folder = train(root, store, out, cfg, progress=not quiet, log=typer.echo)
    typer.echo(
        f"decoder in {folder} (use: eeg2image reconstruct ALIGN --out OUT --generator decoder --decoder {folder})"
    )


@app.command()
def sweep(
    out: Annotated[Path, typer.Argument(help="Sweep folder: one run folder per job, jobs.txt, results.")],
    config: Annotated[list[Path] | None, typer.Option(help="YAML RunConfig; repeat for several.")] = None,
    preset: Annotated[str | None, typer.Option(help="Preset under every config.")] = None,
    subjects: Annotated[str, typer.Option(help="Comma-separated subject numbers.")] = "1",
    seeds: Annotated[str, typer.Option(help="0-9 or 0,1,2.")] = "0",
    seeds_per_job: Annotated[int, typer.Option(help="Seeds trained together in one job.")] = 10,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config key for every job: train.epochs=50.")] = None,
    execute: Annotated[bool, typer.Option(help="Run the jobs here, one after another, then merge.")] = False,
    submit: Annotated[
        str | None,
        typer.Option(help="slurm: submit the jobs as one SLURM array through submitit | local: the same, here."),
    ] = None,
    partition: Annotated[str | None, typer.Option(help="--submit slurm: the SLURM partition.")] = None,
    timeout_min: Annotated[int, typer.Option(help="--submit: each job's time limit in minutes.")] = 240,
    gpus_per_node: Annotated[int, typer.Option(help="--submit slurm: GPUs per job.")] = 1,
    cpus_per_task: Annotated[int, typer.Option(help="--submit slurm: CPUs per job.")] = 8,
    mem_gb: Annotated[int, typer.Option(help="--submit slurm: memory per job (GB).")] = 32,
    wait: Annotated[bool, typer.Option(help="--submit: wait for every job, then merge the table.")] = False,
) -> None:
    """Plan subjects x seeds x configs as independent jobs (jobs.txt); --execute runs them and merges; --submit
    sends them to SLURM as one array (submitit)."""
    from .pipeline import ClusterResources, plan_sweep, run_all, submit_sweep, write_jobs

    jobs = plan_sweep(
        out,
        list(config or []),
        _ints(subjects) or [1],
        _ints(seeds, "--seeds") or [0],
        seeds_per_job,
        preset,
        list(set_ or []),
    )
    path = write_jobs(out, jobs)
    typer.echo(f"{len(jobs)} jobs -> {path} (one shell line each; `eeg2image table {out}` merges their results)")
    if execute and submit:
        raise ConfigError("--execute and --submit: choose one (here, one after another; or submitted)")
    if execute:
        md = run_all({job.run_dir: job.run_config() for job in jobs}, out, progress=False, log=typer.echo)
        typer.echo(md.read_text())
    if submit:
        resources = ClusterResources(partition, timeout_min, gpus_per_node, cpus_per_task, mem_gb)
        handles = submit_sweep(out, jobs, submit, resources)
        typer.echo(f"submitted {len(handles)} jobs ({submit}): ids in {out / 'submitted.json'}, logs in {out}/submitit")
        if wait:
            from .evaluation.table import write_table

            for h in handles:
                h.result()  # raises, with the job's own traceback, when a job failed
            typer.echo(write_table(out)[1].read_text())


@app.command()
def table(
    root: Annotated[Path, typer.Argument(help="Folder with evaluated runs below it (e.g. a sweep).")],
    choose: Annotated[
        bool,
        typer.Option(
            help="Also the configuration best on the validation concepts (a layer sweep's layer) and its test."
        ),
    ] = False,
) -> None:
    """Merge every run's metrics.json below ROOT into results.json and results.md."""
    from .evaluation.table import write_table

    _, md = write_table(root, choose=choose)
    typer.echo(md.read_text())


@app.command()
def presets() -> None:
    """The shipped presets of every stage (simulation, preprocess, run), each with its one-line description."""
    from .config import list_presets

    rows = list_presets()
    width = max(len(f"{st} {name}") for st, name, _ in rows)
    for st, name, desc in rows:
        typer.echo(f"{f'{st} {name}':<{width}}  {desc}")
    typer.echo("use: eeg2image simulate --preset NAME | preprocess --preset NAME | train --preset NAME")


@app.command()
def info(
    root: Annotated[Path, typer.Argument(help="Dataset root or eeg2image output folder.")],
    deep: Annotated[bool, typer.Option(help="Open every EEG file (slow on real data).")] = False,
) -> None:
    """What a dataset folder holds, with shapes, and what is missing or wrong (exit status 2 when a file is wrong)."""
    from .data.inspect import format_findings, inspect_dataset
    from .io import MissingDataError

    if not root.is_dir():
        raise MissingDataError(f"{root}: no such folder; expected a THINGS-EEG2 root or an eeg2image output folder")
    findings = inspect_dataset(root, deep=deep)
    typer.echo(format_findings(findings))
    errors = [f for f in findings if f.status == "error"]
    if errors:  # a file that is there but wrong: bad input, as every other command reports it
        more = f" (and {len(errors) - 1} more ERROR row(s) above)" if len(errors) > 1 else ""
        _fail(f"{errors[0].detail}{more}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes everything.")] = Path("demo_output"),
    preset: Annotated[str, typer.Option(help="Simulation size.")] = "demo",
) -> None:
    """The main job end to end on a simulated dataset: simulate -> preprocess -> show what it holds."""
    from .demo import run_demo

    run_demo(workdir, preset=preset)


def main(argv: list[str] | None = None) -> None:
    """The console script: a deliberate error (bad input, a usage mistake, a busy folder) is one line on stderr
    and exit status 2; only a bug in eeg2image prints a traceback."""
    if peak_file := os.environ.get(PEAK_CUDA_ENV):  # benchmarks/rehearse.py: the stage's peak GPU memory
        import atexit

        from .allocator import write_peak_cuda_memory

        atexit.register(write_peak_cuda_memory, peak_file)
    try:
        rc = app(args=argv, prog_name="eeg2image", standalone_mode=False)
    except Eeg2ImageError as exc:
        _fail(str(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors of the click that typer ships
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
            sys.exit(0)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _fail(f"{message}{hint}", getattr(exc, "exit_code", 2))
    except OSError as exc:  # the system refused a file operation (permissions, a full disk, a folder for a file)
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}" if exc.filename else str(exc))
    sys.exit(rc if isinstance(rc, int) else 0)


def _fail(message: str, code: int = 2) -> None:
    text = " ".join(message.split())  # one line, whatever the message held
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
