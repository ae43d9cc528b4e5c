"""How far can any reconstruction of the simulated EEG go? Oracle images scored like reconstructions.

    python -m benchmarks.recon_oracles demo_output

Reads a finished ``make demo`` folder (the simulated dataset, its preprocessed sub-01 and its embedding store) and
prints PixCorr and the effnet-lite0 2-way proxy (``evaluation.reconstruction``, the demo's reconstruction metrics)
of images built *with* knowledge no decoder has, to show which parts of an image the metrics reward and how much a
perfect renderer of what the EEG carries would score:

- the test images themselves, blurred (downsampled to 8 / 16 / 32 px);
- each test image's own layers recombined (the simulator's renderer, ``data.simulate.images.render_layers``): its
  background alone, its object on another background;
- the simulator's own renderer drawing the concept factors (colour, texture, shape, layout) *decoded from the test
  EEG* by a linear read-out (ridge from the averaged EEG to the factors' one-hot code, fitted on the training
  images, penalty chosen on held-out training concepts), at random positions, on the EEG's low-level image (ridge
  from the averaged EEG to the 32-px pixels, contrast-normalised per image) or on another background;
- the same renderer drawing the factors read from the *chain's* prediction (the `eeg` row's aligned image embedding,
  ``predictions.safetensors`` of each seed): a ridge from the training images' own effnet-lite0 embeddings to the
  factors, applied to the prediction (rescaled per image to the training embeddings' mean norm around their mean).

The simulator drives its EEG by 6 sources per feature group (early, mid, semantic: ``data.simulate.eeg``), so the
EEG carries a 6-number projection of each image's 31-number factor code; the last rows bound what a generator that
renders the EEG's information perfectly could reach. Figures, not tests: nothing here is asserted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from eeg2image.data.preprocess import read_our_preprocessed
from eeg2image.data.simulate.images import FACTORS, Concept, compose, render_layers
from eeg2image.data.things_eeg2 import ImageSet, concept_name, load_image
from eeg2image.datasets import concept_disjoint_split, concept_of
from eeg2image.evaluation.reconstruction import FEATURE_METRICS, pixcorr, resize, two_way
from eeg2image.models.ridge import eeg_features, fit_ridge

NAMES = ("colour", "texture", "shape", "layout")


def _tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return resize(x, 256)


def _own_rng(cfg_seed: int, k: int) -> np.random.Generator:
    """The generator the simulator drew test image k from (its file name's draw first)."""
    rng = np.random.default_rng([cfg_seed, 11, 1, k])
    rng.integers(1, 13)
    return rng


def _argmax_per_factor(pred: np.ndarray) -> list[np.ndarray]:
    out, off = [], 0
    for levels in FACTORS:
        out.append(pred[:, off : off + len(levels)].argmax(1))
        off += len(levels)
    return out


def _accuracy(decoded: list[np.ndarray], concepts: list[Concept]) -> str:
    """Each factor's share of test images whose decoded level is the true one."""
    return ", ".join(
        f"{n} {100 * np.mean([FACTORS[k][decoded[k][i]] == getattr(c, n) for i, c in enumerate(concepts)]):.0f} %"
        for k, n in enumerate(NAMES)
    )


def _read_factors_from_prediction(w: Path, path: Path, onehot: np.ndarray, val: np.ndarray) -> list[np.ndarray]:
    """Factors read by ridge (fitted on the training images' own embeddings) from a row's predicted image embedding."""
    from safetensors.numpy import load_file

    from eeg2image.features.store import EmbeddingStore

    train = EmbeddingStore(w / "embeddings").load("training", "original", "effnet-lite0").embeddings.astype(np.float32)
    pred = load_file(str(path))["embeds/image"].astype(np.float32)
    mu = train.mean(0)
    norm = np.linalg.norm(train - mu, axis=1).mean()
    centred = pred - mu
    pred = mu + centred / np.linalg.norm(centred, axis=1, keepdims=True).clip(1e-8) * norm
    read = fit_ridge(torch.from_numpy(train), torch.from_numpy(onehot), val)(torch.from_numpy(pred)).numpy()
    return _argmax_per_factor(read)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workdir", type=Path, help="a finished `make demo` folder (demo_output)")
    p.add_argument(
        "--eeg-row",
        type=Path,
        default=None,
        help="the `eeg` row of `reconstruct` (default WORKDIR/reconstruction/images/eeg/sub-01)",
    )
    args = p.parse_args()
    torch.set_num_threads(2)
    w = args.workdir
    root = w / "things-eeg2-simulated"
    images = ImageSet.discover(root)
    import json

    seed = json.loads((root / "simulation.json").read_text())["config"]["seed"]
    size = json.loads((root / "simulation.json").read_text())["config"]["image_size"]
    test_files = images.files("test")
    test_concepts = [Concept.parse(concept_name(f.parent.name)) for f in test_files]
    train_concepts = [Concept.parse(concept_name(f.parent.name)) for f in images.files("training")]
    gt = _tensor([np.asarray(load_image(f)) for f in test_files])
    extract = FEATURE_METRICS["effnet_lite0_proxy"].build({})
    gt_feats = extract(gt)
    rows: list[tuple[str, float, float]] = []

    def score(name: str, rec: torch.Tensor) -> None:
        rows.append((name, pixcorr(gt, rec), two_way(gt_feats, extract(rec))))
        print(f"{name:<100} PixCorr {rows[-1][1]:.3f}  proxy {rows[-1][2]:.3f}", flush=True)

    for s in (8, 16, 32):
        score(f"the test images downsampled to {s} px", resize(resize(gt, s), 256))
    layers = [render_layers(c, size, _own_rng(seed, k)) for k, c in enumerate(test_concepts)]
    other = [render_layers(c, size, np.random.default_rng([77, k])) for k, c in enumerate(test_concepts)]
    score(
        "each test image's background alone (its object removed)",
        _tensor([np.asarray(compose(b, o, m * 0)) for b, o, m in layers]),
    )
    score(
        "each test image's object on another background",
        _tensor([np.asarray(compose(ob, o, m)) for (_, o, m), (ob, _, _) in zip(layers, other, strict=True)]),
    )

    # what a linear read-out of the EEG gives: factors, and a 32-px low-level image
    pre = w / "preprocessed" / "sub-01"
    xtr = eeg_features(
        torch.from_numpy(np.asarray(read_our_preprocessed(pre, "training").data).mean(1, dtype=np.float32)), 2
    )
    xte = eeg_features(
        torch.from_numpy(np.asarray(read_our_preprocessed(pre, "test").data).mean(1, dtype=np.float32)), 2
    )
    val = concept_disjoint_split(concept_of(images.relative_paths("training")), 0.1, 0)[1]
    onehot = np.stack([c.semantic_vector() for c in train_concepts]).astype(np.float32)
    decoded = _argmax_per_factor(fit_ridge(xtr, onehot, val)(xte).numpy())
    guess = [Concept(*[FACTORS[k][decoded[k][i]] for k in range(4)]) for i in range(len(test_concepts))]
    pix = np.stack([np.asarray(load_image(f, size=32)) for f in images.files("training")]).reshape(len(xtr), -1)
    low = fit_ridge(xtr, pix.astype(np.float32) / 255.0, val)(xte).reshape(-1, 32, 32, 3).permute(0, 3, 1, 2)
    m, sd = low.mean((1, 2, 3), keepdim=True), low.std((1, 2, 3), keepdim=True).clamp_min(1e-6)
    low = resize(((low - m) / sd * 0.18 + 0.5).clamp(0, 1), size).permute(0, 2, 3, 1).numpy() * 255.0
    print(f"factors decoded from the test EEG by ridge: {_accuracy(decoded, test_concepts)} (chance 10, 17, 10, 20 %)")
    score("the EEG's low-level image (ridge to 32-px pixels, normalised)", _tensor(list(low)))
    drawn = [render_layers(c, size, np.random.default_rng([77, k])) for k, c in enumerate(guess)]
    score(
        "the EEG-decoded factors drawn by the simulator, random positions, on the EEG's low-level image",
        _tensor([np.asarray(compose(low[k], o, m)) for k, (_, o, m) in enumerate(drawn)]),
    )
    score("the same on another background", _tensor([np.asarray(compose(b, o, m)) for b, o, m in drawn]))
    for seed_dir in sorted((args.eeg_row or w / "reconstruction/images/eeg/sub-01").glob("seed-*")):
        chain = _read_factors_from_prediction(w, seed_dir / "predictions.safetensors", onehot, val)
        print(f"factors read from the chain's image embedding ({seed_dir.name}): {_accuracy(chain, test_concepts)}")
        guess = [Concept(*[FACTORS[k][chain[k][i]] for k in range(4)]) for i in range(len(test_concepts))]
        drawn = [render_layers(c, size, np.random.default_rng([77, k])) for k, c in enumerate(guess)]
        score(
            f"the factors read from the chain's image embedding ({seed_dir.name}) drawn on the EEG's low-level image",
            _tensor([np.asarray(compose(low[k], o, m)) for k, (_, o, m) in enumerate(drawn)]),
        )
    score(
        "the true factors drawn by the simulator, random positions, on the EEG's low-level image",
        _tensor([np.asarray(compose(low[k], o, m)) for k, (_, o, m) in enumerate(other)]),
    )
    print()
    print("| oracle images (50 test images) | PixCorr | effnet-lite0 2-way (proxy) |")
    print("|---|---|---|")
    for name, pc, tw in rows:
        print(f"| {name} | {pc:.3f} | {tw:.3f} |")


if __name__ == "__main__":
    main()
