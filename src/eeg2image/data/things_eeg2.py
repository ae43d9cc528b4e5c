"""THINGS-EEG2 exactly as users have it on disk: one place for every layout, name and ordering rule.

Gifford, Dwivedi, Roig & Cichy (2022), *A large and rich EEG dataset for modeling human visual object
recognition*, NeuroImage 264:119754. OSF 10.17605/OSF.IO/3JK45.

Layouts read here (see ``docs/data.md`` for the full table). The simulated dataset's EEG files are
written here too, each writer beside the reader it mirrors: ``write_raw_file`` (raw),
``write_preprocessed_dict`` (official and NICE/ATM) and ``write_ubp_pt`` (UBP).

- raw:  ``raw_data/sub-XX/ses-YY/raw_eeg_{training,test}.npy`` (``np.save`` of a dict: ``raw_eeg_data``
  float64 (64, n_samples) = 63 EEG rows in volts + a ``stim`` row with image ids at onsets, 99999 =
  target; ``ch_names``, ``ch_types``, ``sfreq``, ``highpass``, ``lowpass``);
- official preprocessed: ``preprocessed_data/sub-XX/preprocessed_eeg_{training,test}.npy``
  (``np.save`` of a dict: ``preprocessed_eeg_data`` (16540, 4, 17, 100) / (200, 80, 17, 100),
  ``ch_names``, ``times``);
- NICE/ATM 63-channel 250 Hz variant: same names and keys, but a raw pickle under the ``.npy`` name,
  data (16540, 4, 63, 250) while ``times`` keeps 300 entries (the data are ``times[50:]``);
- UBP/CognitionCapturerPro ``train.pt``/``test.pt`` (``eeg`` float16, ``label``, ``img``, ``text``,
  ``session``, ``times``, ``ch_names``), read with ``torch.load(weights_only=True)``;
- the image set: ``training_images/00001_aardvark/aardvark_01b.jpg``, ``test_images/...`` and
  ``image_metadata.npy``.

Index rule (gifale95/eeg_encoding#3): sort the concept folders, then the files inside each folder.
Row ``i`` of every EEG array is image ``i`` of that sorted list, whose stim-channel id is ``i + 1``.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..io import (
    ConfigError,
    DataFormatError,
    MissingDataError,
    UnsafePickleError,
    _restricted_load,
    _TensorStorageFound,
    atomic_path,
    check_option,
    load_pickled,
)
from .things_meg import ATM_FILES, MEG_CHANNEL_SETS, MEG_CHANNELS, MEG_SFREQ, read_atm_meg

Partition = Literal["training", "test"]
PARTITIONS: tuple[Partition, Partition] = ("training", "test")
TARGET_ID = 99999
N_SESSIONS = 4
SFREQ_RAW = 1000.0

#: The 63 EEG channels in amplifier order, as in ``ch_names[:63]`` of the raw files (actiCAP-64 without
#: the reference Fz). Selecting ``^O|^P`` from this order gives the official 17-channel order exactly.
RAW_CHANNEL_ORDER: tuple[str, ...] = (
    "Fp1",
    "F3",
    "F7",
    "FT9",
    "FC5",
    "FC1",
    "C3",
    "T7",
    "TP9",
    "CP5",
    "CP1",
    "Pz",
    "P3",
    "P7",
    "O1",
    "Oz",
    "O2",
    "P4",
    "P8",
    "TP10",
    "CP6",
    "CP2",
    "Cz",
    "C4",
    "T8",
    "FT10",
    "FC6",
    "FC2",
    "F4",
    "F8",
    "Fp2",
    "AF7",
    "AF3",
    "AFz",
    "F1",
    "F5",
    "FT7",
    "FC3",
    "FCz",
    "C1",
    "C5",
    "TP7",
    "CP3",
    "P1",
    "P5",
    "PO7",
    "PO3",
    "POz",
    "PO4",
    "PO8",
    "P6",
    "P2",
    "CPz",
    "CP4",
    "TP8",
    "C6",
    "C2",
    "FC4",
    "FT8",
    "F6",
    "F2",
    "AF4",
    "AF8",
)

#: The 63 channels in the 10-10 row order (front to back) used by NICE, ATM, UBP and CogCapPro files.
NICE_CHANNEL_ORDER: tuple[str, ...] = (
    "Fp1",
    "Fp2",
    "AF7",
    "AF3",
    "AFz",
    "AF4",
    "AF8",
    "F7",
    "F5",
    "F3",
    "F1",
    "F2",
    "F4",
    "F6",
    "F8",
    "FT9",
    "FT7",
    "FC5",
    "FC3",
    "FC1",
    "FCz",
    "FC2",
    "FC4",
    "FC6",
    "FT8",
    "FT10",
    "T7",
    "C5",
    "C3",
    "C1",
    "Cz",
    "C2",
    "C4",
    "C6",
    "T8",
    "TP9",
    "TP7",
    "CP5",
    "CP3",
    "CP1",
    "CPz",
    "CP2",
    "CP4",
    "CP6",
    "TP8",
    "TP10",
    "P7",
    "P5",
    "P3",
    "P1",
    "Pz",
    "P2",
    "P4",
    "P6",
    "P8",
    "PO7",
    "PO3",
    "POz",
    "PO4",
    "PO8",
    "O1",
    "Oz",
    "O2",
)

#: The dataset authors' 17 occipito-parietal channels: regex ``^O *|^P *`` applied to the raw order.
OFFICIAL_17_CHANNELS: tuple[str, ...] = tuple(c for c in RAW_CHANNEL_ORDER if re.match(r"^O *|^P *", c))

#: The same 17 names in the order UBP / CogCapPro / NeuroBridge use (not the official files' order).
UBP_17_CHANNELS: tuple[str, ...] = (
    "P7",
    "P5",
    "P3",
    "P1",
    "Pz",
    "P2",
    "P4",
    "P6",
    "P8",
    "PO7",
    "PO3",
    "POz",
    "PO4",
    "PO8",
    "O1",
    "Oz",
    "O2",
)

CHANNEL_SETS: dict[str, tuple[str, ...]] = {
    "all63": NICE_CHANNEL_ORDER,
    "raw63": RAW_CHANNEL_ORDER,
    "occipitoparietal17": OFFICIAL_17_CHANNELS,
    "ubp17": UBP_17_CHANNELS,
}

#: Where each partition's reference counts come from (per subject, all sessions merged).
REAL_COUNTS = {
    "training": {"n_concepts": 1654, "images_per_concept": 10, "n_images": 16540, "n_reps": 4},
    "test": {"n_concepts": 200, "images_per_concept": 1, "n_images": 200, "n_reps": 80},
}
REPS_PER_SESSION = {"training": 2, "test": 20}


def resolve_channels(spec: str | Sequence[str]) -> tuple[str, ...]:
    """A named channel set (``all63``, ``occipitoparietal17``, ``ubp17``, ``raw63``; THINGS-MEG's ``meg271``,
    ``meg-occipital``, ``meg-occipitoparietal``) or an explicit list of THINGS-EEG2 or THINGS-MEG channels."""
    if isinstance(spec, str):
        sets = {**CHANNEL_SETS, **MEG_CHANNEL_SETS}
        return sets[check_option("channel set", spec, sets)]
    names = tuple(spec)
    unknown = [c for c in names if c not in RAW_CHANNEL_ORDER and c not in MEG_CHANNELS]
    if unknown:
        raise ConfigError(f"channels {unknown} are not THINGS-EEG2 or THINGS-MEG channels")
    return names


def subject_dirname(subject: int) -> str:
    if not 1 <= int(subject) <= 99:
        raise DataFormatError(f"subject must be 1..99, got {subject}")
    return f"sub-{int(subject):02d}"


# --------------------------------------------------------------------------------------------------
# Raw files
# --------------------------------------------------------------------------------------------------

RAW_KEYS = ("raw_eeg_data", "ch_names", "ch_types", "sfreq")


@dataclass
class RawRecording:
    """One raw session file: 63 EEG rows (volts) and the stim row, at ``sfreq`` Hz."""

    path: Path
    data: np.ndarray  # (n_channels, n_samples) float64, EEG rows then stim
    ch_names: list[str]
    ch_types: list[str]
    sfreq: float
    highpass: float | None = None
    lowpass: float | None = None

    @property
    def stim(self) -> np.ndarray:
        return self.data[self.ch_names.index("stim")]

    def eeg(self, channels: Sequence[str]) -> np.ndarray:
        """Rows for ``channels`` (by name, in the order given): a (n_channels, n_samples) view/copy."""
        index = {n: i for i, n in enumerate(self.ch_names)}
        missing = [c for c in channels if c not in index]
        if missing:
            raise DataFormatError(f"{self.path}: key 'ch_names' lacks channels {missing}.")
        return self.data[[index[c] for c in channels]]


def raw_root(root: str | Path) -> Path:
    """The ``raw_data`` folder from a dataset root (or the folder itself)."""
    root = Path(root)
    for cand in (root / "raw_data", root / "Raw_data", root / "eeg_dataset" / "raw_data", root):
        if cand.is_dir() and any(cand.glob("sub-*")):
            return cand
    raise MissingDataError(
        f"{root}: no raw_data/sub-XX folders found (looked in {root}/raw_data, {root}/Raw_data, "
        f"{root}/eeg_dataset/raw_data and {root}). Download the raw EEG from OSF (osf.io/crxs4) or run "
        "`eeg2image simulate`."
    )


def find_raw_file(root: str | Path, subject: int, session: int, partition: Partition) -> Path:
    """Path of ``raw_eeg_{partition}.npy``, tolerating an extra ``sub-XX/`` level and UBP's ``train`` name."""
    base = raw_root(root)
    sub = subject_dirname(subject)
    ses = f"ses-{int(session):02d}"
    names = [f"raw_eeg_{partition}.npy"] + (["raw_eeg_train.npy"] if partition == "training" else [])
    tried = []
    for sub_dir in (base / sub, base / sub / sub):
        for name in names:
            p = sub_dir / ses / name
            tried.append(p)
            if p.is_file():
                return p
            if p.is_dir():
                raise DataFormatError(f"{p}: a folder where the raw session file belongs; expected a .npy file.")
    if not (base / sub).is_dir():
        have = sorted(p.name for p in base.glob("sub-*"))
        raise MissingDataError(f"{base}: subject folder {sub} not found (have: {', '.join(have) or 'none'}).")
    raise MissingDataError(f"{base / sub}: session file missing; expected {tried[0]}.")


def read_raw_file(path: str | Path, *, check_finite: bool = True) -> RawRecording:
    """Read and validate one raw THINGS-EEG2 session file (restricted unpickler)."""
    path = Path(path)
    obj = load_pickled(path)
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a dict with keys {list(RAW_KEYS)}, got {type(obj).__name__}.")
    missing = [k for k in RAW_KEYS if k not in obj]
    if missing:
        raise DataFormatError(f"{path}: missing key(s) {missing}; expected {list(RAW_KEYS)} (have {sorted(obj)}).")
    data = obj["raw_eeg_data"]
    ch_names = [str(c) for c in obj["ch_names"]]
    ch_types = [str(c) for c in obj["ch_types"]]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or not np.issubdtype(data.dtype, np.floating):
        shape = getattr(data, "shape", None)
        raise DataFormatError(
            f"{path}: key 'raw_eeg_data' must be a float array of shape (64, n_samples); got "
            f"{type(data).__name__} {shape} {getattr(data, 'dtype', '')}."
        )
    if data.shape[0] != len(ch_names) or len(ch_names) != len(ch_types):
        raise DataFormatError(
            f"{path}: key 'raw_eeg_data' has {data.shape[0]} rows but 'ch_names' has {len(ch_names)} and "
            f"'ch_types' {len(ch_types)} entries; expected shape (64, n_samples) with 64 names."
        )
    if "stim" not in ch_names:
        raise DataFormatError(f"{path}: key 'ch_names' has no 'stim' channel (the image-id row).")
    n_eeg = sum(t == "eeg" for t in ch_types)
    if n_eeg != 63:
        raise DataFormatError(f"{path}: key 'ch_types' lists {n_eeg} 'eeg' channels; expected 63.")
    try:
        sfreq = float(obj["sfreq"])
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: key 'sfreq' must be a number, got {obj['sfreq']!r}.") from exc
    if sfreq <= 0:
        raise DataFormatError(f"{path}: key 'sfreq' must be positive, got {sfreq}.")
    if check_finite:
        _check_finite(data, path, "raw_eeg_data")
    return RawRecording(
        path=path,
        data=data,
        ch_names=ch_names,
        ch_types=ch_types,
        sfreq=sfreq,
        highpass=obj.get("highpass"),
        lowpass=obj.get("lowpass"),
    )


def write_raw_file(path: str | Path, data: np.ndarray) -> None:
    """Write one raw session file as the dataset authors' ``source_to_raw.py`` did: ``np.save`` of the dict
    :func:`read_raw_file` reads (``data`` is (64, n_samples) float64: 63 EEG rows in volts, then stim)."""
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


def _check_finite(arr: np.ndarray, path: Path, key: str, chunk: int = 1 << 22) -> None:
    """Raise naming the file, key and first bad index if ``arr`` holds NaN or Inf (chunked, low memory)."""
    row = int(np.prod(arr.shape[1:])) if arr.ndim > 1 else 1
    step = max(1, chunk // max(1, row))
    for start in range(0, arr.shape[0], step):
        block = np.asarray(arr[start : start + step])
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            bad[0] += start
            raise DataFormatError(
                f"{path}: key '{key}' contains NaN or Inf (first at index {tuple(int(i) for i in bad)}); "
                "the EEG must be finite."
            )


def decode_stim(stim: np.ndarray) -> np.ndarray:
    """Events from the stim row: ``(n_events, 2)`` int64 array of (onset sample, image id).

    An event starts where the row becomes non-zero or changes value (single-sample pulses in the real
    files; longer pulses are counted once). Targets (99999) are kept; see :func:`drop_targets`.
    """
    stim = np.asarray(stim)
    prev = np.concatenate([[0.0], stim[:-1]])
    onsets = np.flatnonzero((stim != 0) & (stim != prev))
    values = stim[onsets]
    ids = np.rint(values).astype(np.int64)
    if not np.allclose(values, ids):
        raise DataFormatError("stim channel holds non-integer values; expected image ids (1..N or 99999).")
    return np.stack([onsets.astype(np.int64), ids], axis=1)


def drop_targets(events: np.ndarray) -> tuple[np.ndarray, int]:
    keep = events[:, 1] != TARGET_ID
    return events[keep], int((~keep).sum())


# --------------------------------------------------------------------------------------------------
# Preprocessed files (official, NICE/ATM pickle, UBP .pt)
# --------------------------------------------------------------------------------------------------

PREPROCESSED_KEYS = ("preprocessed_eeg_data", "ch_names", "times")
UBP_KEYS = ("eeg", "label", "img", "session")


@dataclass
class EEGArray:
    """Preprocessed EEG of one subject and partition, whatever file it came from.

    ``data`` is (n_images, n_repetitions, n_channels, n_times), row ``i`` = image ``i`` of the sorted
    image list (``image_ids[i] == i + 1``). ``times`` has exactly ``n_times`` entries (seconds).
    """

    data: np.ndarray
    ch_names: list[str]
    times: np.ndarray
    source: str
    path: Path
    sessions: np.ndarray | None = None  # (n_images, n_repetitions) session index 1..4, where known
    image_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if self.image_ids.size == 0:
            self.image_ids = np.arange(1, self.data.shape[0] + 1, dtype=np.int64)

    @property
    def sfreq(self) -> float:
        return float(round(1.0 / float(np.median(np.diff(self.times))), 6)) if len(self.times) > 1 else 0.0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


def _validate_eeg_block(data: object, path: Path, key: str, ch_names: list[str], times: np.ndarray) -> None:
    if not isinstance(data, np.ndarray) or data.ndim != 4:
        shape = getattr(data, "shape", None)
        raise DataFormatError(
            f"{path}: key '{key}' must be an array (n_images, n_repetitions, n_channels, n_times); got "
            f"{type(data).__name__} of shape {shape}."
        )
    if not np.issubdtype(data.dtype, np.floating):
        raise DataFormatError(f"{path}: key '{key}' must be floating point, got {data.dtype}.")
    if data.shape[2] != len(ch_names):
        raise DataFormatError(
            f"{path}: key '{key}' has {data.shape[2]} channels (axis 2) but 'ch_names' lists {len(ch_names)}; "
            f"expected shape (n_images, n_repetitions, {len(ch_names)}, n_times)."
        )
    if len(times) < data.shape[3]:
        raise DataFormatError(
            f"{path}: key 'times' has {len(times)} entries, fewer than the {data.shape[3]} time samples of '{key}'."
        )


def _align_times(times: np.ndarray, n_times: int) -> np.ndarray:
    """The NICE/ATM/UBP files keep the uncropped ``times`` (300) for cropped data (250): take the last."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    return times[len(times) - n_times :]


def find_preprocessed_file(root: str | Path, subject: int, partition: Partition) -> Path:
    """Locate a subject's preprocessed file in any known layout under ``root``."""
    root = Path(root)
    sub = subject_dirname(subject)
    npy = f"preprocessed_eeg_{partition}.npy"
    pt = "train.pt" if partition == "training" else "test.pt"
    folders = [
        root / sub,
        root / "preprocessed_data" / sub,
        root / "eeg_dataset" / "preprocessed_data" / sub,
        root / "Preprocessed_data_250Hz" / sub,
        root / "Preprocessed_data_250Hz_whiten" / sub,
    ]
    for folder in folders:
        for name in (npy, pt):
            if (folder / name).is_file():
                return folder / name
    raise MissingDataError(
        f"{root}: no preprocessed {partition} file for {sub} (looked for {npy} or {pt} in "
        f"{', '.join(str(f) for f in folders)})."
    )


def read_preprocessed(path: str | Path, *, check_finite: bool = True) -> EEGArray:
    """Read a preprocessed file in the official, NICE/ATM or UBP layout (detected from its content)."""
    path = Path(path)
    if path.suffix == ".pt":
        return _read_ubp(path, check_finite=check_finite)
    if path.name in ATM_FILES.values():  # ATM's THINGS-MEG pickles
        data, ch_names, times = read_atm_meg(path)
        if check_finite:
            _check_finite(data, path, "meg_data")
        return EEGArray(data=data, ch_names=ch_names, times=times, source="atm-meg", path=path)
    obj = load_pickled(path)
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a dict with keys {list(PREPROCESSED_KEYS)}, got {type(obj).__name__}.")
    missing = [k for k in PREPROCESSED_KEYS if k not in obj]
    if missing:
        raise DataFormatError(
            f"{path}: missing key(s) {missing}; expected {list(PREPROCESSED_KEYS)} (have {sorted(obj)})."
        )
    data = obj["preprocessed_eeg_data"]
    ch_names = [str(c) for c in obj["ch_names"]]
    times = np.asarray(obj["times"], dtype=np.float64).reshape(-1)
    _validate_eeg_block(data, path, "preprocessed_eeg_data", ch_names, times)
    if check_finite:
        _check_finite(data, path, "preprocessed_eeg_data")
    with open(path, "rb") as f:
        source = "official" if f.read(6) == b"\x93NUMPY" else "nice"
    return EEGArray(data=data, ch_names=ch_names, times=_align_times(times, data.shape[3]), source=source, path=path)


def write_preprocessed_dict(
    sub_dir: Path, partition: Partition, data: np.ndarray, ch_names, times, container: str = "npy"
) -> Path:
    """Write ``sub_dir/preprocessed_eeg_{partition}.npy`` as users have it, for :func:`read_preprocessed`:
    ``container="npy"`` is the dataset authors' ``np.save`` of a float64 dict (read back as source
    ``official``); ``"pickle"`` is NICE/ATM's ``pickle.dump(dict, protocol=4)`` under the same ``.npy``
    name (source ``nice``; pass all epoch times: those files keep ``times`` uncropped)."""
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


def _torch_safe_globals() -> list:
    safe: list = [np.ndarray, np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            safe.append(__import__(mod, fromlist=["_reconstruct"])._reconstruct)
        except (ImportError, AttributeError):
            continue
    safe += [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i8", "i4", "U1", "O", "b1", "u1")]
    return safe


def load_torch_file(path: Path):
    """Read a ``torch.save`` file without running code.

    Files of plain numpy arrays and containers (UBP's ``train.pt``, saved with pickle protocol 5, which
    ``torch.load(weights_only=True)`` cannot parse) are read with our restricted unpickler; files holding
    tensors go through ``torch.load(weights_only=True)`` with numpy arrays allowed.
    """
    import zipfile

    import torch

    if not path.is_file():
        raise MissingDataError(f"{path}: no such file.")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    raise DataFormatError(f"{path}: a zip file without data.pkl; not a torch.save file.")
                with z.open(name) as f:
                    return _restricted_load(f, path, torch_file=True)
        except _TensorStorageFound:
            pass
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise DataFormatError(f"{path}: the file is truncated or corrupt ({exc}).") from exc
    try:
        with torch.serialization.safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if text.startswith("Weights only load failed"):  # torch's allowlist refused a global or an operation
            found = re.search(r"(?i)unsupported[^\n]*", text)
            what = found.group(0).rstrip(".") if found else "the pickle holds non-tensor objects"
            raise UnsafePickleError(
                f"{path}: refused to load: {what}, "
                "which could run code. Only tensors, numpy arrays and plain containers are accepted. If you trust "
                "this file, convert it yourself to plain arrays first."
            ) from exc
        msg = text.splitlines()[0] if text else type(exc).__name__
        raise DataFormatError(f"{path}: could not be read safely as a torch.save file: {msg}") from exc


def _read_ubp(path: Path, *, check_finite: bool) -> EEGArray:
    import torch

    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a dict with keys {list(UBP_KEYS)}, got {type(obj).__name__}.")
    missing = [k for k in ("eeg",) if k not in obj]
    if missing:
        raise DataFormatError(f"{path}: missing key(s) {missing}; expected at least {list(UBP_KEYS)}.")
    data = obj["eeg"]
    if isinstance(data, torch.Tensor):
        data = data.numpy()
    # UBP's THINGS-MEG files hold 'eeg' and 'img' only: 271 sensors at 200 Hz, 0..1 s
    meg = (
        "ch_names" not in obj and isinstance(data, np.ndarray) and data.ndim == 4 and data.shape[2] == len(MEG_CHANNELS)
    )
    ch_names = [str(c) for c in obj.get("ch_names", MEG_CHANNELS if meg else NICE_CHANNEL_ORDER)]
    times_raw = obj.get("times")
    if times_raw is None:
        n_t = data.shape[-1] if isinstance(data, np.ndarray) else 0
        times = np.arange(n_t) / (MEG_SFREQ if meg else 250.0)
    else:
        times = np.asarray(times_raw, dtype=np.float64).reshape(-1)
    _validate_eeg_block(data, path, "eeg", ch_names, times)
    if check_finite:
        _check_finite(data, path, "eeg")
    sessions = None
    if "session" in obj:
        sess = np.asarray(obj["session"])
        if sess.shape != data.shape[:2]:
            raise DataFormatError(
                f"{path}: key 'session' has shape {sess.shape}; expected {data.shape[:2]} (one per trial)."
            )
        sessions = sess.astype(np.int64) + 1
    return EEGArray(
        data=data,
        ch_names=ch_names,
        times=_align_times(times, data.shape[3]),
        source="ubp-meg" if meg else "ubp",
        path=path,
        sessions=sessions,
    )


def write_ubp_pt(
    sub_dir: Path,
    partition: Partition,
    data: np.ndarray,
    sessions: np.ndarray,
    image_set: ImageSet,
    ch_names,
    times_full,
) -> Path:
    """Write UBP / CognitionCapturerPro ``sub_dir/train.pt`` or ``test.pt`` (float16 ``eeg``, per-trial
    ``label``, ``img``, ``text``, 0-based ``session``, uncropped ``times``), the file :func:`_read_ubp`
    (through :func:`read_preprocessed`) reads; ``sessions`` are 1-based, as :class:`EEGArray` holds them."""
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


# --------------------------------------------------------------------------------------------------
# Image set
# --------------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
METADATA_KEYS = ("train_img_files", "train_img_concepts", "test_img_files", "test_img_concepts")
_FOLDER_NAMES = {"training": ("training_images", "train_images"), "test": ("test_images",)}


def concept_name(folder: str) -> str:
    """``00001_aircraft_carrier`` -> ``aircraft_carrier`` (split on the first underscore)."""
    head, _, name = folder.partition("_")
    if not head.isdigit() or not name:
        raise DataFormatError(f"image folder {folder!r} is not named '<5-digit index>_<concept>'.")
    return name


@dataclass
class ImageSet:
    """The THINGS-EEG2 image set in canonical order (sorted folders, then sorted files).

    ``files(partition)[i]`` is the image of EEG row ``i`` and stim id ``i + 1``.
    """

    root: Path
    training_dir: Path
    test_dir: Path
    metadata_path: Path | None
    _files: dict[str, list[Path]] = field(default_factory=dict, repr=False)

    @classmethod
    def discover(cls, root: str | Path) -> ImageSet:
        root = Path(root)
        candidates = [
            root,
            root / "image_set",
            root / "image_set" / "image_set",
            root / "images_set",
            root / "Image_set",
            root / "Image_set" / "image_set",
        ]
        for base in candidates:
            train = next((base / n for n in _FOLDER_NAMES["training"] if (base / n).is_dir()), None)
            test = base / "test_images"
            if train is not None and test.is_dir():
                # tolerate the zip's own folder level: training_images/training_images/...
                if (train / train.name).is_dir():
                    train = train / train.name
                if (test / test.name).is_dir():
                    test = test / test.name
                meta = next(
                    (p for p in (base / "image_metadata.npy", root / "image_metadata.npy") if p.is_file()), None
                )
                return cls(root=base, training_dir=train, test_dir=test, metadata_path=meta)
        raise MissingDataError(
            f"{root}: no image set found (need training_images/ and test_images/ under {root} or "
            f"{root}/image_set). Download it from OSF (osf.io/y63gw) or run `eeg2image simulate`."
        )

    def _scan(self, partition: Partition) -> list[Path]:
        folder = self.training_dir if partition == "training" else self.test_dir
        concepts = sorted(p for p in folder.iterdir() if p.is_dir())
        files: list[Path] = []
        for c in concepts:
            concept_name(c.name)
            imgs = sorted(p for p in c.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not imgs:
                raise DataFormatError(f"{c}: concept folder holds no images (.jpg/.jpeg/.png).")
            files.extend(imgs)
        if not files:
            raise MissingDataError(f"{folder}: no concept folders with images.")
        return files

    def files(self, partition: Partition) -> list[Path]:
        if partition not in PARTITIONS:
            raise DataFormatError(f"partition must be 'training' or 'test', got {partition!r}")
        if partition not in self._files:
            self._files[partition] = self._scan(partition)
        return self._files[partition]

    def relative_paths(self, partition: Partition) -> list[str]:
        """``training_images/00001_aardvark/aardvark_01b.jpg``-style keys, stable across machines."""
        return [f"{partition}_images/{p.parent.name}/{p.name}" for p in self.files(partition)]

    def concepts(self, partition: Partition) -> list[str]:
        """Concept name of each image (same length and order as :meth:`files`)."""
        return [concept_name(p.parent.name) for p in self.files(partition)]

    def stimulus_ids(self, partition: Partition = "test") -> list[str]:
        """One id per image, in image order, naming reconstructions (``<id>.png``): the concept folder
        (``00001_aircraft_carrier``; THINGS-EEG2 has one test image per concept), or ``<folder>__<file stem>``
        when a concept holds several images."""
        files = self.files(partition)
        ids = [f.parent.name for f in files]
        if len(set(ids)) != len(ids):
            ids = [f"{f.parent.name}__{f.stem}" for f in files]
        return ids

    def concept_index(self, partition: Partition) -> np.ndarray:
        """0-based concept index of each image, in sorted-folder order (UBP's ``label``)."""
        folders = [p.parent.name for p in self.files(partition)]
        uniq = {f: i for i, f in enumerate(sorted(set(folders)))}
        return np.array([uniq[f] for f in folders], dtype=np.int64)

    def image_for_event(self, partition: Partition, event_id: int) -> Path:
        files = self.files(partition)
        if not 1 <= event_id <= len(files):
            raise DataFormatError(f"event id {event_id} is outside 1..{len(files)} for the {partition} images.")
        return files[event_id - 1]

    def check(self) -> None:
        """Before any work on the images: ``image_metadata.npy`` (when present) and the folders list the same
        images in the same order; a deleted or an extra image is named."""
        if self.metadata_path is not None:
            self.check_metadata()

    def read_metadata(self) -> dict[str, list[str]]:
        if self.metadata_path is None:
            raise MissingDataError(f"{self.root}: image_metadata.npy not found.")
        obj = load_pickled(self.metadata_path)
        if not isinstance(obj, dict):
            raise DataFormatError(f"{self.metadata_path}: expected a dict, got {type(obj).__name__}.")
        missing = [k for k in METADATA_KEYS if k not in obj]
        if missing:
            raise DataFormatError(f"{self.metadata_path}: missing key(s) {missing}; expected {list(METADATA_KEYS)}.")
        return {k: [str(v) for v in obj[k]] for k in obj}

    def check_metadata(self) -> None:
        """Cross-check ``image_metadata.npy`` against the folders: same images in the same order."""
        meta = self.read_metadata()
        for partition, prefix in (("training", "train"), ("test", "test")):
            files = self.files(partition)
            concepts, names = meta[f"{prefix}_img_concepts"], meta[f"{prefix}_img_files"]
            if len(concepts) != len(names):
                raise DataFormatError(
                    f"{self.metadata_path}: keys '{prefix}_img_concepts' ({len(concepts)}) and '{prefix}_img_files' "
                    f"({len(names)}) differ in length."
                )
            got = [f"{c}/{f}" for c, f in zip(concepts, names, strict=True)]
            want = [f"{p.parent.name}/{p.name}" for p in files]
            folder = self.training_dir if partition == "training" else self.test_dir
            got_set, want_set = set(got), set(want)
            absent = [g for g in got if g not in want_set]
            extra = [w for w in want if w not in got_set]
            if absent:
                also = f"; {folder / extra[0]} is there but not listed (renamed?)" if extra else ""
                raise MissingDataError(
                    f"{folder / absent[0]}: image missing ({len(absent)} of the {len(got)} images that "
                    f"{self.metadata_path.name} key '{prefix}_img_files' lists are not in {folder}){also}; restore "
                    "the image set (the EEG rows follow this list)."
                )
            if extra:
                raise DataFormatError(
                    f"{folder / extra[0]}: not listed in {self.metadata_path} key '{prefix}_img_files' "
                    f"({len(extra)} unlisted file(s)); remove them, the EEG has no rows for them."
                )
            if len(got) != len(want):
                raise DataFormatError(
                    f"{self.metadata_path}: key '{prefix}_img_files' lists {len(got)} images, the folders hold "
                    f"{len(want)}."
                )
            for i, (g, w) in enumerate(zip(got, want, strict=True)):
                if g != w:
                    raise DataFormatError(
                        f"{self.metadata_path}: key '{prefix}_img_files'[{i}] is {g!r} but the sorted folders "
                        f"give {w!r}; the EEG-to-image order would be wrong."
                    )

    def verify_images(self, partition: Partition) -> None:
        """Open every image header; a missing or unreadable file raises naming it."""
        from PIL import Image, UnidentifiedImageError

        for p in self.files(partition):
            try:
                with Image.open(p) as im:
                    im.verify()
            except (OSError, UnidentifiedImageError, SyntaxError) as exc:
                raise DataFormatError(f"{p}: unreadable image ({exc}).") from exc


#: PIL modes whose conversion to RGB keeps the 0..255 scale (grey, palette, CMYK, alpha dropped); 16-bit and
#: float images ("I;16", "I", "F") would be clipped to white by PIL's conversion, so they are refused.
CONVERTIBLE_MODES = ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV")


def load_image(path: str | Path, size: int | None = None):
    """Read an image as RGB PIL (optionally resized to ``size``x``size`` with bicubic); clear error if bad."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: image file not found.")
    try:
        with Image.open(path) as im:
            if im.mode not in CONVERTIBLE_MODES:
                raise DataFormatError(
                    f"{path}: image mode {im.mode!r} (16-bit or float pixels); expected 8-bit RGB (or a mode that "
                    f"converts to it without rescaling: {', '.join(CONVERTIBLE_MODES)})."
                )
            im = im.convert("RGB")
            im.load()
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise DataFormatError(f"{path}: unreadable image ({exc}).") from exc
    if size is not None and im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    return im
