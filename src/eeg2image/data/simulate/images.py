"""The simulated image set: concepts, rendering, the written files, and the image features that drive the EEG.

A concept is a combination of four factors (colour, texture, shape, layout), drawn so that test concepts
are unseen combinations whose factor values all occur in training. The images of a concept vary in
background, position, size, rotation and brightness. They are written with the real layout
(``image_set/{training,test}_images/NNNNN_<concept>/*.jpg`` and ``image_metadata.npy``); the features the
forward model (:mod:`.eeg`) uses are computed back from those JPEG files: retinotopic luminance/colour
means, orientation and spatial-frequency energy, and the concept's one-hot factors.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm.auto import tqdm

from ...io import DataFormatError, atomic_path
from ..things_eeg2 import PARTITIONS, ImageSet, concept_name, load_image

if TYPE_CHECKING:
    from . import SimulationConfig

__all__ = [
    "COLOURS",
    "FACTORS",
    "LAYOUTS",
    "N_SEMANTIC",
    "SHAPES",
    "TEXTURES",
    "Concept",
    "compose",
    "draw_concepts",
    "image_features",
    "render_image",
    "render_layers",
    "write_image_set",
]

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


def render_layers(concept: Concept, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The layers of one image of ``concept``: (background (size, size, 3), the shaded textured object (size,
    size, 3), its alpha mask (size, size, 1)), floats on the 0..255 scale; ``render_image`` composes them. Drawn
    from ``rng`` in a fixed order (the written images depend on it)."""
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
    return bg, obj * shade, mask


def compose(bg: np.ndarray, obj: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The image of layers (``render_layers``): the object over the background through its mask."""
    return Image.fromarray(np.clip(bg * (1 - mask) + obj * mask, 0, 255).astype(np.uint8), "RGB")


def render_image(concept: Concept, size: int, rng: np.random.Generator) -> Image.Image:
    """One photograph-like image of ``concept``: a textured object layout on a varied background."""
    return compose(*render_layers(concept, size, rng))


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
    return file_features({p: image_set.files(p) for p in PARTITIONS})


def file_features(groups: dict[str, list[Path]], things_layout: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """``image_features`` of any groups of image files, standardised over all of them; each file's concept is its
    folder's name (``things_layout``: ``Images/<concept>/``) or the name after the folder's 5-digit index."""
    raw: dict[str, dict[str, list[np.ndarray]]] = {}
    for g, files in groups.items():
        rows: dict[str, list[np.ndarray]] = {"early": [], "mid": [], "semantic": []}
        for path in files:
            arr = np.asarray(load_image(path, size=64), dtype=np.float64) / 255.0
            e, m = _pixel_features(arr)
            rows["early"].append(e)
            rows["mid"].append(m)
            name = path.parent.name if things_layout else concept_name(path.parent.name)
            rows["semantic"].append(Concept.parse(name).semantic_vector())
        raw[g] = rows
    out: dict[str, dict[str, np.ndarray]] = {g: {} for g in groups}
    for key in ("early", "mid", "semantic"):
        every = np.concatenate([np.asarray(raw[g][key]) for g in groups])
        mu, sd = every.mean(axis=0), every.std(axis=0) + 1e-6
        for g in groups:
            out[g][key] = (np.asarray(raw[g][key]) - mu) / sd
    return out
