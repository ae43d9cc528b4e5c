"""Views: image transforms applied before an image encoder, each a registered, hashable recipe.

A view takes an RGB ``uint8`` array (H, W, 3) and returns one of the same kind. Its ``recipe()`` is a
plain dict that names the view and every parameter; the embedding store hashes it, so changing any
parameter invalidates the cached embeddings made with the old one.

All views first bring the image to ``size`` x ``size`` pixels (PIL bicubic, as the multi-level blur code
does with ``Image.resize((224, 224))``), then transform it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from ..io import ConfigError, DataFormatError, check_option

VIEWS: dict[str, type[View]] = {}


def register_view(cls: type[View]) -> type[View]:
    VIEWS[cls.kind] = cls
    return cls


def resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if img.shape[0] == size and img.shape[1] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))


def opencv_sigma(kernel: int) -> float:
    """The sigma OpenCV uses for ``GaussianBlur(img, (k, k), 0)``: 0.3*((k-1)*0.5 - 1) + 0.8."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


@dataclass(frozen=True)
class View:
    """Base class: ``name`` identifies the view in file names; ``recipe`` everything that changes pixels."""

    kind: ClassVar[str] = "view"
    size: int = 224

    @property
    def name(self) -> str:
        return self.kind

    def recipe(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.apply(resize_rgb(img, self.size))

    def apply(self, img: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@register_view
@dataclass(frozen=True)
class Original(View):
    """The image itself (resized): the plain CLIP target of NICE, ATM and most peers."""

    kind: ClassVar[str] = "original"

    def apply(self, img: np.ndarray) -> np.ndarray:
        return img


@register_view
@dataclass(frozen=True)
class GaussianBlur(View):
    """OpenCV Gaussian blur with a square kernel and OpenCV's sigma-from-kernel rule (sigma=0).

    Liu et al., AAAI 2026, "Leveraging Visual Blur Perception Characteristics for EEG Decoding"
    (makeitperfect/VisualEEGDecoding): ``cv2.GaussianBlur(img, (k, k), 0)`` on the 224 px image,
    border reflect-101. ``kernel=1`` is the identity; for k <= 7 OpenCV uses its fixed binomial tables
    (k=3: [1/4, 1/2, 1/4]) instead of the sigma rule.
    """

    kind: ClassVar[str] = "blur"
    kernel: int = 15

    def __post_init__(self) -> None:
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise DataFormatError(f"blur kernel must be a positive odd integer, got {self.kernel}")

    @property
    def name(self) -> str:
        return f"blur-k{self.kernel:02d}"

    def apply(self, img: np.ndarray) -> np.ndarray:
        import cv2

        if self.kernel == 1:
            return img.copy()
        return cv2.GaussianBlur(img, (self.kernel, self.kernel), 0, borderType=cv2.BORDER_REFLECT_101)


@register_view
@dataclass(frozen=True)
class FoveatedBlur(View):
    """Foveated blur of the Uncertainty-aware Blur Prior (Wu et al., CVPR 2025, HaitaoWuTJU/UBP).

    ``out = m * img + (1 - m) * blur_k(img)`` with ``m = 0.5 * exp(-g * r / r_max)``, ``r`` the distance
    to the image centre and ``r_max`` the centre-to-corner distance: the centre is 50% blurred, the
    corners ~97.5% (g = 3). UBP's intended kernels are 45/51/57 (low/medium/high uncertainty).
    """

    kind: ClassVar[str] = "fovea"
    kernel: int = 51
    g: float = 3.0

    @property
    def name(self) -> str:
        return f"fovea-k{self.kernel:02d}-g{self.g:g}"

    def mask(self, size: int) -> np.ndarray:
        c = (size - 1) / 2.0
        yy, xx = np.mgrid[0:size, 0:size]
        r = np.hypot(yy - c, xx - c)
        return 0.5 * np.exp(-self.g * r / (math.sqrt(2) * c))

    def apply(self, img: np.ndarray) -> np.ndarray:
        import cv2

        blurred = cv2.GaussianBlur(img, (self.kernel, self.kernel), 0, borderType=cv2.BORDER_REFLECT_101)
        m = self.mask(img.shape[0])[..., None]
        out = m * img.astype(np.float64) + (1 - m) * blurred.astype(np.float64)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@register_view
@dataclass(frozen=True)
class CannyEdges(View):
    """Canny edge map of the grey image as a 3-channel image (CognitionCapturerPro's edge modality).

    OpenCV ``Canny(grey, low, high)`` with its default 3x3 Sobel aperture; white edges on black.
    """

    kind: ClassVar[str] = "edges"
    low: int = 100
    high: int = 200

    @property
    def name(self) -> str:
        return f"edges-{self.low}-{self.high}"

    def apply(self, img: np.ndarray) -> np.ndarray:
        import cv2

        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        edges = cv2.Canny(grey, self.low, self.high)
        return np.repeat(edges[..., None], 3, axis=2)


@register_view
@dataclass(frozen=True)
class DepthMap(View):
    """Monocular depth rendered with the inferno colour map (CognitionCapturer's depth modality).

    A transformers ``depth-estimation`` model (Depth Anything) loaded offline from ``model`` (a local
    folder or a Hugging Face cache id); the predicted depth is min-max scaled per image and coloured with
    matplotlib's inferno map, then encoded as an image.
    """

    kind: ClassVar[str] = "depth"
    model: str = "depth-anything/Depth-Anything-V2-Small-hf"

    @property
    def name(self) -> str:
        return "depth-" + self.model.rstrip("/").split("/")[-1].lower()

    def recipe(self) -> dict:
        """The fields plus a fingerprint of the depth model's weights file: another checkpoint under the same
        name makes other maps, so its tables are another key (and the manifest names what drew them)."""
        return {**super().recipe(), "weights": depth_weights_fingerprint(self.model)}

    def apply(self, img: np.ndarray) -> np.ndarray:
        depth = _depth_pipeline(self.model)(img)
        return colourise_depth(depth, img.shape[:2])


DEPTH_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def depth_weights_fingerprint(model: str) -> str:
    """``file_fingerprint`` of the depth model's weights (a local folder or its Hugging Face cache snapshot)."""
    from .weights import MissingWeightsError, file_fingerprint, resolve_hf_folder

    folder = resolve_hf_folder(model, required=("config.json",), what="depth model")
    for name in DEPTH_WEIGHTS:
        if (folder / name).is_file():
            return file_fingerprint(folder / name)
    raise MissingWeightsError(f"depth model {model}: {folder} lacks its weights ({' or '.join(DEPTH_WEIGHTS)})")


def colourise_depth(depth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Min-max scale a depth map and render it with the inferno colour map as RGB uint8 of ``shape``."""
    from matplotlib import colormaps
    from PIL import Image

    d = np.asarray(depth, dtype=np.float64)
    d = (d - d.min()) / (d.max() - d.min() + 1e-12)
    rgb = (colormaps["inferno"](d)[..., :3] * 255).round().astype(np.uint8)
    if rgb.shape[:2] != tuple(shape):
        rgb = np.asarray(Image.fromarray(rgb).resize((shape[1], shape[0]), Image.Resampling.BICUBIC))
    return rgb


_DEPTH_CACHE: dict[str, object] = {}


def _depth_pipeline(model: str):
    if model not in _DEPTH_CACHE:
        from .weights import resolve_hf_folder

        folder = resolve_hf_folder(model, required=("config.json",), what="depth model")
        from PIL import Image
        from transformers import pipeline

        pipe = pipeline("depth-estimation", model=str(folder), device="cpu")

        def run(img: np.ndarray) -> np.ndarray:
            return np.asarray(pipe(Image.fromarray(img))["predicted_depth"], dtype=np.float64).squeeze()

        _DEPTH_CACHE[model] = run
    return _DEPTH_CACHE[model]


#: Named view sets. ``blur12`` is the multi-level blur bank (VED), ``blur8`` the reference system's subset.
BLUR12 = (1, 3, 9, 15, 21, 27, 33, 39, 45, 51, 57, 63)
BLUR8 = (1, 3, 15, 21, 33, 45, 57, 63)
VIEW_SETS: dict[str, tuple[View, ...]] = {
    "original": (Original(),),
    "blur12": tuple(GaussianBlur(kernel=k) for k in BLUR12),
    "blur8": tuple(GaussianBlur(kernel=k) for k in BLUR8),
    "fovea": tuple(FoveatedBlur(kernel=k) for k in (45, 51, 57)),
    "edges": (CannyEdges(),),
    "depth": (DepthMap(),),
}


def parse_views(spec: str) -> list[View]:
    """``"blur12,fovea,edges"`` or single views ``"blur:k=9"``, ``"fovea:kernel=45"`` -> views."""
    out: list[View] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if part in VIEW_SETS:
            out.extend(VIEW_SETS[part])
            continue
        kind, _, args = part.partition(":")
        if kind not in VIEWS:  # the known list names the views, then the view sets
            check_option("view", kind, dict.fromkeys([*VIEWS, *VIEW_SETS]))
            raise ConfigError(f"view set {kind!r} takes no options, got {part!r}")
        kwargs: dict[str, object] = {}
        for kv in [a for a in args.split(";") if a]:
            k, _, v = kv.partition("=")
            k = {"k": "kernel"}.get(k, k)
            kwargs[k] = _number(v)
        try:
            out.append(VIEWS[kind](**kwargs))
        except TypeError as exc:
            raise DataFormatError(f"view {part!r}: {exc}") from exc
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        raise DataFormatError(f"views repeat: {names}")
    return out


def _number(v: str) -> object:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            continue
    return v
