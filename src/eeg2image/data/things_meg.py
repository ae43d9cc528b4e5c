"""THINGS-MEG exactly as users have it on disk, and the train / test split the decoding peers make of it.

Hebart, Contier, Teichmann, Rockter, Zheng, Kidder, Corriveau, Vaziri-Pashkam & Baker (2023), *THINGS-data, a
multimodal collection of large-scale datasets for investigating object representations in human brain and
behavior*, eLife 12:e82580; OpenNeuro ``ds004212``. Four participants (P1-P4), CTF MEG.

Layouts read here (``docs/meg.md`` has the full table), each writer beside the reader it mirrors:

- the official derivatives: ``derivatives/preprocessed/preprocessed_P{n}-epo.fif`` (MNE epochs; the dataset's
  ``MEG/step1_preprocessing.py``): the 271 CTF magnetometers left after the bad ``MRO11-1609`` (272 recorded),
  0.1-40 Hz, epochs -100..1300 ms z-scored against -100..0 ms, decimated to 200 Hz (281 samples); event id = the
  1-based row of THINGS' ``image_paths.csv``, catch trials 999999. Read with MNE (``open_meg_epochs``);
- THINGS' images and metadata: ``THINGS/Images/<concept>/<file>.jpg``,
  ``THINGS/Metadata/Image-specific/image_paths.csv`` (headerless rows ``images/<concept>/<file>.jpg``) and
  ``THINGS/Metadata/Concept-specific/image_concept_index.csv`` (headerless, the 1-based concept number of each
  image row) (``ThingsImages``);
- UBP's ``Preprocessed_data/sub-XX/{train,test}.pt`` (``eeg`` float16 (19848, 1, 271, 201) / (200, 12, 271, 201),
  ``img``) (the EEG readers' UBP format) and ATM's
  ``preprocessed_meg_training.pkl`` / ``preprocessed_meg_zs_test.pkl`` (``meg_data`` float64
  (1654, 12, 1, 271, 201) / (200, 1, 12, 271, 201), ``ch_names``, ``times``; ``read_atm_meg``, through the
  restricted unpickler).

The split (``split_subject``; UBP's ``process_meg.py``, which VED copies byte for byte, and ATM's
``preprocess_meg.py``): crop 0..1.0 s (201 samples), drop the catch trials, test = the images shown 12 times,
drop every training image whose concept is a test concept (1854 - 200 = 1654 concepts x 12 images = 19,848), keep
the test images' 12 repetitions. Our output is the ``preprocess`` format (``sub-XX/`` with its manifest), plus an
``image_set/`` of links to the THINGS images in the THINGS-EEG2 layout (``training_images/00001_aardvark/...``,
test folders numbered by THINGS concept, as UBP copies them), so every later stage runs unchanged.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import DataFormatError, MissingDataError, atomic_path, load_pickled

#: The THINGS-MEG system's sensors (CTF-275 without MLF25, MRF43 and MRO13, which this system lacks: 272), in the
#: files' alphabetical order, by group; the official preprocessing drops the bad MRO11 (271 remain).
_GROUPS = {
    "MLC": "11 12 13 14 15 16 17 21 22 23 24 25 31 32 41 42 51 52 53 54 55 61 62 63",
    "MLF": "11 12 13 14 21 22 23 24 31 32 33 34 35 41 42 43 44 45 46 51 52 53 54 55 56 61 62 63 64 65 66 67",
    "MLO": "11 12 13 14 21 22 23 24 31 32 33 34 41 42 43 44 51 52 53",
    "MLP": "11 12 21 22 23 31 32 33 34 35 41 42 43 44 45 51 52 53 54 55 56 57",
    "MLT": "11 12 13 14 15 16 21 22 23 24 25 26 27 31 32 33 34 35 36 37 41 42 43 44 45 46 47 51 52 53 54 55 56 57",
    "MRC": "11 12 13 14 15 16 17 21 22 23 24 25 31 32 41 42 51 52 53 54 55 61 62 63",
    "MRF": "11 12 13 14 21 22 23 24 25 31 32 33 34 35 41 42 44 45 46 51 52 53 54 55 56 61 62 63 64 65 66 67",
    "MRO": "12 14 21 22 23 24 31 32 33 34 41 42 43 44 51 52 53",
    "MRP": "11 12 21 22 23 31 32 33 34 35 41 42 43 44 45 51 52 53 54 55 56 57",
    "MRT": "11 12 13 14 15 16 21 22 23 24 25 26 27 31 32 33 34 35 36 37 41 42 43 44 45 46 47 51 52 53 54 55 56 57",
    "MZC": "01 02 03 04",
    "MZF": "01 02 03",
    "MZO": "01 02 03",
    "MZP": "01",
}
SERIAL = "1609"  # the system's serial, appended to every channel name by the CTF reader
#: The 271 channels of the official epochs, in their order.
MEG_CHANNELS: tuple[str, ...] = tuple(f"{g}{n}-{SERIAL}" for g, nums in _GROUPS.items() for n in nums.split())
BAD_CHANNEL = f"MRO11-{SERIAL}"
MEG_SFREQ = 200.0
CATCH_ID = 999999
TEST_REPETITIONS = 12
#: Named sensor selections: every sensor, or the occipital / occipito-parietal groups (by the name's third letter,
#: as CognitionCapturerPro groups them; the peers themselves use all 271).
MEG_CHANNEL_SETS: dict[str, tuple[str, ...]] = {
    "meg271": MEG_CHANNELS,
    "meg-occipital": tuple(c for c in MEG_CHANNELS if c[2] == "O"),
    "meg-occipitoparietal": tuple(c for c in MEG_CHANNELS if c[2] in "OP"),
}
EPOCHS_FOLDER = Path("derivatives") / "preprocessed"
IMAGE_PATHS = Path("Metadata") / "Image-specific" / "image_paths.csv"
CONCEPT_INDEX = Path("Metadata") / "Concept-specific" / "image_concept_index.csv"


def participant_file(subject: int) -> str:
    return f"preprocessed_P{subject}-epo.fif"


def is_meg_root(root: str | Path) -> bool:
    """Whether ``root`` holds THINGS-MEG's official epochs (as ``derivatives/preprocessed/*-epo.fif``)."""
    return any(epochs_folders(Path(root)))


def epochs_folders(root: Path) -> list[Path]:
    """The folders under ``root`` holding official epochs files (``root`` itself or a ``ds004212*`` download)."""
    cands = [root / EPOCHS_FOLDER, *sorted(p / EPOCHS_FOLDER for p in root.glob("ds004212*"))]
    return [c for c in cands if c.is_dir() and any(c.glob("preprocessed_P*-epo.fif"))]


def find_epochs_file(root: str | Path, subject: int) -> Path:
    """``preprocessed_P{subject}-epo.fif`` under ``root`` (the ds004212 folder, or the folder holding it)."""
    root = Path(root)
    for folder in epochs_folders(root):
        if (folder / participant_file(subject)).is_file():
            return folder / participant_file(subject)
    raise MissingDataError(
        f"{root}: no {EPOCHS_FOLDER / participant_file(subject)} (THINGS-MEG's official epochs; OpenNeuro ds004212: "
        f"`openneuro-py download --dataset ds004212 --include derivatives/preprocessed`)"
    )


@dataclass
class MEGEpochs:
    """One participant's official epochs, opened without loading their data: ``events`` the image ids, ``load``
    reads the epochs asked for, (n, channels, times) float64."""

    epochs: Any  # mne.Epochs, not preloaded
    events: np.ndarray
    times: np.ndarray
    sfreq: float
    ch_names: list[str]
    path: Path

    def load(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")  # MNE reads in file order
        data = self.epochs[idx[order]].get_data(copy=True, verbose="error")
        out = np.empty_like(data)
        out[order] = data
        return out


def open_meg_epochs(path: str | Path) -> MEGEpochs:
    """The official ``-epo.fif`` opened through MNE and checked: the 271 channels in order, 200 Hz, catch trials
    coded, ids from 1; each failure one line naming the file and the key."""
    import mne

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file")
    try:
        epochs = mne.read_epochs(path, preload=False, verbose="error")
    except (ValueError, OSError, RuntimeError, TypeError) as exc:
        raise DataFormatError(f"{path}: not MNE epochs ({str(exc).splitlines()[0]})") from exc
    names = list(epochs.ch_names)
    if names != list(MEG_CHANNELS):
        missing = [c for c in MEG_CHANNELS if c not in names][:3]
        extra = [c for c in names if c not in MEG_CHANNELS][:3]
        raise DataFormatError(
            f"{path}: key 'ch_names': {len(names)} channels, expected THINGS-MEG's 271 CTF sensors in order "
            f"(MLC11-{SERIAL} ... MZP01-{SERIAL}, without {BAD_CHANNEL}); missing {missing}, unexpected {extra}"
        )
    sfreq = float(epochs.info["sfreq"])
    if abs(sfreq - MEG_SFREQ) > 1e-6:
        raise DataFormatError(f"{path}: key 'sfreq' is {sfreq:g} Hz, expected {MEG_SFREQ:g} (the official epochs)")
    events = np.asarray(epochs.events[:, 2], dtype=np.int64)
    if not (events == CATCH_ID).any():
        raise DataFormatError(
            f"{path}: key 'events': no catch trial coded {CATCH_ID}; expected the official coding (image row id, "
            f"{CATCH_ID} for catch trials)"
        )
    if (events < 1).any():
        raise DataFormatError(f"{path}: key 'events': ids below 1 ({sorted(set(events[events < 1].tolist()))[:3]})")
    return MEGEpochs(epochs, events, np.asarray(epochs.times), sfreq, names, path)


def read_meg_epochs(path: str | Path) -> tuple[np.ndarray, MEGEpochs]:
    """Every epoch of ``path`` (n_epochs, channels, times) float64, and the opened file."""
    ep = open_meg_epochs(path)
    return ep.load(range(len(ep.events))), ep


def ctf_info(ch_names: Sequence[str] = MEG_CHANNELS, sfreq: float = MEG_SFREQ):
    """An MNE ``Info`` of CTF axial gradiometers (magnetometer coil 5001, as the CTF reader types them) at the
    CTF-275 positions MNE ships (``read_meg_canonical_info('ctf275')``, device coordinates); MLO42, which that file
    lacks, mirrored from MRO42 across the midsagittal plane."""
    import mne

    canon = mne.channels.read_meg_canonical_info("ctf275")
    by_base = {c["ch_name"].split("-")[0]: c for c in canon["chs"]}
    info = mne.create_info(list(ch_names), sfreq, "mag")
    for ch in info["chs"]:
        base = ch["ch_name"].split("-")[0]
        src = by_base.get(base)
        if src is None and base.startswith("ML") and base.replace("ML", "MR", 1) in by_base:
            src = dict(by_base[base.replace("ML", "MR", 1)])
            loc = np.array(src["loc"], dtype=np.float64)
            loc[[1, 4, 7, 10]] *= -1  # y (left-right) of the position and of each axis
            src["loc"] = loc
        if src is None:
            raise DataFormatError(f"channel {ch['ch_name']!r} is not a CTF-275 sensor")
        ch["loc"] = np.array(src["loc"], dtype=np.float64)
        ch["coil_type"] = src["coil_type"]
    return info


def write_meg_epochs(
    path: str | Path,
    data: np.ndarray,
    events: np.ndarray,
    tmin: float,
    ch_names: Sequence[str] = MEG_CHANNELS,
    sfreq: float = MEG_SFREQ,
) -> None:
    """Write ``data`` (n_epochs, channels, times at 200 Hz) as an official-style ``-epo.fif`` (the reader's mirror)."""
    import mne

    events = np.asarray(events, dtype=np.int64)
    ev = np.column_stack([np.arange(len(events)) * 300, np.zeros(len(events), np.int64), events])
    epochs = mne.EpochsArray(
        np.asarray(data, dtype=np.float64),
        ctf_info(ch_names, sfreq),
        events=ev,
        tmin=tmin,
        event_id={str(i): int(i) for i in np.unique(events)},
        baseline=None,
        verbose="error",
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:  # MNE wants the -epo.fif
        epochs.save(Path(tmp) / path.name, overwrite=True, verbose="error")  # name: written there, renamed whole
        os.replace(Path(tmp) / path.name, path)


# --------------------------------------------------------------------------------------------------
# THINGS' images and their metadata
# --------------------------------------------------------------------------------------------------


@dataclass
class ThingsImages:
    """THINGS' image folder and the two metadata tables that number its images: row ``r`` (0-based) of
    ``image_paths.csv`` is event id ``r + 1``; ``concept_index[r]`` its 1-based concept number."""

    root: Path
    paths: list[str]  # as written: images/<concept>/<file>.jpg
    concept_index: np.ndarray

    @classmethod
    def discover(cls, root: str | Path) -> ThingsImages:
        """``root`` is THINGS' folder (holding ``Images/`` and ``Metadata/``) or a folder holding ``THINGS/``."""
        root = Path(root)
        for base in (root, root / "THINGS"):
            if (base / IMAGE_PATHS).is_file():
                root = base
                break
        else:
            raise MissingDataError(
                f"{root}: no THINGS metadata ({IMAGE_PATHS} under it or under {root / 'THINGS'}); THINGS-MEG's event "
                "ids number the rows of THINGS' image_paths.csv (the THINGS database, osf.io/jum2f)"
            )
        paths = [row[0] for row in _read_csv(root / IMAGE_PATHS) if row]
        index_rows = [row for row in _read_csv(root / CONCEPT_INDEX) if row]
        try:
            concept_index = np.array([int(r[0]) for r in index_rows], dtype=np.int64)
        except ValueError as exc:
            raise DataFormatError(f"{root / CONCEPT_INDEX}: expected one integer per row ({exc})") from None
        if len(concept_index) != len(paths):
            raise DataFormatError(
                f"{root / CONCEPT_INDEX}: {len(concept_index)} rows, but {IMAGE_PATHS.name} has {len(paths)}; "
                "the two tables number the same images"
            )
        bad = [p for p in paths if len(p.split("/")) != 3][:3]
        if bad:
            raise DataFormatError(f"{root / IMAGE_PATHS}: rows {bad} are not images/<concept>/<file>")
        return cls(root, paths, concept_index)

    def concept(self, event_id: int) -> str:
        return self.paths[event_id - 1].split("/")[1]

    def file(self, event_id: int) -> Path:
        """The image of ``event_id`` (``Images/<concept>/<file>``)."""
        _, concept, name = self.paths[event_id - 1].split("/")
        return self.root / "Images" / concept / name

    def folder_name(self, event_id: int) -> str:
        """UBP's image-set folder of ``event_id``: ``<5-digit concept number>_<concept>``."""
        return f"{int(self.concept_index[event_id - 1]):05d}_{self.concept(event_id)}"


def _read_csv(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file")
    with open(path, newline="") as f:
        return list(csv.reader(f))


def write_things_metadata(root: str | Path, paths: Sequence[str], concept_index: Sequence[int]) -> None:
    """The two headerless tables (the reader's mirror)."""
    root = Path(root)
    for rel, rows in ((IMAGE_PATHS, [[p] for p in paths]), (CONCEPT_INDEX, [[int(i)] for i in concept_index])):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(root / rel) as tmp:
            with open(tmp, "w", newline="") as f:
                csv.writer(f).writerows(rows)


# --------------------------------------------------------------------------------------------------
# ATM's pickles
# --------------------------------------------------------------------------------------------------

ATM_FILES = {"training": "preprocessed_meg_training.pkl", "test": "preprocessed_meg_zs_test.pkl"}


def read_atm_meg(path: str | Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    """ATM's MEG pickle -> (data (images, repetitions, channels, times), ch_names, times). Its training file holds
    (concepts, images, 1, channels, times), its test file (images, 1, repetitions, channels, times)."""
    path = Path(path)
    obj = load_pickled(path)
    if not isinstance(obj, dict) or "meg_data" not in obj:
        raise DataFormatError(f"{path}: expected a dict with key 'meg_data' (ATM's preprocess_meg.py)")
    data = np.asarray(obj["meg_data"])
    if data.ndim != 5:
        raise DataFormatError(f"{path}: key 'meg_data' has shape {data.shape}; expected 5 axes")
    if data.shape[2] == 1:  # training: (concepts, images, 1, C, T) -> (concepts * images, 1, C, T)
        data = data.reshape(data.shape[0] * data.shape[1], 1, *data.shape[3:])
    elif data.shape[1] == 1:  # test: (images, 1, reps, C, T)
        data = data[:, 0]
    else:
        raise DataFormatError(
            f"{path}: key 'meg_data' has shape {data.shape}; expected (N, M, 1, C, T) or (N, 1, R, C, T)"
        )
    ch_names = [str(c) for c in obj.get("ch_names", MEG_CHANNELS)]
    times = np.asarray(obj.get("times", np.arange(data.shape[-1]) / MEG_SFREQ), dtype=np.float64)
    if len(ch_names) != data.shape[2] or len(times) != data.shape[3]:
        raise DataFormatError(
            f"{path}: key 'meg_data' is {data.shape[2]} channels x {data.shape[3]} times, but 'ch_names' has "
            f"{len(ch_names)} and 'times' {len(times)}"
        )
    return data, ch_names, times


def write_atm_meg(path: str | Path, data: np.ndarray, ch_names: Sequence[str], times: np.ndarray) -> Path:
    """ATM's pickle (the reader's mirror): ``data`` (images, repetitions, C, T) -> training (concepts, images, 1, C,
    T) when there is one repetition (12 images per concept, as ATM reshapes; one concept when that does not divide),
    else test (images, 1, repetitions, C, T); float64, protocol 4."""
    import pickle

    data = np.asarray(data, dtype=np.float64)
    if data.shape[1] == 1:
        per = 12 if data.shape[0] % 12 == 0 else data.shape[0]
        five = data.reshape(data.shape[0] // per, per, 1, *data.shape[2:])
    else:
        five = data[:, None]
    obj = {"meg_data": five, "ch_names": list(ch_names), "times": np.asarray(times, dtype=np.float64)}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, protocol=4)
    return path


def write_ubp_meg_pt(path: str | Path, data: np.ndarray, img: Sequence[str]) -> Path:
    """UBP's ``train.pt`` / ``test.pt`` of THINGS-MEG (the reader's mirror): ``eeg`` float16 (images, repetitions,
    271, 201) and ``img`` (``training_images/00001_aardvark/aardvark_01b.jpg``...), ``torch.save`` with pickle
    protocol 5, nothing else (UBP's ``process_meg.py`` writes these two keys only)."""
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"eeg": np.asarray(data, dtype=np.float16), "img": list(img)}, tmp, pickle_protocol=5)
    return path
