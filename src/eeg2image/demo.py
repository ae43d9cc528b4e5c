"""``eeg2image demo`` / ``make demo``: the main job end to end on a simulated THINGS-EEG2.

Simulate a dataset with the real layout -> preprocess it (NICE-lineage defaults) -> embed the stimulus
images with the offline, ImageNet-trained EfficientNet-Lite0 (the plain view and the multi-level blur bank),
EVNet through a seeded frozen adapter into the same space, and the simulator's generating features (an oracle)
-> show what the data hold -> train the multi-level-blur EEG encoder, 3 seeds stacked, for each row of the
reference recipe's ablation, beside ridge, Riemannian and shuffled-pairs rows on the same data -> evaluate
zero-shot retrieval on the test images and merge the rows into one
table -> reconstruction along the field's two paths: CognitionCapturerPro's experts (image, text, edge map) and
fusion with one ridge aligner per seed (fitted on the targets: the semantic path), ridge from the EEG to the latents
of an offline VAE trained on the training images (the low-level path), and the offline generator (a conditional
decoder trained on the training images, the stand-in for SDXL-Turbo) -> every row of the reconstruction table
(eeg, low-level, shuffled, nearest, linear, ceiling), scored with the metrics that need no downloaded network, and
the paths side by side in one picture. Each step is skipped when its output is already there and valid, so a
second run is quick.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from .io import read_json


def split_half_reliability(data: np.ndarray, seed: int = 0) -> float:
    """Mean over channels x times of the across-image correlation between the averages of two random
    halves of the repetitions (image-specific signal; 0 = none). ``data``: (images, reps, ch, t)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(data.shape[1])
    half = data.shape[1] // 2
    a = np.asarray(data[:, perm[:half]], dtype=np.float64).mean(axis=1)
    b = np.asarray(data[:, perm[half : 2 * half]], dtype=np.float64).mean(axis=1)
    a -= a.mean(axis=0)
    b -= b.mean(axis=0)
    r = (a * b).sum(axis=0) / np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0) + 1e-30)
    return float(r.mean())


def split_half_identification(data: np.ndarray) -> float:
    """Share of images whose first-half repetition average correlates best with their own second-half
    average among all images (an upper bound on what any decoder can get from this EEG)."""
    n, r = data.shape[:2]
    a = np.asarray(data[:, : r // 2], dtype=np.float64).mean(axis=1).reshape(n, -1)
    b = np.asarray(data[:, r // 2 :], dtype=np.float64).mean(axis=1).reshape(n, -1)
    corr = np.corrcoef(a - a.mean(0), b - b.mean(0))[:n, n:]
    return float((corr.argmax(axis=1) == np.arange(n)).mean())


def _figure(workdir: Path, dataset: Path, pre: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data.preprocess import read_our_preprocessed
    from .data.things_eeg2 import ImageSet, load_image

    images = ImageSet.discover(dataset)
    test = read_our_preprocessed(pre, "test")
    files = images.files("test")[:6]
    occ = [test.ch_names.index(c) for c in ("O1", "Oz", "O2", "PO7", "PO8")]
    fig, axes = plt.subplots(2, len(files), figsize=(2.2 * len(files), 4.4))
    for k, f in enumerate(files):
        axes[0, k].imshow(load_image(f))
        axes[0, k].set_title(f.parent.name.split("_", 1)[1].replace("_", " "), fontsize=7)
        axes[0, k].axis("off")
        erp = np.asarray(test.data[k], dtype=np.float64).mean(axis=0)[occ].mean(axis=0)
        axes[1, k].plot(test.times * 1000, erp, lw=1)
        axes[1, k].set_xlabel("ms", fontsize=7)
        axes[1, k].tick_params(labelsize=6)
    axes[1, 0].set_ylabel("occipital mean\n(whitened units)", fontsize=7)
    fig.suptitle("Simulated test images and their averaged EEG (80 repetitions)", fontsize=9)
    fig.tight_layout()
    out = workdir / "demo_test_images_erps.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def run_demo(workdir: str | Path, preset: str = "demo") -> None:
    from .allocator import keep_freed_memory
    from .data.inspect import format_findings, inspect_dataset
    from .data.preprocess import PreprocessConfig, preprocess_subject, read_our_preprocessed
    from .data.simulate import simulate_dataset, simulation_config

    keep_freed_memory()  # glibc keeps freed pages for reuse: every stage's large temporaries (embedding: 2.5x faster)
    workdir = Path(workdir)
    dataset = workdir / "things-eeg2-simulated"
    pre_root = workdir / "preprocessed"
    t0 = time.perf_counter()

    print(f"[1/7] simulate THINGS-EEG2 ({preset} preset) -> {dataset}")
    sim_cfg = simulation_config(preset)
    sim_json = dataset / "simulation.json"
    if sim_json.is_file() and read_json(sim_json).get("config", {}).get("preset") == preset:
        print("      already there, kept")
    else:
        simulate_dataset(dataset, sim_cfg)

    print(f"[2/7] preprocess sub-01 (63 channels, 250 Hz, 0-1 s, MVNN) -> {pre_root / 'sub-01'}")
    pre = preprocess_subject(dataset, pre_root, 1, PreprocessConfig())  # returns at once when current

    print(
        f"[3/7] embed the stimulus images (EfficientNet-Lite0, ImageNet-trained, offline) -> {workdir / 'embeddings'}"
    )
    embed_demo_views(dataset, workdir / "embeddings")

    print("[4/7] what the dataset holds")
    print(format_findings(inspect_dataset(dataset)))
    man = read_json(pre / "manifest.json")
    print(
        f"\npreprocessed sub-01 ({man['config']['preset']} preset, {len(man['ch_names'])} channels, "
        f"{man['sfreq']:g} Hz, {man['times'][0]:.3f}..{man['times'][-1]:.3f} s):"
    )
    for p in ("training", "test"):
        arr = read_our_preprocessed(pre, p)
        rel = split_half_reliability(arr.data)
        print(
            f"  {p:<9} {arr.path.name:<18} {tuple(arr.shape)}  {arr.data.dtype}  "
            f"split-half reliability of image-specific EEG: {rel:.3f}"
        )
    test = read_our_preprocessed(pre, "test")
    n, r = test.shape[:2]
    acc = split_half_identification(test.data)
    print(f"  test images identified from {r // 2}-vs-{r // 2} repetition averages: {acc:.0%} (chance {1 / n:.0%})")
    fig = _figure(workdir, dataset, pre)
    print(f"  picture: {fig}")
    _train_and_evaluate(workdir, dataset, pre_root)
    _reconstruct(workdir, dataset, pre_root)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")


#: The multi-level blur bank of the reference (k = 1, 3, 15, 21, 33, 45, 57, 63 at 224 px); k = 1 is the identity,
#: so the demo reads it from the ``original`` view instead of embedding the same pixels twice.
BLUR_BANK = ["original", "blur-k03", "blur-k15", "blur-k21", "blur-k33", "blur-k45", "blur-k57", "blur-k63"]
IMAGE_ENCODER = "effnet-lite0"
EVNET_ENCODER = "evnet-clip:effnet-lite0"  # EVNet -> seeded frozen conv adapter -> EfficientNet-Lite0

#: The reference recipe's ablation, one row per run (on top of ``configs/run/demo.yaml``): name -> (what the row
#: is / what changed from the row above, config overrides).
ABLATION: dict[str, tuple[str, dict]] = {
    "1-plain": (
        "effnet-lite0 features of the plain image (view `original`) as the target",
        {"data.image_encoder": IMAGE_ENCODER},
    ),
    "2-blur8": (
        "+ the multi-level blur bank: 8 blur levels of each image, fused per embedding dimension (learned)",
        {"data.image_encoder": IMAGE_ENCODER, "train.target.blur_views": BLUR_BANK},
    ),
    "3-blur8-evnet-adapter": (
        "+ EVNet (retina/LGN + V1 -> frozen adapter -> effnet-lite0) fused with the bank, then the learned adapter: "
        "the reference recipe",
        {
            "data.image_encoder": IMAGE_ENCODER,
            "data.evnet_encoder": EVNET_ENCODER,
            "train.target.blur_views": BLUR_BANK,
            "train.target.evnet_view": "original",
            "train.target.adapter": True,
        },
    ),
    "4-oracle": (
        "the simulator's generating features (`sim-features`): the ceiling of what the EEG side can learn here",
        {"data.image_encoder": "sim-features"},
    ),
    # the baselines no result counts without, on the same rows and target as 1-plain
    "5-ridge-plain": (
        "ridge from the averaged EEG to the target of 1-plain (closed form, penalty chosen on the validation concepts)",
        {"data.image_encoder": IMAGE_ENCODER, "train.eeg_encoder": "ridge"},
    ),
    "6-riemann-plain": (
        "Riemannian tangent space of the EEG covariances + ridge to the target of 1-plain (pyRiemann's recipe)",
        {"data.image_encoder": IMAGE_ENCODER, "train.eeg_encoder": "riemann"},
    ),
    "7-shuffled-plain": (
        "the control: 1-plain with the training EEG dealt to shuffled images (expected at chance)",
        {"data.image_encoder": IMAGE_ENCODER, "data.shuffle_pairs": True},
    ),
}
FULL_RECIPE = "3-blur8-evnet-adapter"

#: The demo's brain side for reconstruction (on top of the demo's data paths): CognitionCapturerPro's experts for
#: the image and its edge map (EfficientNet-Lite0; depth needs a depth network's weights) and their fusion; each
#: expert the VED encoder of the retrieval rows on all 63 channels, with their fixed logit scale 1.0, 20 epochs, seeds
#: 0-1. No text expert: the aligner, fitted on the targets' own embeddings, reads the image and edge experts only (a
#: text expert would feed the fusion key alone, which has no target), so it would cost ~30 s and change nothing.
#: Measured on this data (docs/reconstruction.md, issue 19): the released cogcap expert on 17 channels with the
#: released scale 2.727 identifies 4-12 % of the test images after 10 epochs and stays at chance for ~8 epochs on 63
#: channels; VED experts reach 13 % with the released scale and 26-30 % with 1.0, in ~100-150 s.
RECON_RUN = {
    "data.image_encoder": IMAGE_ENCODER,
    "data.val_fraction": 0.1,
    "train.epochs": 20,
    "train.batch_size": 128,
    "train.lr": 1e-3,
    "train.experts": {
        "modalities": {"image": ["original"], "edge": ["edges-100-200"]},
        "expert": "ved",
        "logit_scale": 1.0,
    },
    "seeds": [0, 1],
}
#: The aligner: ridge fitted on the training images' own embeddings (``fit_on=targets``), each seed's expert outputs
#: given their moments. Measured on this data: an aligner fitted on the experts' outputs for the training EEG
#: (STH-Align or ridge) loses most of what the experts have, since they have memorised that EEG (100 % of the images
#: they trained on, 22-24 % of the test images); fitted on the targets it keeps 14-16 %. With ``low_level`` it also
#: fits the low-level path: ridge from the averaged EEG to the offline VAE's latents.
RECON_ALIGN = {"method": "ridge", "fit_on": "targets", "align": {"targets": ["image", "edge"]}}
#: The offline VAE (``train-vae``): a small diffusers AutoencoderKL at 32 px, latents 4 x 8 x 8, 300 steps (~80 s
#: on 2 cores). KL weight 1e-4: of those tried, its latents are the most linear in what the EEG carries, measured on
#: held-out *training* concepts (ridge from the EEG fitted on the other training concepts, its latents decoded:
#: PixCorr 0.18 with 1e-4, 0.17 with 1e-5, 0.04 with 5e-4, where the VAE collapses).
RECON_VAE = {"image_size": 32, "block_out_channels": [16, 32, 32], "kl": 1e-4, "steps": 300}
#: The offline generator (``train-decoder``): the conditional decoder at 32 px from the aligner's two targets and the
#: latents, 600 steps (~60 s); its other settings are the defaults, chosen before any test image was scored.
RECON_DECODER = {"image_size": 32, "steps": 600}
RECON_ROWS = ["eeg", "low-level", "shuffled", "nearest", "linear", "ceiling"]
RECON_METRICS = ["pixcorr", "ssim", "effnet_lite0_proxy"]


def embed_demo_views(dataset: Path, store: Path) -> None:
    """Every table the ablation reads, each computed once (cached in the store on later runs)."""
    from .features.embed import embed_images
    from .features.encoders import build_image_encoder
    from .features.oracle import embed_simulation_features
    from .features.views import parse_views

    t0 = time.perf_counter()
    bank = parse_views("original,blur:k=3,blur:k=15,blur:k=21,blur:k=33,blur:k=45,blur:k=57,blur:k=63")
    results = embed_images(dataset, store, bank, build_image_encoder(IMAGE_ENCODER))
    results += embed_images(dataset, store, parse_views("original"), build_image_encoder(EVNET_ENCODER))
    results += embed_images(dataset, store, parse_views("edges"), build_image_encoder(IMAGE_ENCODER))
    results += embed_simulation_features(dataset, store)
    for r in results:
        print(f"      {r.partition:<9} {r.view:<10} {r.encoder:<24} {r.status:<9} {r.n_images} images")
    print(f"      ({time.perf_counter() - t0:.0f} s)")


def _data_paths(workdir: Path, dataset: Path, pre_root: Path) -> dict[str, str]:
    return {"data.preprocessed": str(pre_root), "data.store": str(workdir / "embeddings"), "data.dataset": str(dataset)}


def _train_and_evaluate(workdir: Path, dataset: Path, pre_root: Path) -> None:
    from .pipeline import run_all
    from .runs import run_config

    runs = workdir / "runs"
    paths = _data_paths(workdir, dataset, pre_root)
    print(f"[5/7] train the multi-level-blur EEG encoder (VED), seeds 0-2 together, for each row -> {runs}")
    print("[6/7] and evaluate zero-shot retrieval on the 50 test images (only `evaluate` reads them)")
    for old in sorted(p for p in runs.glob("*") if p.is_dir() and p.name not in ABLATION):  # the demo owns runs/
        print(f"      {old}: a row of an older demo, removed")
        shutil.rmtree(old)
    plan = {runs / name: run_config("demo", None, **paths, **over) for name, (_, over) in ABLATION.items()}
    descriptions = {name: text for name, (text, _) in ABLATION.items()}
    md = run_all(
        plan, runs, progress=True, log=lambda m: print("      " + m), replace_stale=True, descriptions=descriptions
    )
    print()
    print(md.read_text())
    full = read_json(runs / FULL_RECIPE / "metrics.json")["final"]["sub-01"]["aggregate"]["top1"]
    chance = 1 / 50
    print(
        f"the reference recipe ({FULL_RECIPE}), final epoch, 3 seeds: top-1 {100 * full['mean']:.1f} ± "
        f"{100 * full['sd']:.1f} % = {full['mean'] / chance:.1f} x chance ({100 * chance:.0f} %)"
    )
    print(
        f"per run: {runs}/<run>/report.md, metrics.json, top5.png (EEG queries and their top-5 images), "
        "units/sub-01/curves.png (training curves)"
    )


def _reconstruct(workdir: Path, dataset: Path, pre_root: Path) -> None:
    """Experts -> aligner, EEG -> VAE latent, the offline decoder -> every row of the table, scored side by side."""
    from .evaluation.reconstruction import evaluate_rows
    from .evaluation.table import write_table
    from .features.embed import embed_images
    from .features.encoders import build_image_encoder
    from .features.views import parse_views
    from .generation.reconstruct import ROWS, ReconstructConfig, reconstruct_run
    from .io import DataFormatError
    from .models.align import AlignConfig
    from .models.decoder import DecoderConfig
    from .pipeline import train_and_evaluate
    from .runs import AlignStageConfig, config_changes, run_config
    from .training.align import align_run
    from .training.decoder import DecoderStageConfig, train_decoder
    from .training.vae import VAEConfig, train_vae

    root = workdir / "reconstruction"
    run_dir, images = root / "experts", root / "images"
    paths = _data_paths(workdir, dataset, pre_root)
    cfg = run_config(None, None, **paths, **RECON_RUN)
    if config_changes(run_dir / "config.yaml", cfg):  # the demo owns this folder: an older demo's run is replaced
        print(f"      {root}: made by an older demo, removed")
        shutil.rmtree(root)
    log = lambda m: print("      " + m)  # noqa: E731
    t0 = time.perf_counter()
    print(f"[7/7] reconstruction: VED experts (image, edge map) + fusion, seeds 0-1 -> {run_dir}")
    train_and_evaluate(cfg, run_dir, progress=True, log=log)

    def owned(make, folder: Path):  # the demo's folders: one made by an older demo is replaced, not refused
        try:
            return make()
        except DataFormatError as exc:
            if "of another" not in str(exc) and "from other inputs" not in str(exc):
                raise
            print(f"      {folder}: made by an older demo, removed")
            shutil.rmtree(folder)
            return make()

    vae = root / "vae"
    print(f"      the low-level path: the offline VAE (a diffusers AutoencoderKL, training images only) -> {vae}")
    owned(lambda: train_vae(dataset, vae, VAEConfig(**RECON_VAE), progress=True, log=log), vae)
    latents = f"vae:{vae}"
    embed_images(dataset, workdir / "embeddings", parse_views("original"), build_image_encoder(latents), progress=False)
    align = AlignStageConfig(
        run=str(run_dir),
        low_level=latents,
        **{k: v for k, v in RECON_ALIGN.items() if k != "align"},
        align=AlignConfig(**RECON_ALIGN["align"]),
    )
    if config_changes(run_dir / "align" / "config.yaml", align):  # an older demo's aligners and their images
        print(f"      {run_dir / 'align'}: made by an older demo, removed with {images}")
        shutil.rmtree(run_dir / "align", ignore_errors=True)
        shutil.rmtree(images, ignore_errors=True)
    align_run(align, run_dir / "align", progress=False, log=log)
    decoder = root / "decoder"
    dcfg = DecoderStageConfig(
        encoder=IMAGE_ENCODER,
        targets=list(RECON_ALIGN["align"]["targets"]),
        latents=latents,
        decoder=DecoderConfig(**RECON_DECODER),
    )
    print(f"      the offline generator (conditional decoder, training images only) -> {decoder}")
    owned(lambda: train_decoder(dataset, workdir / "embeddings", decoder, dcfg, progress=True, log=log), decoder)
    recon = ReconstructConfig(generator="decoder", decoder=str(decoder), rows=RECON_ROWS, nearest_size=128)
    owned(lambda: reconstruct_run(run_dir / "align", images, recon, progress=False, log=lambda m: None), images)
    evaluate_rows(images, dataset, metrics=RECON_METRICS, log=lambda m: None)
    md = write_table(images, descriptions={r: ROWS[r] for r in RECON_ROWS})[1]
    print(f"      ({time.perf_counter() - t0:.0f} s)")
    print()
    print(md.read_text())
    print(
        f"reconstructions: {images}/grid-sub-01.png (test images | low-level | generated | linear | nearest | "
        f"shuffled | ceiling), {images}/<row>/sub-01/report.md. The generator here is the offline conditional "
        "decoder, a stand-in for SDXL-Turbo trained on the 1,200 training images: `eeg2image reconstruct "
        "--generator sdxl` runs SDXL-Turbo where its weights are present"
    )
