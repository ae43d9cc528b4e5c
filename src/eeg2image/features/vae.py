"""VAE latents of the stimulus images, a table of the store like any view: the low-level path's target.

The low-level path of EEG reconstruction (ATM's ``custom_pipeline_low_level`` and its ``train_image_latent_512.pt``,
jyang635/EEG_decoding (MLSP 2025), Perceptogram, MindEye's blurry reconstructions) predicts the stimulus' VAE latent
from the EEG, decodes it to a blurry image and uses that as the init of an img2img pass. The latents are those of the
generator's own VAE:

- real data: SDXL-Turbo's ``vae/`` folder (``AutoencoderKL``; 512-px images -> 4 x 64 x 64 latents, as ATM's);
- offline: a small ``AutoencoderKL`` trained on the training images only (``eeg2image train-vae``, saved as a diffusers
  folder), read by this same code.

Spec: ``vae:<folder or Hugging Face id>[;size=S]``: a folder holding ``config.json`` and
``diffusion_pytorch_model.safetensors``, or a pipeline folder / id with ``vae/`` (never downloaded). ``size``
defaults to the VAE's ``sample_size``, at most 512. The table holds ``latent_dist.mean * scaling_factor``,
flattened (N, C * h * w); its manifest names the VAE (config hash, weights fingerprint), the size and the latent
shape, so latents of another VAE or size are never mixed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io import DataFormatError, json_sha256
from .encoders import ImageEncoder
from .weights import MissingWeightsError, file_fingerprint

__all__ = [
    "VAE_FILES",
    "VAELatentEncoder",
    "build_vae_encoder",
    "decode_latents",
    "latent_table",
    "load_vae",
    "resolve_vae_folder",
    "vae_config_sha256",
    "vae_identity",
    "vae_weights",
]

VAE_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
MAX_DEFAULT_SIZE = 512  # ATM's latents are of the 512-px images


def resolve_vae_folder(spec: str | Path) -> Path:
    """The folder of an ``AutoencoderKL``: ``spec`` itself, its ``vae/`` (a pipeline folder), or the ``vae/`` of a
    Hugging Face id in the cache (offline; a missing one is named with its download command)."""
    from .weights import resolve_hf_folder

    p = Path(spec).expanduser()
    if p.is_dir():
        for folder in (p, p / "vae"):
            if all((folder / f).is_file() for f in VAE_FILES):
                return folder
        raise MissingWeightsError(
            f"{p}: not a VAE folder: neither it nor {p / 'vae'} holds {list(VAE_FILES)} (a diffusers AutoencoderKL "
            "saved with save_pretrained, or `eeg2image train-vae`)"
        )
    return resolve_hf_folder(str(spec), tuple(f"vae/{f}" for f in VAE_FILES), "VAE")


def vae_weights(spec: str) -> dict:
    """The VAE weights file of ``<folder or id>[;size=S]`` with its ``file_fingerprint`` (a manifest's record)."""
    folder = resolve_vae_folder(spec.split(";", 1)[0])
    return {"vae": str(folder), "files": {VAE_FILES[1]: file_fingerprint(folder / VAE_FILES[1])}}


def load_vae(spec: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The ``AutoencoderKL`` at ``spec`` (eval mode). A folder of another model class, or one whose weights do not
    fit its config, is refused by name."""
    from diffusers import AutoencoderKL

    folder = resolve_vae_folder(spec)
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{folder / 'config.json'}: unreadable ({exc})") from exc
    if cfg.get("_class_name") != "AutoencoderKL":
        raise DataFormatError(
            f"{folder / 'config.json'}: _class_name is {cfg.get('_class_name')!r}; expected 'AutoencoderKL'"
        )
    try:
        vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError) as exc:  # weights of another shape than the config says
        raise DataFormatError(f"{folder}: the VAE's weights do not load into its config.json ({exc})") from exc
    return vae.eval().to(device)


def vae_config_sha256(vae) -> str:
    """The hash of an ``AutoencoderKL``'s config (what a latent table records of the VAE's architecture)."""
    return json_sha256({k: v for k, v in dict(vae.config).items() if not k.startswith("_")})


def vae_identity(vae, folder: Path) -> dict:
    """What names a VAE in a table's manifest: its config and a fingerprint of its weights."""
    return {
        "config_sha256": vae_config_sha256(vae),
        "weights": file_fingerprint(folder / VAE_FILES[1]),
        "scaling_factor": float(vae.config.scaling_factor),
        "downsample": 2 ** (len(vae.config.block_out_channels) - 1),
        "latent_channels": int(vae.config.latent_channels),
    }


class VAELatentEncoder(ImageEncoder):
    """``vae:<folder or id>[;size=S]``: an ``AutoencoderKL``'s latent mean of each image at ``size`` px, scaled by its
    ``scaling_factor`` and flattened (ATM's ``train_image_latent_512.pt``, SDXL-Turbo's VAE on real data). Input: RGB
    uint8 views; output (B, C * (size / f)^2) with f the VAE's downsampling factor."""

    batch_size = 16

    def __init__(self, spec: str, size: int | None, device: torch.device):
        self.folder = resolve_vae_folder(spec)
        self.device = device
        self.vae = load_vae(self.folder, device)
        ident = vae_identity(self.vae, self.folder)
        f = ident["downsample"]
        self.size = int(size or min(int(self.vae.config.sample_size), MAX_DEFAULT_SIZE))
        if self.size % f:
            raise DataFormatError(f"vae: size {self.size} is not a multiple of the VAE's downsampling factor {f}")
        self.latent_shape = (ident["latent_channels"], self.size // f, self.size // f)
        self.dim = int(np.prod(self.latent_shape))
        self.image_size = self.size
        self.name = f"vae:{spec}" + (f";size={size}" if size else "")
        self._ident = ident

    def identity(self) -> dict:
        return {
            "encoder": self.name,
            "vae": self._ident,
            "image_size": self.size,
            "latent_shape": list(self.latent_shape),
            "pixels": "PIL bicubic to image_size, [-1, 1]",
            "latent": "latent_dist.mean * scaling_factor, flattened C x h x w",
        }

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from .encoders import to_tensor

        x = to_tensor(images, self.size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        out = []
        for i in range(0, len(x), self.micro_batch):  # bounded memory: the encoder's activations grow with size^2
            z = self.vae.encode(x[i : i + self.micro_batch].to(self.device)).latent_dist.mean
            out.append((z * self.vae.config.scaling_factor).flatten(1).float().cpu())
        return torch.cat(out).numpy()

    @property
    def micro_batch(self) -> int:
        """Images per VAE call: 4 at 512 px (SDXL's VAE then peaks near 4 GiB in float32; 16 at once took 16.6 GiB
        of the rehearsal's 24), more at smaller sizes."""
        return max(1, int(4 * (512 / self.size) ** 2))


def build_vae_encoder(arg: str, *, weights: str | None, device: torch.device) -> VAELatentEncoder:
    """The encoder of spec ``vae:<arg>`` (``arg``: ``<folder or id>[;size=S]``)."""
    from ..io import check_option

    base, *opts = arg.split(";")
    kv = dict(o.partition("=")[::2] for o in opts if o)
    for key in kv:
        check_option("option", key, ("size",), where="vae")
    if not (weights or base):
        raise DataFormatError("vae: name the VAE folder or id (vae:<folder>, e.g. vae:stabilityai/sdxl-turbo)")
    return VAELatentEncoder(weights or base, int(kv["size"]) if "size" in kv else None, device)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, latent_shape: Sequence[int], batch: int = 16) -> np.ndarray:
    """Flattened scaled latents (N, C * h * w) -> uint8 RGB images (N, H, W, 3) through the VAE's decoder."""
    z = latents.reshape(len(latents), *latent_shape).float()
    dev = next(vae.parameters()).device
    out = []
    for i in range(0, len(z), batch):
        x = vae.decode(z[i : i + batch].to(dev, vae.dtype) / vae.config.scaling_factor).sample
        out.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def latent_table(store_root: str | Path, partition: str, view: str, encoder: str):
    """(the store table of VAE latents, what names it: ``key`` (the table's identity), ``latent_shape`` (C, h, w),
    ``vae`` (config hash, weights fingerprint), ``image_size``, ``encoder`` (the whole encoder identity, the same
    for both partitions of one VAE and size)). A table that is no VAE's latents is named."""
    from .store import EmbeddingStore

    st = EmbeddingStore(store_root)
    table = st.load(partition, view, encoder)
    enc = (table.manifest.get("identity") or {}).get("encoder") or {}
    shape = enc.get("latent_shape")
    if not isinstance(shape, list) or len(shape) != 3:
        raise DataFormatError(
            f"{st.paths(partition, view, encoder)[1]}: not a VAE latent table (its manifest records no latent_shape)"
        )
    info = {
        "key": table.manifest.get("key"),
        "latent_shape": tuple(int(v) for v in shape),
        "vae": enc.get("vae"),
        "image_size": enc.get("image_size"),
        "encoder": enc,
    }
    return table, info
