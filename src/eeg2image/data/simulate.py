"""A simulated THINGS-EEG2: the real on-disk layout, from a documented forward model.

``eeg2image simulate`` writes raw session files, the authors' preprocessed files, the image folders with
JPEGs and ``image_metadata.npy``, with the same names, keys, dtypes and shape conventions as the real
dataset (fewer items unless ``--preset full``), so any tool written for the real files runs on ours.

Forward model (``docs/simulation.md`` has the full description and the numbers):

* **Images.** Each concept is a combination of four factors (shape, colour, texture, layout), drawn so
  that test concepts are unseen combinations whose factor values all occur in training. The images of a
  concept vary in background, position, size, rotation and brightness.
* **Evoked responses.** Image features computed from the pixels of the written JPEGs drive dipolar
  sources (subject-specific positions and orientations, 63 real channel positions from MNE's easycap-M1
  montage, referenced to Fz as the recording was): retinotopic luminance/colour contrast (~100 ms,
  occipital), orientation and spatial-frequency energy (~170 ms, occipito-temporal), and the concept's
  factors (~300 ms, parietal), on top of a stimulus-general visual evoked response.
* **Trial variability.** Per trial gain (log-normal) and latency jitter; per session channel gains.
* **Background.** 1/f noise from many dipoles, occipital alpha (subject frequency ~10 Hz), slow drift,
  blinks between RSVP sequences, sensor noise. Volts, 1000 Hz, single-sample stim pulses.
* **Design.** The real session design: each training image in exactly 2 of the 4 sessions (concepts split
  over sessions 1/2 and 3/4 by two permutations) with 2 repetitions there and a few 3; each test image in
  all 4 sessions with 20 and a few 21; targets coded 99999; 100 ms on, 200 ms onset-to-onset, sequences of
  20 images separated by pauses.

The model is generic (linear-nonlinear feature drive, no decoder's features), so it favours no method.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import signal
from tqdm.auto import tqdm

from ..config import to_dict
from ..io import DataFormatError, atomic_path, write_json
from .things_eeg2 import (
    PARTITIONS,
    RAW_CHANNEL_ORDER,
    TARGET_ID,
    ImageSet,
    Partition,
    concept_name,
    load_image,
    subject_dirname,
)

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon", "crescent", "arrow")
COLOURS = {
    "red": (215, 45, 40),
    "orange": (240, 140, 30),
    "yellow": (232, 210, 45),
    "green": (55, 165, 60),
    "teal": (30, 155, 160),
    "blue": (45, 85, 215),
    "purple": (140, 65, 190),
    "pink": (240, 125, 180),
    "brown": (125, 80, 45),
    "grey": (128, 128, 128),
}
TEXTURES = ("plain", "striped", "checked", "dotted", "wavy", "speckled")
LAYOUTS = ("single", "pair", "trio", "large", "small")
FACTORS = (tuple(COLOURS), TEXTURES, SHAPES, LAYOUTS)
N_SEMANTIC = sum(len(f) for f in FACTORS)


@dataclass
class SimulationConfig:
    """Sizes and forward-model parameters of a simulated THINGS-EEG2 (see ``SIMULATION_PRESETS``)."""

    preset: str = "tiny"
    subjects: list[int] = dataclasses.field(default_factory=lambda: [1])
    n_train_concepts: int = 16
    images_per_concept: int = 4
    n_test_concepts: int = 8
    image_size: int = 64
    seed: int = 0
    # session design (per session)
    train_reps_per_session: int = 2
    test_reps_per_session: int = 20
    extra_fraction_training: float = 0.02  # share of images shown a 3rd time (real: 170 / 8270)
    extra_fraction_test: float = 0.014  # share shown a 21st time (real: 56 / 4000)
    target_fraction: float = 0.006  # targets per presentation (real: 90 / 16800)
    sequence_length: int = 20
    soa: float = 0.2
    pause: tuple[float, float] = (0.75, 1.5)  # seconds between sequences
    # forward model (amplitudes in microvolts)
    vep_uv: float = 4.0
    specific_uv: float = 4.0
    background_uv: float = 9.0
    alpha_uv: float = 5.0
    sensor_uv: float = 1.5
    drift_uv: float = 4.0
    blink_uv: float = 80.0
    trial_gain_sd: float = 0.3
    latency_jitter_ms: float = 8.0
    session_gain_sd: float = 0.03
    write_preprocessed: bool = True  # the authors' preprocessed files, made by our `authors` preset

    def __post_init__(self) -> None:
        if self.train_reps_per_session < 2 or self.test_reps_per_session < 20:
            raise ValueError("the real design has >= 2 training and >= 20 test repetitions per session")
        if self.n_train_concepts < 2 or self.n_test_concepts < 1 or self.images_per_concept < 1:
            raise ValueError("need >= 2 training concepts, >= 1 test concept and >= 1 image per concept")
        total = self.n_train_concepts + self.n_test_concepts
        if total > math.prod(len(f) for f in FACTORS):
            raise ValueError(f"at most {math.prod(len(f) for f in FACTORS)} concepts can be made")


SIMULATION_PRESETS: dict[str, dict] = {
    # writes in about a second: readers, preprocessing and layout tests
    "tiny": {},
    # enough training data to learn a decoder in a test
    "small": {"n_train_concepts": 60, "images_per_concept": 5, "n_test_concepts": 20},
    # the demo: a few minutes end to end on 2 CPU cores
    "demo": {"n_train_concepts": 150, "images_per_concept": 8, "n_test_concepts": 50, "image_size": 128},
    # the real counts: 1654 x 10 training images, 200 test images, 500 px
    "full": {"n_train_concepts": 1654, "images_per_concept": 10, "n_test_concepts": 200, "image_size": 500},
}


def simulation_config(preset: str = "tiny", **overrides) -> SimulationConfig:
    if preset not in SIMULATION_PRESETS:
        raise DataFormatError(f"unknown simulation preset {preset!r}; known: {', '.join(SIMULATION_PRESETS)}")
    fields = {**SIMULATION_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return SimulationConfig(preset=preset, **fields)


# --------------------------------------------------------------------------------------------------
# Concepts and images
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Concept:
    colour: str
    texture: str
    shape: str
    layout: str

    @property
    def name(self) -> str:
        return f"{self.colour}_{self.texture}_{self.shape}_{self.layout}"

    @classmethod
    def parse(cls, name: str) -> Concept:
        parts = name.split("_")
        if len(parts) != 4 or any(p not in f for p, f in zip(parts, FACTORS, strict=False)):
            raise DataFormatError(f"{name!r} is not a simulated concept name (colour_texture_shape_layout)")
        return cls(*parts)

    def semantic_vector(self) -> np.ndarray:
        v = []
        for value, levels in zip((self.colour, self.texture, self.shape, self.layout), FACTORS, strict=True):
            v.extend(float(value == lv) for lv in levels)
        return np.asarray(v)


def draw_concepts(cfg: SimulationConfig) -> tuple[list[Concept], list[Concept]]:
    """Training and test concepts; every factor level of a test concept also occurs in training."""
    rng = np.random.default_rng([cfg.seed, 7])
    combos = [Concept(*c) for c in itertools.product(*FACTORS)]
    for _ in range(1000):
        order = rng.permutation(len(combos))
        test = [combos[i] for i in order[: cfg.n_test_concepts]]
        train = [combos[i] for i in order[cfg.n_test_concepts : cfg.n_test_concepts + cfg.n_train_concepts]]
        seen = [set(getattr(c, f) for c in train) for f in ("colour", "texture", "shape", "layout")]
        if all(
            getattr(c, f) in s
            for c in test
            for f, s in zip(("colour", "texture", "shape", "layout"), seen, strict=True)
        ):
            return sorted(train, key=lambda c: c.name), sorted(test, key=lambda c: c.name)
    raise DataFormatError("could not draw test concepts covered by training factors; use more training concepts")


def _shape_polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def poly(n: int, radius_fn, phase: float = 0.0) -> list[tuple[float, float]]:
        pts = []
        for k in range(n):
            a = phase + rot + 2 * math.pi * k / n
            rr = radius_fn(k)
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        return poly(4, lambda k: r, math.pi / 4)
    if shape == "triangle":
        return poly(3, lambda k: r, -math.pi / 2)
    if shape == "diamond":
        return poly(4, lambda k: r * (1.0 if k % 2 == 0 else 0.62))
    if shape == "star":
        return poly(10, lambda k: r if k % 2 == 0 else 0.45 * r, -math.pi / 2)
    if shape == "hexagon":
        return poly(6, lambda k: r)
    if shape == "cross":
        w = 0.33 * r
        base = [
            (-w, -r),
            (w, -r),
            (w, -w),
            (r, -w),
            (r, w),
            (w, w),
            (w, r),
            (-w, r),
            (-w, w),
            (-r, w),
            (-r, -w),
            (-w, -w),
        ]
    elif shape == "arrow":
        base = [
            (-r, -0.3 * r),
            (0.1 * r, -0.3 * r),
            (0.1 * r, -0.75 * r),
            (r, 0.0),
            (0.1 * r, 0.75 * r),
            (0.1 * r, 0.3 * r),
            (-r, 0.3 * r),
        ]
    else:
        raise ValueError(shape)
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in base]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, rot: float) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        draw.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=0)
    elif shape == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ox, oy = 0.45 * r * math.cos(rot), 0.45 * r * math.sin(rot)
        draw.ellipse([cx + ox - 0.85 * r, cy + oy - 0.85 * r, cx + ox + 0.85 * r, cy + oy + 0.85 * r], fill=0)
    else:
        draw.polygon(_shape_polygon(shape, cx, cy, r, rot), fill=255)


def _layout_positions(layout: str, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """(x, y, radius) in units of the image side."""
    j = lambda s: float(rng.uniform(-s, s))  # noqa: E731
    if layout == "single":
        return [(0.5 + j(0.07), 0.5 + j(0.07), 0.22 * (1 + j(0.12)))]
    if layout == "large":
        return [(0.5 + j(0.04), 0.5 + j(0.04), 0.36 * (1 + j(0.08)))]
    if layout == "small":
        return [(0.5 + j(0.25), 0.5 + j(0.25), 0.11 * (1 + j(0.12)))]
    if layout == "pair":
        y = 0.5 + j(0.1)
        r = 0.15 * (1 + j(0.1))
        return [(0.27 + j(0.04), y + j(0.04), r), (0.73 + j(0.04), y + j(0.04), r)]
    if layout == "trio":
        r = 0.12 * (1 + j(0.1))
        return [
            (0.5 + j(0.04), 0.25 + j(0.04), r),
            (0.26 + j(0.04), 0.72 + j(0.04), r),
            (0.74 + j(0.04), 0.72 + j(0.04), r),
        ]
    raise ValueError(layout)


def _texture(texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative pattern in [0.45, 1] of shape (size, size)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    theta = rng.uniform(0, math.pi)
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    freq = rng.uniform(9, 13)
    if texture == "plain":
        pat = 0.9 + 0.1 * (u - 0.5)
    elif texture == "striped":
        pat = (np.sin(2 * math.pi * freq * u) > 0).astype(float)
    elif texture == "checked":
        pat = ((np.floor(freq * u) + np.floor(freq * v)) % 2).astype(float)
    elif texture == "dotted":
        pat = ((np.sin(2 * math.pi * freq * u) * np.sin(2 * math.pi * freq * v)) < 0.55).astype(float)
    elif texture == "wavy":
        pat = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (u + 0.06 * np.sin(2 * math.pi * 3 * v)))
    elif texture == "speckled":
        pat = (rng.random((size, size)) > 0.35).astype(float)
    else:
        raise ValueError(texture)
    return 0.45 + 0.55 * np.clip(pat, 0, 1)


def render_image(concept: Concept, size: int, rng: np.random.Generator) -> Image.Image:
    """One photograph-like image of ``concept``: a textured object layout on a varied background."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    c1, c2 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    a = rng.uniform(0, 2 * math.pi)
    g = np.clip(0.5 + (xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a), 0, 1)[..., None]
    low = np.asarray(Image.fromarray((rng.random((4, 4)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC))
    bg = (1 - g) * c1 + g * c2 + (low[..., None] / 255.0 - 0.5) * 60
    bg = bg + rng.normal(0, 6, (size, size, 1))

    scale = 4 if size < 256 else 2  # draw large, then shrink: anti-aliased edges
    mask_img = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(mask_img)
    rot = float(rng.uniform(-0.35, 0.35))
    for x, y, r in _layout_positions(concept.layout, rng):
        _draw_shape(draw, concept.shape, x * size * scale, y * size * scale, r * size * scale, rot)
    mask = np.asarray(mask_img.resize((size, size), Image.LANCZOS).filter(ImageFilter.GaussianBlur(0.5)))
    mask = (mask / 255.0)[..., None]

    colour = np.asarray(COLOURS[concept.colour], dtype=float) * rng.uniform(0.85, 1.15)
    obj = colour * _texture(concept.texture, size, rng)[..., None]
    shade = 1.0 + 0.15 * ((xx - 0.5) * math.cos(a + 1) + (yy - 0.5) * math.sin(a + 1))[..., None]
    img = bg * (1 - mask) + obj * shade * mask
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _image_file_names(concept: Concept, n: int, rng: np.random.Generator, test: bool) -> list[str]:
    if test:
        return [f"{concept.name}_{int(rng.integers(1, 13)):02d}s.jpg"]
    return [f"{concept.name}_{k + 1:02d}{'b' if k == 0 else 's'}.jpg" for k in range(n)]


def write_image_set(root: Path, cfg: SimulationConfig, progress: bool = True) -> ImageSet:
    """``image_set/{training_images,test_images}/NNNNN_concept/*.jpg`` and ``image_metadata.npy``."""
    train, test = draw_concepts(cfg)
    all_sorted = sorted({c.name for c in train + test})
    things_index = {name: i + 1 for i, name in enumerate(all_sorted)}
    base = root / "image_set"
    meta: dict[str, list[str]] = {}
    for partition, concepts in (("training", train), ("test", test)):
        folder = base / f"{partition}_images"
        prefix = "train" if partition == "training" else "test"
        files, folders, things = [], [], []
        for k, concept in enumerate(tqdm(concepts, desc=f"images {partition}", disable=not progress)):
            rng = np.random.default_rng([cfg.seed, 11, 0 if partition == "training" else 1, k])
            cdir = folder / f"{k + 1:05d}_{concept.name}"
            cdir.mkdir(parents=True, exist_ok=True)
            n = 1 if partition == "test" else cfg.images_per_concept
            for fname in _image_file_names(concept, n, rng, partition == "test"):
                im = render_image(concept, cfg.image_size, rng)
                with atomic_path(cdir / fname) as tmp:
                    im.save(tmp, format="JPEG", quality=92)
                files.append(fname)
                folders.append(cdir.name)
                things.append(f"{things_index[concept.name]:05d}_{concept.name}")
        meta[f"{prefix}_img_files"] = files
        meta[f"{prefix}_img_concepts"] = folders
        meta[f"{prefix}_img_concepts_THINGS"] = things
    with atomic_path(base / "image_metadata.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, meta)
    return ImageSet.discover(root)


# --------------------------------------------------------------------------------------------------
# Image features that drive the EEG
# --------------------------------------------------------------------------------------------------


def _pixel_features(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Early (retinotopic luminance / colour-opponent means, 4x4 grid) and mid-level features
    (orientation energy in 4 bins x 2x2 quadrants, plus coarse/fine energy) of an RGB array in [0, 1]."""
    s = img.shape[0]
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    lum, rg, by = (r + g + b) / 3, r - g, b - (r + g) / 2
    cell = s // 4
    early = np.concatenate(
        [m[: cell * 4, : cell * 4].reshape(4, cell, 4, cell).mean(axis=(1, 3)).ravel() for m in (lum, rg, by)]
    )
    gy, gx = np.gradient(lum)
    mag = np.hypot(gx, gy)
    ori = np.mod(np.arctan2(gy, gx), math.pi)
    bins = np.minimum((ori / (math.pi / 4)).astype(int), 3)
    half = s // 2
    mid = []
    for qy in range(2):
        for qx in range(2):
            sl = (slice(qy * half, (qy + 1) * half), slice(qx * half, (qx + 1) * half))
            mid.extend(np.bincount(bins[sl].ravel(), weights=mag[sl].ravel(), minlength=4) / (half * half))
    coarse = np.asarray(Image.fromarray((lum * 255).astype(np.uint8)).resize((16, 16), Image.BILINEAR)) / 255.0
    cy, cx = np.gradient(coarse)
    mid.extend([float(np.hypot(cx, cy).mean()), float(mag.mean())])
    return early, np.asarray(mid)


def image_features(image_set: ImageSet) -> dict[str, dict[str, np.ndarray]]:
    """Per partition: ``early`` (n, 48), ``mid`` (n, 18), ``semantic`` (n, 31), standardised over all
    images of the set (both partitions), from the JPEG files on disk."""
    raw: dict[str, dict[str, list[np.ndarray]]] = {}
    for p in PARTITIONS:
        rows: dict[str, list[np.ndarray]] = {"early": [], "mid": [], "semantic": []}
        for path in image_set.files(p):
            arr = np.asarray(load_image(path, size=64), dtype=np.float64) / 255.0
            e, m = _pixel_features(arr)
            rows["early"].append(e)
            rows["mid"].append(m)
            rows["semantic"].append(Concept.parse(concept_name(path.parent.name)).semantic_vector())
        raw[p] = rows
    out: dict[str, dict[str, np.ndarray]] = {p: {} for p in PARTITIONS}
    for key in ("early", "mid", "semantic"):
        both = np.concatenate([np.asarray(raw[p][key]) for p in PARTITIONS])
        mu, sd = both.mean(axis=0), both.std(axis=0) + 1e-6
        for p in PARTITIONS:
            out[p][key] = (np.asarray(raw[p][key]) - mu) / sd
    return out


# --------------------------------------------------------------------------------------------------
# Subject forward model
# --------------------------------------------------------------------------------------------------

_COMPONENTS = (
    # name, feature group, n sources, latency (ms), latency spread, width (ms), region (y range, z range)
    ("early", "early", 6, 100.0, 12.0, 22.0, (-1.0, -0.75), (-0.2, 0.45)),
    ("mid", "mid", 6, 170.0, 18.0, 32.0, (-0.95, -0.45), (-0.35, 0.35)),
    ("semantic", "semantic", 6, 310.0, 45.0, 80.0, (-0.75, -0.2), (0.3, 0.85)),
)
RESPONSE_MS = 900


def channel_positions() -> tuple[np.ndarray, np.ndarray]:
    """Unit-sphere positions of the 63 raw-order channels and of the reference Fz (easycap-M1)."""
    import mne

    pos = mne.channels.make_standard_montage("easycap-M1").get_positions()["ch_pos"]
    xyz = np.array([pos[c] for c in RAW_CHANNEL_ORDER])
    ref = np.asarray(pos["Fz"])
    radius = np.linalg.norm(xyz, axis=1).mean()
    return xyz / radius, ref / radius


def _dipole_patterns(src: np.ndarray, ori: np.ndarray, elec: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Potential of unit dipoles (infinite homogeneous medium) at the electrodes minus at the reference."""

    def pot(points: np.ndarray) -> np.ndarray:
        d = points[:, None, :] - src[None, :, :]  # (n_points, n_src, 3)
        return np.einsum("psk,sk->ps", d, ori) / np.linalg.norm(d, axis=2) ** 3

    v = pot(elec) - pot(ref[None])
    return v / np.abs(v).max(axis=0, keepdims=True)


def _random_sources(
    rng: np.random.Generator, n: int, y_range, z_range, depth=(0.62, 0.8)
) -> tuple[np.ndarray, np.ndarray]:
    pts = []
    while len(pts) < n:
        p = rng.normal(size=3)
        p /= np.linalg.norm(p)
        if y_range[0] <= p[1] <= y_range[1] and z_range[0] <= p[2] <= z_range[1]:
            pts.append(p)
    unit = np.asarray(pts)
    src = unit * rng.uniform(*depth, size=(n, 1))
    ori = unit + 0.5 * rng.normal(size=(n, 3))
    ori /= np.linalg.norm(ori, axis=1, keepdims=True)
    return src, ori


@dataclass
class SubjectModel:
    """Everything subject-specific: source patterns, waveforms, feature weights, noise sources."""

    weights: dict[str, np.ndarray]  # component -> (n_sources, n_features)
    patterns: np.ndarray  # (63, n_specific_sources), all components stacked
    waveforms: np.ndarray  # (n_specific_sources, RESPONSE_MS) at 1 kHz from onset
    vep: np.ndarray  # (63, RESPONSE_MS) stimulus-general response, volts
    bg_patterns: np.ndarray  # (63, n_bg)
    alpha_patterns: np.ndarray  # (63, 2)
    alpha_freq: float
    blink_pattern: np.ndarray  # (63,)
    cfg: SimulationConfig

    @classmethod
    def create(cls, cfg: SimulationConfig, subject: int) -> SubjectModel:
        rng = np.random.default_rng([cfg.seed, 101, subject])
        elec, ref = channel_positions()
        t = np.arange(RESPONSE_MS, dtype=np.float64)
        shift = rng.normal(0, 8)
        weights, patterns, waves = {}, [], []
        feature_dims = {"early": 48, "mid": 18, "semantic": N_SEMANTIC}
        for name, group, n, lat, spread, width, yr, zr in _COMPONENTS:
            weights[name] = rng.normal(size=(n, feature_dims[group])) / math.sqrt(feature_dims[group])
            src, ori = _random_sources(rng, n, yr, zr)
            patterns.append(_dipole_patterns(src, ori, elec, ref))
            for _ in range(n):
                mu = lat + shift + rng.normal(0, spread)
                w = width * rng.uniform(0.8, 1.25)
                wave = np.exp(-0.5 * ((t - mu) / w) ** 2) - 0.45 * np.exp(-0.5 * ((t - mu - 1.6 * w) / (1.3 * w)) ** 2)
                waves.append(wave)
        src, ori = _random_sources(rng, 2, (-1.0, -0.7), (-0.1, 0.4))
        vp = _dipole_patterns(src, ori, elec, ref)
        p1 = np.exp(-0.5 * ((t - 100 - shift) / 18) ** 2)
        n1 = -np.exp(-0.5 * ((t - 165 - shift) / 25) ** 2) + 0.6 * np.exp(-0.5 * ((t - 260 - shift) / 50) ** 2)
        vep = (vp[:, [0]] * p1 + vp[:, [1]] * n1) * cfg.vep_uv * 1e-6
        bsrc, bori = _random_sources(rng, 40, (-1.0, 1.0), (-0.2, 1.0), depth=(0.45, 0.85))
        asrc, aori = _random_sources(rng, 2, (-1.0, -0.55), (0.0, 0.7))
        blink_src = np.array([[0.0, 1.05, -0.25]])
        blink = _dipole_patterns(blink_src, np.array([[0.0, 0.3, 1.0]]) / np.linalg.norm([0.0, 0.3, 1.0]), elec, ref)
        return cls(
            weights=weights,
            patterns=np.concatenate(patterns, axis=1),
            waveforms=np.asarray(waves),
            vep=vep,
            bg_patterns=_dipole_patterns(bsrc, bori, elec, ref),
            alpha_patterns=_dipole_patterns(asrc, aori, elec, ref),
            alpha_freq=float(np.clip(rng.normal(10.0, 0.7), 8.5, 11.5)),
            blink_pattern=blink[:, 0],
            cfg=cfg,
        )

    def source_drive(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """(n_images, n_specific_sources) amplitudes: a saturating function of weighted features."""
        drives = [np.tanh(feats[group] @ self.weights[name].T) for name, group, *_ in _COMPONENTS]
        return np.concatenate(drives, axis=1) * self.cfg.specific_uv * 1e-6

    def specific_response(self, drive: np.ndarray) -> np.ndarray:
        """(n, 63, RESPONSE_MS) image-specific responses (volts) for drives (n, n_sources)."""
        return np.einsum("cs,ns,st->nct", self.patterns, drive, self.waveforms, optimize=True)


def evoked_templates(root: str | Path, subject: int, cfg: SimulationConfig) -> dict[str, np.ndarray]:
    """Noise-free mean responses (n_images, 63 raw-order channels, 900 ms at 1 kHz) per partition,
    recomputed from the image files on disk: the ground truth a mapping test compares EEG rows with."""
    image_set = ImageSet.discover(root)
    feats = image_features(image_set)
    model = SubjectModel.create(cfg, subject)
    return {p: model.specific_response(model.source_drive(feats[p])) + model.vep for p in PARTITIONS}


# --------------------------------------------------------------------------------------------------
# Raw recordings
# --------------------------------------------------------------------------------------------------

_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


def _session_images(cfg: SimulationConfig, n_train_images: int) -> dict[int, np.ndarray]:
    """Training image ids (1-based) of each session: concepts split over sessions 1/2 and 3/4."""
    rng = np.random.default_rng([cfg.seed, 23])
    n_concepts, per = cfg.n_train_concepts, cfg.images_per_concept
    out = {}
    for pair in ((1, 2), (3, 4)):
        perm = rng.permutation(n_concepts)
        half = (n_concepts + 1) // 2
        for ses, concepts in zip(pair, (perm[:half], perm[half:]), strict=True):
            ids = (np.sort(concepts)[:, None] * per + np.arange(per)[None, :] + 1).ravel()
            out[ses] = ids[ids <= n_train_images]
    return out


def _presentation_order(
    ids: np.ndarray, reps: int, extra_fraction: float, target_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    seq = np.repeat(ids, reps)
    n_extra = max(1, int(round(extra_fraction * len(ids))))
    seq = np.concatenate([seq, rng.choice(ids, size=n_extra, replace=False)])
    n_targets = max(2, int(round(target_fraction * len(seq))))
    seq = np.concatenate([seq, np.full(n_targets, TARGET_ID)])
    return seq[rng.permutation(len(seq))]


def simulate_recording(
    model: SubjectModel,
    drive: np.ndarray,
    order: np.ndarray,
    rng: np.random.Generator,
    session_gain: np.ndarray,
) -> np.ndarray:
    """A raw recording (64, n_samples) float64: 63 EEG rows (volts) + the stim row, 1 kHz."""
    cfg = model.cfg
    sf = 1000
    soa = int(round(cfg.soa * sf))
    onsets, t = [], int(2.0 * sf)
    for k in range(0, len(order), cfg.sequence_length):
        n = min(cfg.sequence_length, len(order) - k)
        onsets.extend(t + soa * np.arange(n))
        t += soa * n + int(rng.uniform(*cfg.pause) * sf)
    onsets = np.asarray(onsets)
    n_samples = int(onsets[-1] + 2.5 * sf)
    data = np.zeros((64, n_samples))
    eeg = data[:63]

    # background: 1/f sources, alpha, drift, sensor noise (filters run over the whole recording)
    n_bg = model.bg_patterns.shape[1]
    pink = signal.lfilter(_PINK_B, _PINK_A, rng.normal(size=(n_bg, n_samples)), axis=1)
    pink /= pink.std(axis=1, keepdims=True)
    eeg += model.bg_patterns @ pink * (cfg.background_uv * 1e-6 / math.sqrt(n_bg) * 2.0)
    b, a = signal.iirpeak(model.alpha_freq, Q=4.0, fs=sf)
    alpha = signal.lfilter(b, a, rng.normal(size=(2, n_samples)), axis=1)
    alpha /= alpha.std(axis=1, keepdims=True)
    eeg += model.alpha_patterns @ alpha * (cfg.alpha_uv * 1e-6)
    bd, ad = signal.butter(1, 0.05, fs=sf)
    drift = signal.lfilter(bd, ad, rng.normal(size=(63, n_samples)), axis=1)
    drift /= drift.std(axis=1, keepdims=True) + 1e-12
    eeg += drift * (cfg.drift_uv * 1e-6)
    eeg += rng.normal(scale=cfg.sensor_uv * 1e-6, size=eeg.shape)

    # blinks in the pauses between sequences
    pauses = onsets[1:][np.diff(onsets) > soa]
    bt = np.arange(-300, 300)
    blink_wave = np.exp(-0.5 * (bt / 70.0) ** 2) * cfg.blink_uv * 1e-6
    for p in pauses[rng.random(len(pauses)) < 0.6]:
        c = int(p - rng.uniform(300, 600))
        eeg[:, c + bt] += model.blink_pattern[:, None] * blink_wave[None, :] * rng.uniform(0.6, 1.2)

    # evoked responses (overlapping, as in RSVP)
    jitter = np.rint(rng.normal(0, cfg.latency_jitter_ms, len(order))).astype(int)
    gain = rng.lognormal(0, cfg.trial_gain_sd, len(order))
    vgain = rng.lognormal(0, cfg.trial_gain_sd / 2, len(order))
    stimulus = order != TARGET_ID
    batch = 512
    idx_all = np.flatnonzero(stimulus)
    for lo in range(0, len(idx_all), batch):
        idx = idx_all[lo : lo + batch]
        resp = model.specific_response(drive[order[idx] - 1] * gain[idx, None])
        resp += model.vep[None] * vgain[idx, None, None]
        for k, i in enumerate(idx):
            s = onsets[i] + jitter[i]
            eeg[:, s : s + RESPONSE_MS] += resp[k]
    for i in np.flatnonzero(~stimulus):  # targets evoke a generic response too
        s = onsets[i] + jitter[i]
        eeg[:, s : s + RESPONSE_MS] += model.vep * 1.5
    eeg *= session_gain[:, None]
    data[63, onsets] = order.astype(np.float64)
    return data


def write_raw_file(path: Path, data: np.ndarray) -> None:
    """``np.save`` of the raw dict, exactly as the dataset authors' ``source_to_raw.py`` wrote it."""
    raw = {
        "raw_eeg_data": data,
        "ch_names": [*RAW_CHANNEL_ORDER, "stim"],
        "ch_types": ["eeg"] * 63 + ["stim"],
        "sfreq": 1000,
        "highpass": 0.01,
        "lowpass": 100,
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, raw)  # a dict: np.save pickles it, as the authors did


def simulate_subject(
    root: Path,
    subject: int,
    cfg: SimulationConfig,
    image_set: ImageSet,
    feats: dict[str, dict[str, np.ndarray]],
    progress: bool = True,
) -> None:
    model = SubjectModel.create(cfg, subject)
    drive = {p: model.source_drive(feats[p]) for p in PARTITIONS}
    n_train = len(image_set.files("training"))
    n_test = len(image_set.files("test"))
    train_sessions = _session_images(cfg, n_train)
    for ses in tqdm(range(1, 5), desc=f"{subject_dirname(subject)} sessions", disable=not progress):
        rng = np.random.default_rng([cfg.seed, 202, subject, ses])
        gain = 1.0 + rng.normal(0, cfg.session_gain_sd, 63)
        folder = root / "raw_data" / subject_dirname(subject) / f"ses-{ses:02d}"
        plans = {
            "training": _presentation_order(
                train_sessions[ses], cfg.train_reps_per_session, cfg.extra_fraction_training, cfg.target_fraction, rng
            ),
            "test": _presentation_order(
                np.arange(1, n_test + 1), cfg.test_reps_per_session, cfg.extra_fraction_test, cfg.target_fraction, rng
            ),
        }
        for p in PARTITIONS:
            data = simulate_recording(model, drive[p], plans[p], rng, gain)
            write_raw_file(folder / f"raw_eeg_{p}.npy", data)


def write_preprocessed_dict(
    sub_dir: Path, partition: Partition, data: np.ndarray, ch_names, times, container: str = "npy"
) -> Path:
    """A ``preprocessed_eeg_{partition}.npy`` dict as users have it: ``container="npy"`` is the dataset
    authors' ``np.save`` of a float64 dict; ``"pickle"`` is NICE/ATM's ``pickle.dump(dict, protocol=4)``
    under the same ``.npy`` name (with ``times`` uncropped: pass all epoch times)."""
    path = sub_dir / f"preprocessed_eeg_{partition}.npy"
    obj = {
        "preprocessed_eeg_data": np.asarray(data, dtype=np.float64),
        "ch_names": list(ch_names),
        "times": np.asarray(times, dtype=np.float64),
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            if container == "npy":
                np.save(f, obj)
            else:
                pickle.dump(obj, f, protocol=4)
    return path


def write_ubp_pt(
    sub_dir: Path,
    partition: Partition,
    data: np.ndarray,
    sessions: np.ndarray,
    image_set: ImageSet,
    ch_names,
    times_full,
) -> Path:
    """UBP / CognitionCapturerPro ``train.pt`` / ``test.pt`` (float16 EEG, per-trial labels and paths)."""
    import torch

    r = data.shape[1]
    folder = "train_images" if partition == "training" else "test_images"
    files = image_set.files(partition)
    img = np.array([f"{folder}/{p.parent.name}/{p.name}" for p in files])
    text = np.array([concept_name(p.parent.name) for p in files])
    obj = {
        "eeg": np.asarray(data, dtype=np.float16),
        "label": np.repeat(image_set.concept_index(partition)[:, None], r, axis=1),
        "img": np.repeat(img[:, None], r, axis=1),
        "text": np.repeat(text[:, None], r, axis=1),
        "session": (np.asarray(sessions, dtype=np.float64) - 1.0),
        "ch_names": list(ch_names),
        "times": np.asarray(times_full, dtype=np.float64),
    }
    path = sub_dir / ("train.pt" if partition == "training" else "test.pt")
    with atomic_path(path) as tmp:
        torch.save(obj, tmp, pickle_protocol=5)
    return path


def simulate_dataset(
    root: str | Path, cfg: SimulationConfig | None = None, *, formats: tuple[str, ...] = (), progress: bool = True
) -> Path:
    """Write a simulated THINGS-EEG2 under ``root``; ``formats`` may add ``nice`` and ``ubp`` files."""
    from .preprocess import PREPROCESS_PRESETS, output_times, preprocess_subject, read_our_preprocessed

    cfg = cfg or SimulationConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    unknown = set(formats) - {"nice", "ubp"}
    if unknown:
        raise DataFormatError(f"unknown extra format(s) {sorted(unknown)}; known: nice, ubp")
    image_set = write_image_set(root, cfg, progress=progress)
    feats = image_features(image_set)
    for subject in cfg.subjects:
        simulate_subject(root, subject, cfg, image_set, feats, progress=progress)
    wanted = (["authors"] if cfg.write_preprocessed else []) + list(formats)
    for subject in cfg.subjects:
        sub = subject_dirname(subject)
        for fmt in wanted:
            pcfg = PREPROCESS_PRESETS[fmt]
            scratch = root / ".simulate-work"
            ours = preprocess_subject(root, scratch, subject, pcfg, progress=progress)
            full_times, _ = output_times(pcfg, 1000.0)
            for p in PARTITIONS:
                arr = read_our_preprocessed(ours, p)
                if fmt == "authors":
                    write_preprocessed_dict(root / "preprocessed_data" / sub, p, arr.data, arr.ch_names, arr.times)
                elif fmt == "nice":
                    write_preprocessed_dict(
                        root / "Preprocessed_data_250Hz" / sub, p, arr.data, arr.ch_names, full_times, "pickle"
                    )
                else:
                    write_ubp_pt(
                        root / "Preprocessed_data_250Hz_whiten" / sub,
                        p,
                        arr.data,
                        arr.sessions,
                        image_set,
                        arr.ch_names,
                        full_times,
                    )
            del arr
            shutil.rmtree(scratch, ignore_errors=True)
    write_json(
        root / "simulation.json",
        {
            "simulated": True,
            "config": to_dict(cfg),
            "formats": wanted,
            "description": "eeg2image simulated THINGS-EEG2; see docs/simulation.md",
        },
    )
    return root
