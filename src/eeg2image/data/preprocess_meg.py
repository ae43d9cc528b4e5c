"""THINGS-MEG's official epochs -> the decoding split in our ``preprocess`` format (``eeg2image preprocess`` on a
THINGS-MEG root).

The split the peers make (UBP's ``process_meg.py``, copied by VED; ATM's ``preprocess_meg.py``), every step a
field of :class:`MEGSplitConfig`: crop ``tmin``..``tmax`` (0..1.0 s: 201 samples at 200 Hz), drop the catch trials
(``catch_id``), test = the images shown ``test_repetitions`` times (12), training = the images shown once, minus
every image of a test concept (``drop_test_concepts``: 1654 concepts x 12 images = 19,848 remain). An image shown
any other number of times is refused, named. Rows follow the image set's sorted order (THINGS concept number, then
file name), the order every later stage reads; the peers sort by event id, which THINGS numbers in the same order.

Output, beside the EEG stage's::

    OUT/sub-XX/{training,test}_meg.npy      (images, repetitions, channels, times) float32: training (N, 1, C, T),
                                            test (200, 12, C, T)
    OUT/sub-XX/{training,test}_events.npy   the THINGS event id (image_paths.csv row) of every row
    OUT/sub-XX/manifest.json                stage "preprocess", modality "meg", ch_names, times, sfreq, config, inputs
    OUT/image_set/{training,test}_images/<5-digit concept number>_<concept>/<file>.jpg   links to THINGS' images

so ``embed OUT ...`` and ``train --preprocessed OUT --dataset OUT`` run as on THINGS-EEG2. The epochs are read
in chunks (a participant's official file is ~16 GB as float64), written memory-mapped, renamed into place whole.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from ..config import stage_config, to_dict
from ..io import (
    ConfigError,
    DataFormatError,
    atomic_dir,
    check_option,
    folder_lock,
    read_json,
    write_manifest,
)
from .things_eeg2 import PARTITIONS, subject_dirname
from .things_meg import (
    CATCH_ID,
    MEG_CHANNEL_SETS,
    MEG_CHANNELS,
    TEST_REPETITIONS,
    ThingsImages,
    find_epochs_file,
    open_meg_epochs,
)

MEG_FILES = {p: (f"{p}_meg.npy", f"{p}_events.npy") for p in PARTITIONS}
IMAGE_SET = "image_set"


@dataclass
class MEGSplitConfig:
    """Every step of the THINGS-MEG split, with the peers' values (UBP / VED / ATM)."""

    preset: str = "meg"
    tmin: float = 0.0  # crop (s, inclusive, as MNE's crop)
    tmax: float = 1.0
    channels: str | list[str] = "meg271"  # meg271 | meg-occipital | meg-occipitoparietal | names
    catch_id: int = CATCH_ID
    test_repetitions: int = TEST_REPETITIONS
    drop_test_concepts: bool = True  # drop the training images of test concepts (zero-shot)
    dtype: str = "float32"  # UBP saves float16, ATM float64
    images: Literal["symlink", "copy"] = "symlink"  # how image_set/ points at THINGS' images
    chunk: int = 2048  # epochs read at a time

    def __post_init__(self) -> None:
        if not self.tmin < self.tmax:
            raise ConfigError(f"tmin ({self.tmin}) must be below tmax ({self.tmax})")
        if self.test_repetitions < 2:
            raise ConfigError(f"test_repetitions must be 2 or more, got {self.test_repetitions}")
        check_option("dtype", self.dtype, ("float16", "float32", "float64"))

    def channel_names(self) -> list[str]:
        if isinstance(self.channels, str):
            return list(MEG_CHANNEL_SETS[check_option("MEG channel set", self.channels, list(MEG_CHANNEL_SETS))])
        unknown = [c for c in self.channels if c not in MEG_CHANNELS]
        if unknown:
            raise ConfigError(f"channels {unknown[:3]} are not THINGS-MEG sensors (e.g. MLO11-1609)")
        return list(self.channels)


def meg_split_config(yaml_path: str | Path | None = None, **overrides: Any) -> MEGSplitConfig:
    """The split's config: the peers' values, then a YAML file, then ``--set``-style overrides."""
    return stage_config(MEGSplitConfig, "preprocess", None, yaml_path, overrides)


@dataclass
class _Plan:
    """Which epochs make which rows: per partition the (event id, epoch indices) of each row, in row order."""

    rows: dict[str, list[tuple[int, list[int]]]]
    counts: dict[str, int]


def plan_split(events: np.ndarray, things: ThingsImages, cfg: MEGSplitConfig, where: Path) -> _Plan:
    """The peers' split of one participant's event ids (validated, named on failure)."""
    events = np.asarray(events)
    stim = np.flatnonzero(events != cfg.catch_id)
    ids, counts = np.unique(events[stim], return_counts=True)
    if ids.size and ids.max() > len(things.paths):
        bad = ids[ids > len(things.paths)][:3].tolist()
        raise DataFormatError(
            f"{where}: key 'events': ids {bad} exceed the {len(things.paths)} rows of {things.root / 'Metadata'} "
            "image_paths.csv; the events number its rows (is it THINGS' own table?)"
        )
    odd = [(int(i), int(c)) for i, c in zip(ids, counts, strict=True) if c not in (1, cfg.test_repetitions)]
    if odd:
        raise DataFormatError(
            f"{where}: key 'events': image ids shown neither once (training) nor {cfg.test_repetitions} times (test): "
            f"{', '.join(f'{i} ({c}x)' for i, c in odd[:5])}; a test image needs all {cfg.test_repetitions} "
            "repetitions (set test_repetitions if your file holds another count)"
        )
    test_ids = ids[counts == cfg.test_repetitions]
    if not test_ids.size:
        raise DataFormatError(f"{where}: key 'events': no image shown {cfg.test_repetitions} times (the test images)")
    train_ids = ids[counts == 1]
    n_all_train = len(train_ids)
    if cfg.drop_test_concepts:
        test_concepts = set(things.concept_index[test_ids - 1].tolist())
        train_ids = np.array([i for i in train_ids if things.concept_index[i - 1] not in test_concepts], np.int64)
    by_id: dict[int, list[int]] = {}
    for k in stim.tolist():
        by_id.setdefault(int(events[k]), []).append(k)
    rows = {}
    for p, chosen in (("training", train_ids), ("test", test_ids)):
        order = sorted(chosen.tolist(), key=lambda i: (things.folder_name(i), things.paths[i - 1].split("/")[2]))
        rows[p] = [(i, by_id[i]) for i in order]
    counts_out = {
        "epochs": len(events),
        "catch": int((events == cfg.catch_id).sum()),
        "training_images_shown": n_all_train,
        "training_images_kept": len(train_ids),
        "test_images": len(test_ids),
    }
    return _Plan(rows, counts_out)


def _link_images(out: Path, plan: _Plan, things: ThingsImages, mode: str) -> dict[str, int]:
    """``OUT/image_set`` (written whole, once for all participants; a second participant's must be the same)."""
    want = {
        f"{p}_images/{things.folder_name(i)}/{things.file(i).name}": things.file(i)
        for p in PARTITIONS
        for i, _ in plan.rows[p]
    }
    missing = [str(f) for f in want.values() if not f.is_file()][:3]
    if missing:
        raise DataFormatError(f"{things.root}: images named by image_paths.csv are missing: {missing}")
    counts = {p: sum(1 for k in want if k.startswith(f"{p}_")) for p in PARTITIONS}
    final = out / IMAGE_SET
    if final.is_dir():
        have = {p.relative_to(final).as_posix() for p in final.rglob("*") if p.is_file() or p.is_symlink()}
        if have != set(want):
            raise DataFormatError(
                f"{final}: an image set of other images (another participant's split with other test images, or "
                "another THINGS); split into a new folder"
            )
        return counts
    with atomic_dir(final) as tmp:
        for rel, src in want.items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if mode == "symlink":
                os.symlink(src.resolve(), dst)
            else:
                shutil.copy2(src, dst)
    return counts


def split_subject(
    root: str | Path,
    out: str | Path,
    subject: int,
    cfg: MEGSplitConfig | None = None,
    *,
    things: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Participant ``subject``'s official epochs under ``root`` -> ``OUT/sub-XX`` (+ ``OUT/image_set``); THINGS'
    images and metadata from ``things`` (default: ``root`` or a ``THINGS/`` folder in it)."""
    cfg = cfg or MEGSplitConfig()
    root, out = Path(root), Path(out)
    path = find_epochs_file(root, subject)
    images = ThingsImages.discover(things or root)
    picks = cfg.channel_names()
    sub = subject_dirname(subject)
    with folder_lock(out, "preprocess", part=sub):
        epochs = open_meg_epochs(path)
        plan = plan_split(epochs.events, images, cfg, path)
        keep = np.flatnonzero((epochs.times >= cfg.tmin - 1e-9) & (epochs.times <= cfg.tmax + 1e-9))
        if not keep.size:
            raise ConfigError(f"tmin..tmax ({cfg.tmin}..{cfg.tmax} s) holds none of {path}'s times")
        ch_idx = [epochs.ch_names.index(c) for c in picks]
        n_images = _link_images(out, plan, images, cfg.images)
        if (root / "simulation.json").is_file():  # a simulated THINGS-MEG: its images' generating features exist
            shutil.copy2(root / "simulation.json", out / "simulation.json")
        final = out / sub
        with atomic_dir(final) as tmp:
            outputs = {}
            for p in PARTITIONS:
                rows = plan.rows[p]
                n_rep = 1 if p == "training" else cfg.test_repetitions
                shape = (len(rows), n_rep, len(picks), len(keep))
                name, ev_name = MEG_FILES[p]
                arr = np.lib.format.open_memmap(tmp / name, mode="w+", dtype=cfg.dtype, shape=shape)
                flat = [(r, k, e) for r, (_, idx) in enumerate(rows) for k, e in enumerate(idx)]
                for lo in tqdm(range(0, len(flat), cfg.chunk), desc=f"{sub} {p}", disable=not progress):
                    part = flat[lo : lo + cfg.chunk]
                    block = epochs.load([e for _, _, e in part])[:, ch_idx][:, :, keep]
                    r_idx = np.array([r for r, _, _ in part])
                    k_idx = np.array([k for _, k, _ in part])
                    arr[r_idx, k_idx] = block.astype(cfg.dtype)
                arr.flush()
                del arr
                np.save(tmp / ev_name, np.array([i for i, _ in rows], dtype=np.int64))
                outputs[p] = {"file": name, "events_file": ev_name, "shape": list(shape), "dtype": cfg.dtype}
            write_manifest(
                tmp,
                stage="preprocess",
                config=to_dict(cfg),
                inputs={"epochs": _fingerprint(path), "image_paths": _fingerprint(images.root / "Metadata")},
                outputs=outputs,
                extra={
                    "modality": "meg",
                    "subject": subject,
                    "ch_names": picks,
                    "times": epochs.times[keep].tolist(),
                    "sfreq": epochs.sfreq,
                    "row_rule": "row i of <partition>_meg.npy is image i of OUT/image_set's sorted image list",
                    "counts": {**plan.counts, "image_set": n_images},
                },
            )
    return final


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_meg_output(folder: str | Path) -> bool:
    man = Path(folder) / "manifest.json"
    return man.is_file() and read_json(man).get("modality") == "meg"
