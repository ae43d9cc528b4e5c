"""Offline-first weights: a local path, else the user's Hugging Face cache; never a download.

When weights are absent the error names the repository, the file, where we looked, and the command
that fetches them on a machine with internet access.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..io import MissingDataError, check_option


class MissingWeightsError(MissingDataError):
    """Model weights are not on this machine."""


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_hf_file(repo_id: str, filename: str) -> Path | None:
    """Path of ``filename`` of ``repo_id`` in the local Hugging Face cache, or None (no network)."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename)
    return Path(hit) if isinstance(hit, str) and Path(hit).is_file() else None


def fetch_hint(repo_id: str, files: tuple[str, ...] | list[str] = ()) -> str:
    names = " ".join(files)
    return (
        f"On a machine with internet access run `hf download {repo_id} {names}`".rstrip()
        + " (it fills ~/.cache/huggingface/hub; copy that folder here or set HF_HOME), "
        "or pass the local file/folder explicitly."
    )


def resolve_hf_folder(repo_or_path: str, required: tuple[str, ...], what: str) -> Path:
    """A local folder holding ``required`` files: ``repo_or_path`` itself, or its snapshot in the cache."""
    p = Path(repo_or_path).expanduser()
    if p.is_dir():
        missing = [f for f in required if not (p / f).is_file()]
        if missing:
            raise MissingWeightsError(f"{what}: {p} lacks {missing}.")
        return p
    hits = [cached_hf_file(repo_or_path, f) for f in required]
    if all(hits):
        return hits[0].parent
    missing = [f for f, h in zip(required, hits, strict=True) if h is None]
    raise MissingWeightsError(
        f"{what} '{repo_or_path}' is not on this machine: no local folder of that name, and the Hugging Face "
        f"cache ({_hf_cache_dir()}) lacks {missing}. " + fetch_hint(repo_or_path, missing)
    )


def resolve_openclip_checkpoint(arch: str, pretrained: str, weights: str | None = None) -> Path:
    """The local checkpoint of OpenCLIP ``arch/pretrained``: ``weights`` if given, else the HF cache."""
    import open_clip

    if weights:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"OpenCLIP weights file {p} not found.")
        return p
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:  # an unknown name is a config error (ConfigError), not missing data
        check_option(f"OpenCLIP pretrained tag for {arch}", pretrained, open_clip.list_pretrained_tags_by_model(arch))
    repo = cfg.get("hf_hub", "").strip("/")
    files = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    for f in files:
        if repo and (hit := cached_hf_file(repo, f)):
            return hit
    raise MissingWeightsError(
        f"OpenCLIP {arch}/{pretrained} weights are not on this machine: the Hugging Face cache "
        f"({_hf_cache_dir()}) has no {repo}/{files[0]} (or {files[1]}). " + fetch_hint(repo, [files[0]])
    )


def file_fingerprint(path: Path, head: int = 1 << 20) -> str:
    """Cheap, stable identity of a weights file: size + sha256 of its first and last MiB."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(head))
        if size > head:
            f.seek(max(head, size - head))
            h.update(f.read(head))
    return h.hexdigest()


def resolve_torch_hub_file(url: str, explicit: str | Path | None = None) -> Path:
    """A torchvision / torch.hub checkpoint: ``explicit`` if given, else ``<torch hub dir>/checkpoints/<file name
    of url>`` (where ``torchvision`` itself caches it); never downloaded."""
    import torch

    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"{p}: weights file not found.")
        return p
    name = url.rsplit("/", 1)[-1]
    p = Path(torch.hub.get_dir()) / "checkpoints" / name
    if p.is_file():
        return p
    raise MissingWeightsError(
        f"{p}: not on this machine. On a machine with internet access download {url} and copy it there "
        "(or set TORCH_HOME, or pass the file explicitly)."
    )
