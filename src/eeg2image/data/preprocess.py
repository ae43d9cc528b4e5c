"""Raw THINGS-EEG2 -> epoched, whitened, memory-mappable arrays (one command: ``eeg2image preprocess``).

The default (``nice``) follows the decoding literature (NICE / ATM / UBP / multi-level blur): the 63
EEG channels in the 10-10 row order, epochs -0.2..1.0 s around onset with baseline (None, 0), targets
dropped, resampled to 250 Hz with MNE's FFT resampler, 0..1 s kept (250 samples), per session 2
repetitions per training image and 20 per test image drawn with seed 20200220, per-session MVNN with a
Ledoit-Wolf shrinkage covariance per epoch from the training partition only, the repetition axis shuffled
once with the same seed. The ``authors`` preset reproduces the dataset authors' files (17
occipito-parietal channels, 100 Hz, -0.2..0.8 s, covariance per time point averaged with the test
partition). Every choice is a field of :class:`PreprocessConfig`; ``docs/preprocessing.md`` lists where we
deliberately differ from each peer.

Work is done per session and kept in ``<out>/.work-sub-XX/``: a killed run resumes at the first session
not finished. The final folder ``<out>/sub-XX/`` appears in one rename, with ``manifest.json``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from ..config import stage_config, to_dict
from ..io import (
    ConfigError,
    DataFormatError,
    Eeg2ImageError,
    MissingDataError,
    atomic_dir,
    atomic_path,
    check_option,
    fault_point,
    file_sha256,
    folder_lock,
    json_sha256,
    read_json,
    write_json,
    write_manifest,
)
from .things_eeg2 import (
    PARTITIONS,
    RAW_CHANNEL_ORDER,
    TARGET_ID,
    EEGArray,
    Partition,
    RawRecording,
    decode_stim,
    drop_targets,
    find_raw_file,
    read_raw_file,
    resolve_channels,
    subject_dirname,
)

OUR_FILES = {p: (f"{p}_eeg.npy", f"{p}_sessions.npy") for p in PARTITIONS}


@dataclass
class PreprocessConfig:
    """Every preprocessing choice, with the decoding literature's defaults (NICE lineage).

    The defaults are the ``nice`` preset; the other presets are ``eeg2image/configs/preprocess/*.yaml``."""

    preset: str = "nice"
    channels: str | list[str] = "all63"  # all63 | occipitoparietal17 | ubp17 | raw63 | explicit names
    tmin: float = -0.2  # epoch start (s, relative to onset)
    tmax: float = 1.0  # epoch end (s, inclusive, as MNE)
    baseline: tuple[float | None, float] | None = (None, 0.0)  # MNE convention; None = no baseline
    sfreq: float = 250.0  # resample to this rate (MNE FFT resampler, as Epochs.resample)
    keep_from: float | None = 0.0  # after resampling keep t >= keep_from (None: keep the whole epoch)
    reps_training: int = 2  # repetitions kept per training image and session
    reps_test: int = 20  # repetitions kept per test image and session
    repetition_seed: int = 20200220  # seed of the per-session draw and of the repetition shuffle
    shuffle_repetitions: bool = True  # shuffle the merged repetition axis (authors, NICE); UBP keeps order
    mvnn: Literal["epochs", "time", "none"] = "epochs"  # shrinkage covariance per epoch / per time point
    mvnn_covariance: Literal["training", "training+test"] = "training"  # partitions the covariance uses
    sessions: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    dtype: Literal["float32", "float16", "float64"] = "float32"
    epoch_chunk: int = 512  # epochs cut and resampled at once (63 x 1201 x 512 float64 = 310 MB)

    def __post_init__(self) -> None:
        if self.tmax <= self.tmin:
            raise ValueError(f"tmax ({self.tmax}) must be after tmin ({self.tmin})")
        if self.reps_training < 1 or self.reps_test < 1:
            raise ValueError("reps_training and reps_test must be >= 1")
        if not self.sessions or len(set(self.sessions)) != len(self.sessions):
            raise ValueError(f"sessions must be distinct session numbers, got {self.sessions}")
        meg = [c for c in resolve_channels(self.channels) if c not in RAW_CHANNEL_ORDER]
        if meg:
            raise ConfigError(f"channels: {meg[:3]} are THINGS-MEG sensors; THINGS-EEG2's preprocessing takes EEG ones")


def preset_config(
    name: str | None,
    yaml_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    **fields: Any,
) -> PreprocessConfig:
    """The config of preset ``name`` (``eeg2image/configs/preprocess/<name>.yaml``: ``nice``, ``authors``,
    ``ubp``), then of ``yaml_file``, then ``overrides`` and ``fields`` (a field given as a keyword wins;
    ``None`` values are skipped)."""
    return stage_config(PreprocessConfig, "preprocess", name, yaml_file, {**(overrides or {}), **fields})


# --------------------------------------------------------------------------------------------------
# Epoching
# --------------------------------------------------------------------------------------------------


@dataclass
class Epochs:
    data: np.ndarray  # (n_events, n_channels, n_times) float64
    ids: np.ndarray  # (n_events,) image id of each epoch, chronological order
    times: np.ndarray  # (n_times,) seconds
    n_targets: int
    n_outside: int  # events whose window leaves the recording (dropped, as MNE does)


def output_times(cfg: PreprocessConfig, sfreq_in: float) -> tuple[np.ndarray, slice]:
    """All epoch times after resampling (as MNE Epochs.resample) and the slice ``keep_from`` keeps."""
    start = int(round(cfg.tmin * sfreq_in))
    stop = int(round(cfg.tmax * sfreq_in))
    n_in = stop - start + 1
    n_out = int(round(n_in * cfg.sfreq / sfreq_in)) if cfg.sfreq != sfreq_in else n_in
    times = start / sfreq_in + np.arange(n_out, dtype=np.float64) / cfg.sfreq
    if cfg.keep_from is None:
        return times, slice(0, n_out)
    return times, slice(int(np.searchsorted(times, cfg.keep_from - 0.5 / cfg.sfreq)), n_out)


def epoch_recording(rec: RawRecording, cfg: PreprocessConfig, progress: bool = False) -> Epochs:
    """Epoch, baseline-correct, resample and crop one raw recording (same numbers as MNE Epochs)."""
    from mne.filter import resample

    channels = resolve_channels(cfg.channels)
    index = {n: i for i, n in enumerate(rec.ch_names)}
    missing = [c for c in channels if c not in index]
    if missing:
        raise DataFormatError(f"{rec.path}: key 'ch_names' lacks channels {missing}.")
    ch_idx = np.array([index[c] for c in channels])

    try:
        events, n_targets = drop_targets(decode_stim(rec.stim))
    except DataFormatError as exc:
        raise DataFormatError(f"{rec.path}: the 'stim' row of key 'raw_eeg_data': {exc}") from None
    if (events[:, 1] < 1).any():
        bad = np.unique(events[events[:, 1] < 1, 1])[:5].tolist()
        raise DataFormatError(
            f"{rec.path}: the 'stim' row of key 'raw_eeg_data' holds negative image ids {bad}; expected ids 1..N "
            f"(and {TARGET_ID} for targets)."
        )
    sf = rec.sfreq
    start = int(round(cfg.tmin * sf))
    stop = int(round(cfg.tmax * sf))
    offsets = np.arange(start, stop + 1)
    n_samples = rec.data.shape[1]
    inside = (events[:, 0] + start >= 0) & (events[:, 0] + stop < n_samples)
    n_outside = int((~inside).sum())
    events = events[inside]

    rel_times = offsets / sf
    base_idx = None
    if cfg.baseline is not None:
        bmin = rel_times[0] if cfg.baseline[0] is None else cfg.baseline[0]
        bmax = rel_times[-1] if cfg.baseline[1] is None else cfg.baseline[1]
        base_idx = np.flatnonzero((rel_times >= bmin - 1e-9) & (rel_times <= bmax + 1e-9))
        if base_idx.size == 0:
            raise DataFormatError(f"baseline {cfg.baseline} selects no samples of the epoch {cfg.tmin}..{cfg.tmax} s")

    all_times, keep = output_times(cfg, sf)
    times = all_times[keep]
    out = np.empty((len(events), len(channels), len(times)), dtype=np.float64)
    chunks = range(0, len(events), cfg.epoch_chunk)
    for lo in tqdm(chunks, desc=f"epoch {rec.path.parent.name}/{rec.path.stem}", disable=not progress, leave=False):
        onsets = events[lo : lo + cfg.epoch_chunk, 0]
        win = onsets[:, None] + offsets[None, :]  # (B, L)
        x = rec.data[ch_idx[:, None, None], win[None, :, :]].transpose(1, 0, 2).astype(np.float64)
        if base_idx is not None:
            x -= x[..., base_idx].mean(axis=-1, keepdims=True)
        if cfg.sfreq != sf:
            x = resample(x, cfg.sfreq, sf, npad="auto", window="auto", pad="edge", method="fft", verbose="error")
        out[lo : lo + len(onsets)] = x[..., keep]
    return Epochs(data=out, ids=events[:, 1].copy(), times=times, n_targets=n_targets, n_outside=n_outside)


def select_repetitions(ids: np.ndarray, n_reps: int, seed: int, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Per image id (ascending), ``n_reps`` of its trials drawn as the dataset authors do.

    Equivalent to ``sklearn.utils.shuffle(idx, random_state=seed, n_samples=n_reps)`` applied to each
    id's trial indices in chronological order (the same seed for every id). Returns
    ``(unique_ids, trial_index)`` with ``trial_index`` of shape (n_ids, n_reps).
    """
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    too_few = uniq[counts < n_reps]
    if too_few.size:
        raise DataFormatError(
            f"{where}: image id(s) {too_few[:10].tolist()} have fewer than {n_reps} repetitions "
            f"({counts[counts < n_reps][:10].tolist()}); the design needs >= {n_reps} per session."
        )
    order = np.argsort(inverse, kind="stable")  # trials grouped by id, chronological within id
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    perms: dict[int, np.ndarray] = {}
    out = np.empty((len(uniq), n_reps), dtype=np.int64)
    for k, (s, m) in enumerate(zip(starts, counts, strict=True)):
        if m not in perms:
            p = np.arange(m)
            np.random.RandomState(seed).shuffle(p)
            perms[int(m)] = p[:n_reps]
        out[k] = order[s : s + m][perms[int(m)]]
    return uniq, out


def repetition_permutation(n_reps: int, seed: int) -> np.ndarray:
    """The authors' final shuffle of the merged repetition axis (``sklearn.utils.shuffle`` of arange)."""
    p = np.arange(n_reps)
    np.random.RandomState(seed).shuffle(p)
    return p


# --------------------------------------------------------------------------------------------------
# Multivariate noise normalisation
# --------------------------------------------------------------------------------------------------


def mean_shrunk_covariance(x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Exact mean over ``b`` of ``sklearn.discriminant_analysis._cov(x[b], shrinkage='auto')``.

    ``x`` is (B, n_samples, n_features). Each matrix is standardised per feature, shrunk with the
    Ledoit-Wolf constant and rescaled, as sklearn does; the mean is accumulated without ever forming
    B covariance matrices (one matrix product over all samples), so it is fast and uses little memory.
    """
    x = np.asarray(x)
    b_total, n, p = x.shape
    acc = np.zeros((p, p))
    diag = np.zeros(p)
    for lo in range(0, b_total, chunk):
        xb = np.asarray(x[lo : lo + chunk], dtype=np.float64)
        xc = xb - xb.mean(axis=1, keepdims=True)
        var = (xc**2).mean(axis=1)  # (B, p)
        scale = np.sqrt(var)
        scale[var <= 1e-300] = 1.0
        z = xc / scale[:, None, :]
        z2 = z**2
        tr_vec = z2.sum(axis=1) / n  # (B, p) diagonal of the empirical covariance of z
        mu = tr_vec.sum(axis=1) / p
        if n <= p:
            gram = z @ z.transpose(0, 2, 1)  # (B, n, n): same Frobenius norm as z^T z
        else:
            gram = z.transpose(0, 2, 1) @ z  # (B, p, p)
        delta_ = (gram**2).sum(axis=(1, 2)) / n**2
        beta_ = (z2.sum(axis=2) ** 2).sum(axis=1)
        beta = (beta_ / n - delta_) / (p * n)
        delta = (delta_ - 2.0 * mu * tr_vec.sum(axis=1) + p * mu**2) / p
        beta = np.minimum(beta, delta)
        shrink = np.where(beta == 0, 0.0, beta / np.where(delta == 0, 1.0, delta))
        w = np.sqrt((1.0 - shrink) / n)
        flat = (xc * w[:, None, None]).reshape(-1, p)
        acc += flat.T @ flat
        diag += ((shrink * mu)[:, None] * scale**2).sum(axis=0)
    cov = (acc + np.diag(diag)) / b_total
    return (cov + cov.T) / 2.0


def noise_covariance(sorted_data: np.ndarray, mode: Literal["epochs", "time"]) -> np.ndarray:
    """Noise covariance of one session and partition, (n_images, n_reps, n_channels, n_times) input.

    ``epochs`` (NICE): one shrinkage covariance per repetition over time, averaged.
    ``time`` (the authors): one per image and time point over repetitions, averaged over time and images.
    """
    check_option("MVNN mode", mode, ("epochs", "time"))  # mvnn "none" computes no covariance
    n_img, n_rep, n_ch, n_t = sorted_data.shape
    if mode == "epochs":
        return mean_shrunk_covariance(sorted_data.reshape(n_img * n_rep, n_ch, n_t).transpose(0, 2, 1))
    # (n_img, n_t, n_rep, n_ch): one matrix per (image, time point) over repetitions
    return mean_shrunk_covariance(sorted_data.transpose(0, 3, 1, 2).reshape(n_img * n_t, n_rep, n_ch))


def inverse_sqrt(cov: np.ndarray) -> np.ndarray:
    """Sigma^(-1/2) of a symmetric positive-definite matrix (same as scipy fractional_matrix_power)."""
    vals, vecs = np.linalg.eigh(cov)
    if vals.min() <= 0:
        raise DataFormatError(
            "the noise covariance is not positive definite (a flat or duplicated channel?); "
            "check the raw data or use mvnn: none"
        )
    return (vecs * vals**-0.5) @ vecs.T


def whiten(data: np.ndarray, w: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Apply ``w`` along the channel axis of (n_images, n_reps, n_channels, n_times), in place."""
    for lo in range(0, data.shape[0], chunk):
        block = np.asarray(data[lo : lo + chunk], dtype=np.float64)
        data[lo : lo + chunk] = np.einsum("ij,nrjt->nrit", w, block, optimize=True)
    return data


# --------------------------------------------------------------------------------------------------
# Per-session processing with resume
# --------------------------------------------------------------------------------------------------


def _file_fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def result_config(cfg: PreprocessConfig) -> dict:
    """The config fields that change the output (``epoch_chunk`` only changes memory use)."""
    return {k: v for k, v in to_dict(cfg).items() if k != "epoch_chunk"}


def _session_key(cfg: PreprocessConfig, inputs: dict[str, dict]) -> str:
    return json_sha256({"config": result_config(cfg), "inputs": inputs})


def _process_session(
    raw_root: Path, subject: int, session: int, cfg: PreprocessConfig, work: Path, progress: bool
) -> dict:
    """Epoch, select, whiten one session (both partitions) into ``work``; return its record."""
    paths = {p: find_raw_file(raw_root, subject, session, p) for p in PARTITIONS}
    fingerprints = {p: _file_fingerprint(paths[p]) for p in PARTITIONS}
    key = _session_key(cfg, fingerprints)
    marker = work / f"ses-{session:02d}.json"
    if marker.is_file():
        rec = read_json(marker)
        if rec.get("key") == key and all((work / f).is_file() for f in rec["files"].values()):
            return rec
    sorted_data: dict[str, np.ndarray] = {}
    record: dict = {"session": session, "key": key, "inputs": {}, "files": {}, "counts": {}}
    for p in PARTITIONS:
        raw = read_raw_file(paths[p])
        if abs(raw.sfreq - 1000.0) > 1e-6 and cfg.sfreq > raw.sfreq:
            raise DataFormatError(f"{paths[p]}: key 'sfreq' is {raw.sfreq}; cannot resample up to {cfg.sfreq}.")
        ep = epoch_recording(raw, cfg, progress=progress)
        if len(ep.ids) == 0:
            raise DataFormatError(
                f"{paths[p]}: the 'stim' row of key 'raw_eeg_data' holds no image events (of "
                f"{ep.n_targets + ep.n_outside} events, {ep.n_targets} are targets ({TARGET_ID}) and {ep.n_outside} "
                "fall outside the recording); expected an onset per image presentation with its id 1..N."
            )
        record["times"] = ep.times.tolist()
        n_reps = cfg.reps_training if p == "training" else cfg.reps_test
        ids, trial_idx = select_repetitions(ep.ids, n_reps, cfg.repetition_seed, where=str(paths[p]))
        sorted_data[p] = ep.data[trial_idx]  # (n_ids, n_reps, ch, t)
        record["inputs"][p] = {**fingerprints[p], "sha256": file_sha256(paths[p])}
        record["counts"][p] = {
            "n_events": len(ep.ids),
            "n_targets_dropped": ep.n_targets,
            "n_outside_recording": ep.n_outside,
            "n_images": len(ids),
            "n_trials_unused": int(len(ep.ids) - trial_idx.size),
        }
        record.setdefault("ids", {})[p] = ids.tolist()
        del raw, ep
    if cfg.mvnn != "none":
        parts = ["training"] if cfg.mvnn_covariance == "training" else ["training", "test"]
        cov = np.mean([noise_covariance(sorted_data[p], cfg.mvnn) for p in parts], axis=0)
        w = inverse_sqrt(cov)
        for p in PARTITIONS:
            whiten(sorted_data[p], w)
    for p in PARTITIONS:
        name = f"ses-{session:02d}_{p}.npy"
        with atomic_path(work / name) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, sorted_data[p].astype(cfg.dtype))
        record["files"][p] = name
    write_json(marker, record)
    fault_point("preprocess-session")
    return record


def _merge_partition(
    p: Partition, records: list[dict], work: Path, cfg: PreprocessConfig, dest: Path, where: Path
) -> tuple[tuple[int, ...], str]:
    """Merge the sessions of one partition into ``dest/<p>_eeg.npy`` (rows = ids 1..N)."""
    all_ids = sorted({i for r in records for i in r["ids"][p]})
    n_ids = len(all_ids)
    if all_ids != list(range(1, n_ids + 1)):
        gaps = sorted(set(range(1, max(all_ids) + 1)) - set(all_ids))[:10]
        raise DataFormatError(
            f"{where}: the {p} image ids of the 'stim' rows over sessions {[r['session'] for r in records]} are not "
            f"1..{max(all_ids)} "
            f"(missing {gaps}); every image must appear in some session."
        )
    per_id_sessions: dict[int, list[int]] = {}
    for r in records:
        for i in r["ids"][p]:
            per_id_sessions.setdefault(i, []).append(r["session"])
    n_sessions_each = {len(v) for v in per_id_sessions.values()}
    if len(n_sessions_each) != 1:
        counts = {i: len(v) for i, v in per_id_sessions.items()}
        bad = [i for i, c in counts.items() if c != max(n_sessions_each)][:10]
        raise DataFormatError(
            f"{where}: {p} images appear in different numbers of sessions ({sorted(n_sessions_each)}), e.g. ids {bad}; "
            "the merge needs every image in the same number of the selected sessions (training: 2 of 4)."
        )
    reps_per_session = cfg.reps_training if p == "training" else cfg.reps_test
    n_rep = n_sessions_each.pop() * reps_per_session
    first = np.load(work / records[0]["files"][p], mmap_mode="r")
    shape = (n_ids, n_rep, first.shape[2], first.shape[3])
    perm = repetition_permutation(n_rep, cfg.repetition_seed) if cfg.shuffle_repetitions else np.arange(n_rep)
    inv = np.argsort(perm)  # merged slot m lands at final position inv[m]
    eeg_name, ses_name = OUR_FILES[p]
    out = np.lib.format.open_memmap(dest / eeg_name, mode="w+", dtype=cfg.dtype, shape=shape)
    sessions = np.zeros((n_ids, n_rep), dtype=np.int8)
    slot_used = np.zeros(n_ids, dtype=np.int64)
    for r in records:  # session order, as the authors concatenate
        block = np.load(work / r["files"][p], mmap_mode="r")
        rows = np.asarray(r["ids"][p]) - 1
        base = slot_used[rows]
        for k in range(reps_per_session):
            final = inv[base + k]
            out[rows, final] = block[:, k]
            sessions[rows, final] = r["session"]
        slot_used[rows] += reps_per_session
    out.flush()
    del out
    np.save(dest / ses_name, sessions)
    return shape, eeg_name


def preprocess_subject(
    raw_root: str | Path,
    out_root: str | Path,
    subject: int,
    cfg: PreprocessConfig | None = None,
    *,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Preprocess one subject; returns ``<out_root>/sub-XX`` (written atomically, resumable).

    If ``<out_root>/sub-XX`` already holds the output of the same config from the same raw files (same
    paths, sizes and modification times), it is returned as it is (``force`` recomputes)."""
    cfg = cfg or PreprocessConfig()
    raw_root, out_root = Path(raw_root), Path(out_root)
    sub = subject_dirname(subject)
    for s in cfg.sessions:  # every input is there before anything is written
        for p in PARTITIONS:
            find_raw_file(raw_root, subject, s, p)
    with folder_lock(out_root, "preprocess", part=sub):  # one process per subject and output folder
        return _preprocess_locked(raw_root, out_root, subject, sub, cfg, progress, force)


def _preprocess_locked(
    raw_root: Path, out_root: Path, subject: int, sub: str, cfg: PreprocessConfig, progress: bool, force: bool
) -> Path:
    final = out_root / sub
    if not force and _is_current(final, raw_root, subject, cfg):
        return final
    work = out_root / f".work-{sub}"
    made_work = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    records = []
    try:
        for s in tqdm(cfg.sessions, desc=f"{sub} sessions", disable=not progress):
            records.append(_process_session(raw_root, subject, s, cfg, work, progress))
    except Eeg2ImageError:
        if made_work and not any(work.glob("ses-*.json")):  # refused before any session was kept: no trace
            shutil.rmtree(work)
        raise
    _check_distinct_sessions(records)
    times = np.asarray(records[0]["times"])
    with atomic_dir(final) as tmp:
        outputs = {}
        for p in PARTITIONS:
            where = find_raw_file(raw_root, subject, cfg.sessions[0], p).parents[1]
            shape, name = _merge_partition(p, records, work, cfg, tmp, where)
            outputs[p] = {"file": name, "sessions_file": OUR_FILES[p][1], "shape": list(shape), "dtype": cfg.dtype}
        write_manifest(
            tmp,
            stage="preprocess",
            config=to_dict(cfg),
            inputs={f"ses-{r['session']:02d}/{p}": r["inputs"][p] for r in records for p in PARTITIONS},
            outputs=outputs,
            extra={
                "subject": subject,
                "ch_names": list(resolve_channels(cfg.channels)),
                "times": times.tolist(),
                "sfreq": cfg.sfreq,
                "row_rule": "row i of <partition>_eeg.npy is image i of the sorted image list (stim id i+1)",
                "counts": {f"ses-{r['session']:02d}": r["counts"] for r in records},
            },
        )
    shutil.rmtree(work, ignore_errors=True)
    return final


def _check_distinct_sessions(records: list[dict]) -> None:
    """Two sessions' raw files with the same bytes are one recording copied twice (a download or unpacking slip)."""
    seen: dict[str, str] = {}
    for r in records:
        for rec in r["inputs"].values():
            other = seen.setdefault(rec["sha256"], rec["path"])
            if other != rec["path"]:
                raise DataFormatError(
                    f"{rec['path']}: the same bytes as {other}; every session must be its own recording "
                    "(copy the right file from the download)"
                )


def result_config_of(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "epoch_chunk"}


def _is_current(final: Path, raw_root: Path, subject: int, cfg: PreprocessConfig) -> bool:
    """True when ``final`` was made with ``cfg`` from the raw files as they are now."""
    if not (final / "manifest.json").is_file():
        return False
    try:
        man = read_json(final / "manifest.json")
        if man.get("stage") != "preprocess" or result_config_of(man.get("config", {})) != result_config(cfg):
            return False
        for s in cfg.sessions:
            for p in PARTITIONS:
                rec = man["inputs"][f"ses-{s:02d}/{p}"]
                now = _file_fingerprint(find_raw_file(raw_root, subject, s, p))
                if any(rec.get(k) != now[k] for k in ("path", "size", "mtime_ns")):
                    return False
        return all((final / f).is_file() for pair in OUR_FILES.values() for f in pair)
    except (KeyError, DataFormatError, MissingDataError, OSError):
        return False


def read_our_preprocessed(folder: str | Path, partition: Partition) -> EEGArray:
    """Open ``eeg2image preprocess`` output memory-mapped, validated against its manifest (EEG, or THINGS-MEG's
    split: the file each partition's manifest entry names)."""
    folder = Path(folder)
    man = read_json(folder / "manifest.json")
    if man.get("stage") != "preprocess":
        raise DataFormatError(f"{folder / 'manifest.json'}: not a preprocess manifest (stage {man.get('stage')!r}).")
    eeg_name, ses_name = OUR_FILES[partition]
    eeg_name = (man.get("outputs", {}).get(partition) or {}).get("file", eeg_name)  # MEG: <partition>_meg.npy
    path = folder / eeg_name
    if not path.is_file():
        raise MissingDataError(f"{path}: missing; rerun `eeg2image preprocess`.")
    try:
        data = np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise DataFormatError(f"{path}: truncated or corrupt .npy ({exc}); rerun `eeg2image preprocess`.") from exc
    want = tuple(man["outputs"][partition]["shape"])
    if data.shape != want:
        raise DataFormatError(f"{path}: shape {data.shape} differs from the manifest's {want}; rerun preprocess.")
    sessions = np.load(folder / ses_name) if (folder / ses_name).is_file() else None
    return EEGArray(
        data=data,
        ch_names=list(man["ch_names"]),
        times=np.asarray(man["times"]),
        source="eeg2image",
        path=path,
        sessions=sessions,
    )
