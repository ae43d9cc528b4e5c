"""``eeg2image info``: what a dataset folder holds, its shapes, and what is missing or wrong."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..io import Eeg2ImageError, read_json
from .things_eeg2 import (
    N_SESSIONS,
    PARTITIONS,
    TARGET_ID,
    ImageSet,
    decode_stim,
    read_preprocessed,
    read_raw_file,
)
from .things_meg import ATM_FILES, is_meg_root

Status = Literal["ok", "missing", "error", "note"]


@dataclass
class Finding:
    section: str
    item: str
    status: Status
    detail: str


def _size(path: Path) -> str:
    n = path.stat().st_size
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _subjects(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("sub-*") if p.is_dir())


def inspect_dataset(root: str | Path, deep: bool = False) -> list[Finding]:
    """Survey ``root``. ``deep`` opens every EEG file (slow on the real data: GBs of pickles)."""
    root = Path(root)
    out: list[Finding] = []
    if not root.is_dir():
        return [Finding("dataset", str(root), "missing", "folder does not exist")]
    sim = root / "simulation.json"
    if sim.is_file():
        cfg = read_json(sim).get("config", {})
        out.append(Finding("dataset", "simulated", "note", f"eeg2image simulation, preset {cfg.get('preset')!r}"))
    if is_meg_root(root):
        return out + _inspect_meg(root, deep)

    # image set
    try:
        images = ImageSet.discover(root)
    except Eeg2ImageError as exc:
        images = None
        out.append(Finding("images", "image set", "missing", str(exc)))
    try:
        for p in PARTITIONS if images is not None else ():
            files = images.files(p)
            n_concepts = len({f.parent.name for f in files})
            out.append(Finding("images", f"{p}_images", "ok", f"{len(files)} images, {n_concepts} concepts"))
            if deep:
                images.verify_images(p)
        if images is None:
            pass
        elif images.metadata_path is None:
            out.append(Finding("images", "image_metadata.npy", "missing", "order is taken from sorted folders"))
        else:
            images.check_metadata()
            out.append(Finding("images", "image_metadata.npy", "ok", "matches the sorted folders"))
    except Eeg2ImageError as exc:  # the set is there but wrong: an image missing, unreadable or out of order
        out.append(Finding("images", "image set", "error", str(exc)))

    # raw data
    raw = next((c for c in (root / "raw_data", root / "Raw_data") if c.is_dir()), None)
    if raw is None:
        out.append(Finding("raw", "raw_data/", "missing", "no raw EEG (needed by `eeg2image preprocess`)"))
    else:
        for sub in _subjects(raw):
            base = sub / sub.name if (sub / sub.name).is_dir() else sub
            missing, sizes = [], []
            for s in range(1, N_SESSIONS + 1):
                for p in PARTITIONS:
                    f = base / f"ses-{s:02d}" / f"raw_eeg_{p}.npy"
                    if not f.is_file():
                        missing.append(f"ses-{s:02d}/raw_eeg_{p}.npy")
                        continue
                    sizes.append(f.stat().st_size)
                    if deep:
                        try:
                            rec = read_raw_file(f)
                            ev = decode_stim(rec.stim)
                            n_t = int((ev[:, 1] == TARGET_ID).sum())
                            out.append(
                                Finding(
                                    "raw",
                                    f"{sub.name}/ses-{s:02d}/{p}",
                                    "ok",
                                    f"{rec.data.shape} at {rec.sfreq:g} Hz, {len(ev) - n_t} image "
                                    f"events ({len(np.unique(ev[ev[:, 1] != TARGET_ID, 1]))} ids), "
                                    f"{n_t} targets",
                                )
                            )
                        except Eeg2ImageError as exc:
                            out.append(Finding("raw", f"{sub.name}/ses-{s:02d}/{p}", "error", str(exc)))
            if missing:
                out.append(Finding("raw", sub.name, "missing", ", ".join(missing)))
            else:
                out.append(Finding("raw", sub.name, "ok", f"4 sessions x 2 files, {sum(sizes) / 2**30:.2f} GB"))

    # preprocessed files of the known layouts, and ours
    layouts = ("preprocessed_data", "Preprocessed_data", "Preprocessed_data_250Hz", "Preprocessed_data_250Hz_whiten")
    # UBP's THINGS-MEG files are Preprocessed_data/sub-XX/{train,test}.pt; ATM's MEG pickles sub-XX/*.pkl anywhere
    atm_meg = [root] if any(root.glob(f"sub-*/{ATM_FILES['training']}")) else []
    seen: list[Path] = []
    for folder_name in layouts + tuple("." for _ in atm_meg):
        folder = root / folder_name
        if not folder.is_dir() or any(os.path.samefile(folder, s) for s in seen):  # one folder on a case-blind disk
            continue
        seen.append(folder)
        for sub in _subjects(folder):
            for p in PARTITIONS:
                cands = [sub / f"preprocessed_eeg_{p}.npy", sub / ("train.pt" if p == "training" else "test.pt")]
                cands.append(sub / ATM_FILES[p])
                f = next((c for c in cands if c.is_file()), None)
                item = f"{folder_name}/{sub.name}/{p}"
                if f is None:
                    if folder_name == ".":
                        continue
                    out.append(Finding("preprocessed", item, "missing", f"no {cands[0].name} or {cands[1].name}"))
                elif deep:
                    try:
                        arr = read_preprocessed(f)
                        out.append(
                            Finding(
                                "preprocessed",
                                item,
                                "ok",
                                f"{arr.source} format, {arr.shape}, {arr.times[0]:.3f}..{arr.times[-1]:.3f} s",
                            )
                        )
                    except Eeg2ImageError as exc:
                        out.append(Finding("preprocessed", item, "error", str(exc)))
                else:
                    out.append(Finding("preprocessed", item, "ok", f"{f.name}, {_size(f)} (--deep to open)"))
    for man in sorted(root.glob("*/sub-*/manifest.json")) + sorted(root.glob("sub-*/manifest.json")):
        try:
            m = read_json(man)
        except Eeg2ImageError as exc:
            out.append(Finding("eeg2image", str(man.parent.relative_to(root)), "error", str(exc)))
            continue
        if m.get("stage") != "preprocess":
            continue
        shapes = ", ".join(f"{p} {tuple(m['outputs'][p]['shape'])}" for p in PARTITIONS if p in m["outputs"])
        out.append(
            Finding(
                "eeg2image", str(man.parent.relative_to(root)), "ok", f"preset {m['config'].get('preset')!r}: {shapes}"
            )
        )
    return out


def _inspect_meg(root: Path, deep: bool) -> list[Finding]:
    """A THINGS-MEG root: each participant's official epochs (``deep``: opened and checked, their design counted)
    and THINGS' metadata and images."""
    from .things_meg import CATCH_ID, ThingsImages, epochs_folders, open_meg_epochs

    out = [Finding("dataset", "THINGS-MEG", "note", "official epochs (OpenNeuro ds004212 derivatives)")]
    for folder in epochs_folders(root):
        for f in sorted(folder.glob("preprocessed_P*-epo.fif")):
            item = f"{f.parent.relative_to(root)}/{f.name}"
            if not deep:
                out.append(Finding("epochs", item, "ok", f"{_size(f)} (--deep to open)"))
                continue
            try:
                ep = open_meg_epochs(f)
                _, counts = np.unique(ep.events[ep.events != CATCH_ID], return_counts=True)
                detail = (
                    f"{len(ep.events)} epochs x {len(ep.ch_names)} sensors x {len(ep.times)} samples at "
                    f"{ep.sfreq:g} Hz ({ep.times[0]:.3f}..{ep.times[-1]:.3f} s); {int((counts == 1).sum())} images "
                    f"shown once, {int((counts > 1).sum())} repeated (x{int(counts.max())}), "
                    f"{int((ep.events == CATCH_ID).sum())} catch"
                )
                out.append(Finding("epochs", item, "ok", detail))
            except Eeg2ImageError as exc:
                out.append(Finding("epochs", item, "error", str(exc)))
    try:
        things = ThingsImages.discover(root)
        present = sum(things.file(i).is_file() for i in range(1, len(things.paths) + 1))
        status = "ok" if present == len(things.paths) else "missing"
        out.append(
            Finding(
                "images",
                str(things.root.relative_to(root)) if things.root != root else ".",
                status,
                f"image_paths.csv: {len(things.paths)} images of {len(set(things.concept_index.tolist()))} "
                f"concepts; {present} on disk",
            )
        )
    except Eeg2ImageError as exc:
        out.append(Finding("images", "THINGS", "missing", str(exc)))
    return out


def format_findings(findings: list[Finding]) -> str:
    width = max((len(f.item) for f in findings), default=10)
    lines = []
    for f in findings:
        mark = {"ok": "ok", "missing": "MISSING", "error": "ERROR", "note": "note"}[f.status]
        lines.append(f"{f.section:<13} {f.item:<{width}}  {mark:<7} {f.detail}")
    return "\n".join(lines)
