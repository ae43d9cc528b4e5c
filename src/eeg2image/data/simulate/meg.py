"""A simulated THINGS-MEG in the official layout, from the EEG simulator's forward model on CTF MEG sensors.

``eeg2image simulate OUT --modality meg`` writes what a THINGS-MEG user has after downloading ds004212's
derivatives and the THINGS database (``docs/meg.md``)::

    OUT/ds004212/derivatives/preprocessed/preprocessed_P{n}-epo.fif     MNE epochs: 271 CTF sensors, 200 Hz,
                                                                         -100..1300 ms, z-scored on -100..0 ms
    OUT/THINGS/Images/<concept>/<concept>_NNx.jpg
    OUT/THINGS/Metadata/Image-specific/image_paths.csv                  images/<concept>/<file>, one per row
    OUT/THINGS/Metadata/Concept-specific/image_concept_index.csv        the 1-based concept number of each row

**Design, as THINGS-MEG's.** Every concept (the training and the test concepts alike) has
``images_per_concept`` images, each shown once; each test concept has one more image, shown
``meg_test_repetitions`` (12) times; catch trials (``meg_catch_fraction`` of the epochs) carry event id 999999.
Event id = the image's 1-based row of ``image_paths.csv``, whose rows are sorted by concept, then file (as THINGS
numbers its images alphabetically). So the split must drop the test concepts' once-shown images, as the peers do.

**Forward model.** The EEG simulator's subject model (``simulate.eeg.SubjectModel``: the same feature-driven
sources, waveforms, background and alpha sources, the same random draws) with its lead field replaced: each dipole's
magnetic field (Biot-Savart, primary current in an infinite medium) along each sensor's normal, the sensors at the
CTF-275 positions MNE ships, the head a 9-cm sphere at the centre of the sensors' best-fitting sphere. Each epoch:
its image's response (trial gain and latency jitter as in the EEG), 1/f background and alpha, sensor noise, at
1 kHz; low-passed at 40 Hz and decimated to 200 Hz (as the official 0.1-40 Hz filter and decimation); z-scored per
epoch and sensor on -100..0 ms (the official ``mne.baseline.rescale(mode="zscore")``). Epochs do not overlap
(THINGS-MEG's onset asynchrony is ~1.5 s), so each is simulated on its own. Generic, favouring no method.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import signal
from tqdm.auto import tqdm

from ..things_meg import (
    CATCH_ID,
    EPOCHS_FOLDER,
    MEG_CHANNELS,
    MEG_SFREQ,
    ctf_info,
    participant_file,
    write_meg_epochs,
    write_things_metadata,
)
from .eeg import RESPONSE_MS, LeadField, SubjectModel
from .images import draw_concepts, file_features, render_image

TMIN, TMAX = -0.1, 1.3  # the official epochs (s)
HEAD_RADIUS = 0.09  # m
DATASET = "ds004212"
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


def meg_lead_field(ch_names=MEG_CHANNELS) -> LeadField:
    """Unit-sphere dipoles (x right, y front, z up) -> each CTF sensor's field along its normal (device
    coordinates: x front, y left, z up), each pattern scaled to a largest absolute value of 1."""
    info = ctf_info(ch_names)
    pos = np.array([c["loc"][:3] for c in info["chs"]])
    normal = np.array([c["loc"][9:12] for c in info["chs"]])
    # the sensors' best-fitting sphere: |p - c|^2 = r^2 is linear in (c, r^2 - |c|^2)
    a = np.column_stack([2 * pos, np.ones(len(pos))])
    sol = np.linalg.lstsq(a, (pos**2).sum(axis=1), rcond=None)[0]
    center = sol[:3]

    def lead(src: np.ndarray, ori: np.ndarray) -> np.ndarray:
        s = center + HEAD_RADIUS * np.column_stack([src[:, 1], -src[:, 0], src[:, 2]])
        q = np.column_stack([ori[:, 1], -ori[:, 0], ori[:, 2]])
        d = pos[:, None, :] - s[None, :, :]  # (sensors, sources, 3)
        b = np.cross(np.broadcast_to(q[None], d.shape), d) / np.linalg.norm(d, axis=2, keepdims=True) ** 3
        field = np.einsum("psk,pk->ps", b, normal)
        return field / np.abs(field).max(axis=0, keepdims=True)

    return lead


def _things_images(root: Path, cfg, progress: bool) -> tuple[list[str], list[int], set[str], dict[str, Path]]:
    """Render THINGS/Images and return (image_paths rows, their concept numbers, the test rows, row -> file)."""
    train, test = draw_concepts(cfg)
    concepts = sorted([c for c in train + test], key=lambda c: c.name)
    test_names = {c.name for c in test}
    rows: list[str] = []
    tests: set[str] = set()
    for k, concept in enumerate(tqdm(concepts, desc="THINGS images", disable=not progress)):
        rng = np.random.default_rng([cfg.seed, 13, k])
        n = cfg.images_per_concept + (concept.name in test_names)
        folder = root / "THINGS" / "Images" / concept.name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(n):
            name = f"{concept.name}_{j + 1:02d}{'b' if j == 0 else 's'}.jpg"
            render_image(concept, cfg.image_size, rng).save(folder / name, format="JPEG", quality=92)
            rows.append(f"images/{concept.name}/{name}")
            if j == cfg.images_per_concept:  # the test concept's extra image: the one shown 12 times
                tests.add(rows[-1])
    rows.sort(key=lambda r: r.split("/")[1:])
    number = {c.name: i + 1 for i, c in enumerate(concepts)}
    index = [number[r.split("/")[1]] for r in rows]
    files = {r: root / "THINGS" / "Images" / r.split("/")[1] / r.split("/")[2] for r in rows}
    return rows, index, tests, files


def simulate_meg_epochs(
    model: SubjectModel, drive: np.ndarray, order: np.ndarray, rng: np.random.Generator, progress: bool = False
) -> np.ndarray:
    """Epochs (len(order), sensors, 281) at 200 Hz, -0.1..1.3 s, z-scored on the baseline; ``order`` the event
    ids (row of ``drive`` + 1, or ``CATCH_ID``)."""
    cfg = model.cfg
    sf = 1000
    n_t = int(round((TMAX - TMIN) * sf)) + 5  # 1405 samples: 281 after decimation by 5
    onset = int(round(-TMIN * sf))
    n_sens = model.patterns.shape[0]
    b_lp, a_lp = signal.butter(4, 40.0, fs=sf)
    b_al, a_al = signal.iirpeak(model.alpha_freq, Q=4.0, fs=sf)
    n_bg = model.bg_patterns.shape[1]
    step = int(sf / MEG_SFREQ)
    out = np.empty((len(order), n_sens, n_t // step), dtype=np.float32)
    base = slice(0, onset // step + 1)  # -100..0 ms inclusive
    batch = 64
    for lo in tqdm(range(0, len(order), batch), desc="MEG epochs", disable=not progress):
        ids = order[lo : lo + batch]
        n = len(ids)
        pink = signal.lfilter(_PINK_B, _PINK_A, rng.normal(size=(n, n_bg, n_t + 500)), axis=2)[..., 500:]
        pink /= pink.std(axis=2, keepdims=True)
        x = np.einsum("cs,nst->nct", model.bg_patterns, pink) * (cfg.background_uv * 2.0 / math.sqrt(n_bg))
        alpha = signal.lfilter(b_al, a_al, rng.normal(size=(n, 2, n_t + 500)), axis=2)[..., 500:]
        alpha /= alpha.std(axis=2, keepdims=True)
        x += np.einsum("cs,nst->nct", model.alpha_patterns, alpha) * cfg.alpha_uv
        x += rng.normal(scale=cfg.sensor_uv, size=x.shape)
        gain = rng.lognormal(0, cfg.trial_gain_sd, n)
        vgain = rng.lognormal(0, cfg.trial_gain_sd / 2, n)
        jitter = np.rint(rng.normal(0, cfg.latency_jitter_ms, n)).astype(int)
        stim = ids != CATCH_ID
        resp = np.zeros((n, n_sens, RESPONSE_MS))
        if stim.any():
            resp[stim] = model.specific_response(drive[ids[stim] - 1] * gain[stim, None]) * 1e6
        resp += model.vep[None] * 1e6 * np.where(stim, vgain, 1.5)[:, None, None]
        for k in range(n):
            s = onset + jitter[k]
            x[k, :, s : s + RESPONSE_MS] += resp[k, :, : max(0, min(RESPONSE_MS, n_t - s))]
        x = signal.filtfilt(b_lp, a_lp, x, axis=2)[..., ::step]
        mu = x[..., base].mean(axis=2, keepdims=True)
        sd = x[..., base].std(axis=2, keepdims=True) + 1e-12
        out[lo : lo + n] = (x - mu) / sd
    return out


def simulate_meg_dataset(root: str | Path, cfg, *, progress: bool = True) -> Path:
    """The THINGS-MEG layout under ``root`` (see the module's docstring); ``cfg`` a ``SimulationConfig``."""
    root = Path(root)
    rows, index, tests, files = _things_images(root, cfg, progress)
    write_things_metadata(root / "THINGS", rows, index)
    feats = file_features({"all": [files[r] for r in rows]}, things_layout=True)["all"]
    lead = meg_lead_field()
    ids = np.arange(1, len(rows) + 1)
    shown = np.array([cfg.meg_test_repetitions if r in tests else 1 for r in rows])
    for subject in cfg.subjects:
        rng = np.random.default_rng([cfg.seed, 303, subject])
        model = SubjectModel.create(cfg, subject, lead)
        drive = model.source_drive(feats)
        order = np.repeat(ids, shown)
        n_catch = max(1, int(round(cfg.meg_catch_fraction * len(order))))
        order = np.concatenate([order, np.full(n_catch, CATCH_ID)])[rng.permutation(len(order) + n_catch)]
        data = simulate_meg_epochs(model, drive, order, rng, progress)
        write_meg_epochs(root / DATASET / EPOCHS_FOLDER / participant_file(subject), data, order, TMIN)
    return root


__all__ = ["DATASET", "meg_lead_field", "simulate_meg_dataset", "simulate_meg_epochs"]
