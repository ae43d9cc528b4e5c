"""The EEG forward model of the simulated THINGS-EEG2: one model per subject, raw session recordings.

``docs/simulation.md`` has the full description and the numbers.

* **Evoked responses.** Image features (:func:`.images.image_features`, computed from the pixels of the
  written JPEGs) drive dipolar sources (subject-specific positions and orientations, 63 real channel
  positions from MNE's easycap-M1 montage, referenced to Fz as the recording was): retinotopic
  luminance/colour contrast (~100 ms, occipital), orientation and spatial-frequency energy (~170 ms,
  occipito-temporal), and the concept's factors (~300 ms, parietal), on top of a stimulus-general visual
  evoked response.
* **Trial variability.** Per trial gain (log-normal) and latency jitter; per session channel gains.
* **Background.** 1/f noise from many dipoles, occipital alpha (subject frequency ~10 Hz), slow drift,
  blinks between RSVP sequences, sensor noise. Volts, 1000 Hz, single-sample stim pulses.
* **Design.** The real session design: each training image in exactly 2 of the 4 sessions (concepts split
  over sessions 1/2 and 3/4 by two permutations) with 2 repetitions there and a few 3; each test image in
  all 4 sessions with 20 and a few 21; targets coded 99999; 100 ms on, 200 ms onset-to-onset, sequences of
  20 images separated by pauses.

The model is generic (linear-nonlinear feature drive, no decoder's features), so it favours no method.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import signal
from tqdm.auto import tqdm

from ..things_eeg2 import PARTITIONS, RAW_CHANNEL_ORDER, TARGET_ID, ImageSet, subject_dirname, write_raw_file
from .images import N_SEMANTIC, image_features

if TYPE_CHECKING:
    from . import SimulationConfig

__all__ = [
    "RESPONSE_MS",
    "LeadField",
    "SubjectModel",
    "channel_positions",
    "eeg_lead_field",
    "evoked_templates",
    "simulate_recording",
    "simulate_subject",
]

# --------------------------------------------------------------------------------------------------
# Subject forward model
# --------------------------------------------------------------------------------------------------

_COMPONENTS = (
    # name, feature group, n sources, latency (ms), latency spread, width (ms), region (y range, z range)
    ("early", "early", 6, 100.0, 12.0, 22.0, (-1.0, -0.75), (-0.2, 0.45)),
    ("mid", "mid", 6, 170.0, 18.0, 32.0, (-0.95, -0.45), (-0.35, 0.35)),
    ("semantic", "semantic", 6, 310.0, 45.0, 80.0, (-0.75, -0.2), (0.3, 0.85)),
)
RESPONSE_MS = 900


def channel_positions() -> tuple[np.ndarray, np.ndarray]:
    """Unit-sphere positions of the 63 raw-order channels and of the reference Fz (easycap-M1)."""
    import mne

    pos = mne.channels.make_standard_montage("easycap-M1").get_positions()["ch_pos"]
    xyz = np.array([pos[c] for c in RAW_CHANNEL_ORDER])
    ref = np.asarray(pos["Fz"])
    radius = np.linalg.norm(xyz, axis=1).mean()
    return xyz / radius, ref / radius


#: Unit-sphere dipoles (n, 3) positions and (n, 3) orientations -> (n_sensors, n) patterns, each scaled to a
#: largest absolute value of 1. The sphere's axes: x right, y front, z up.
LeadField = Callable[[np.ndarray, np.ndarray], np.ndarray]


def eeg_lead_field() -> LeadField:
    """The 63 EEG electrodes (easycap-M1 positions) referenced to Fz, in an infinite homogeneous medium."""
    elec, ref = channel_positions()
    return lambda src, ori: _dipole_patterns(src, ori, elec, ref)


def _dipole_patterns(src: np.ndarray, ori: np.ndarray, elec: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Potential of unit dipoles (infinite homogeneous medium) at the electrodes minus at the reference."""

    def pot(points: np.ndarray) -> np.ndarray:
        d = points[:, None, :] - src[None, :, :]  # (n_points, n_src, 3)
        return np.einsum("psk,sk->ps", d, ori) / np.linalg.norm(d, axis=2) ** 3

    v = pot(elec) - pot(ref[None])
    return v / np.abs(v).max(axis=0, keepdims=True)


def _random_sources(
    rng: np.random.Generator, n: int, y_range, z_range, depth=(0.62, 0.8)
) -> tuple[np.ndarray, np.ndarray]:
    pts = []
    while len(pts) < n:
        p = rng.normal(size=3)
        p /= np.linalg.norm(p)
        if y_range[0] <= p[1] <= y_range[1] and z_range[0] <= p[2] <= z_range[1]:
            pts.append(p)
    unit = np.asarray(pts)
    src = unit * rng.uniform(*depth, size=(n, 1))
    ori = unit + 0.5 * rng.normal(size=(n, 3))
    ori /= np.linalg.norm(ori, axis=1, keepdims=True)
    return src, ori


@dataclass
class SubjectModel:
    """Everything subject-specific: source patterns, waveforms, feature weights, noise sources."""

    weights: dict[str, np.ndarray]  # component -> (n_sources, n_features)
    patterns: np.ndarray  # (sensors, n_specific_sources), all components stacked (63 EEG channels, or MEG)
    waveforms: np.ndarray  # (n_specific_sources, RESPONSE_MS) at 1 kHz from onset
    vep: np.ndarray  # (63, RESPONSE_MS) stimulus-general response, volts
    bg_patterns: np.ndarray  # (63, n_bg)
    alpha_patterns: np.ndarray  # (63, 2)
    alpha_freq: float
    blink_pattern: np.ndarray  # (63,)
    cfg: SimulationConfig

    @classmethod
    def create(cls, cfg: SimulationConfig, subject: int, lead: LeadField | None = None) -> SubjectModel:
        """The subject's model; ``lead`` maps unit-sphere dipoles (positions, orientations) to sensor patterns
        (default: the 63 EEG electrodes against Fz; ``simulate.meg`` gives the CTF MEG sensors)."""
        rng = np.random.default_rng([cfg.seed, 101, subject])
        lead = lead or eeg_lead_field()
        t = np.arange(RESPONSE_MS, dtype=np.float64)
        shift = rng.normal(0, 8)
        weights, patterns, waves = {}, [], []
        feature_dims = {"early": 48, "mid": 18, "semantic": N_SEMANTIC}
        for name, group, n, lat, spread, width, yr, zr in _COMPONENTS:
            weights[name] = rng.normal(size=(n, feature_dims[group])) / math.sqrt(feature_dims[group])
            src, ori = _random_sources(rng, n, yr, zr)
            patterns.append(lead(src, ori))
            for _ in range(n):
                mu = lat + shift + rng.normal(0, spread)
                w = width * rng.uniform(0.8, 1.25)
                wave = np.exp(-0.5 * ((t - mu) / w) ** 2) - 0.45 * np.exp(-0.5 * ((t - mu - 1.6 * w) / (1.3 * w)) ** 2)
                waves.append(wave)
        src, ori = _random_sources(rng, 2, (-1.0, -0.7), (-0.1, 0.4))
        vp = lead(src, ori)
        p1 = np.exp(-0.5 * ((t - 100 - shift) / 18) ** 2)
        n1 = -np.exp(-0.5 * ((t - 165 - shift) / 25) ** 2) + 0.6 * np.exp(-0.5 * ((t - 260 - shift) / 50) ** 2)
        vep = (vp[:, [0]] * p1 + vp[:, [1]] * n1) * cfg.vep_uv * 1e-6
        bsrc, bori = _random_sources(rng, 40, (-1.0, 1.0), (-0.2, 1.0), depth=(0.45, 0.85))
        asrc, aori = _random_sources(rng, 2, (-1.0, -0.55), (0.0, 0.7))
        blink_src = np.array([[0.0, 1.05, -0.25]])
        blink = lead(blink_src, np.array([[0.0, 0.3, 1.0]]) / np.linalg.norm([0.0, 0.3, 1.0]))
        return cls(
            weights=weights,
            patterns=np.concatenate(patterns, axis=1),
            waveforms=np.asarray(waves),
            vep=vep,
            bg_patterns=lead(bsrc, bori),
            alpha_patterns=lead(asrc, aori),
            alpha_freq=float(np.clip(rng.normal(10.0, 0.7), 8.5, 11.5)),
            blink_pattern=blink[:, 0],
            cfg=cfg,
        )

    def source_drive(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """(n_images, n_specific_sources) amplitudes: a saturating function of weighted features."""
        drives = [np.tanh(feats[group] @ self.weights[name].T) for name, group, *_ in _COMPONENTS]
        return np.concatenate(drives, axis=1) * self.cfg.specific_uv * 1e-6

    def specific_response(self, drive: np.ndarray) -> np.ndarray:
        """(n, 63, RESPONSE_MS) image-specific responses (volts) for drives (n, n_sources)."""
        return np.einsum("cs,ns,st->nct", self.patterns, drive, self.waveforms, optimize=True)


def evoked_templates(root: str | Path, subject: int, cfg: SimulationConfig) -> dict[str, np.ndarray]:
    """Noise-free mean responses (n_images, 63 raw-order channels, 900 ms at 1 kHz) per partition,
    recomputed from the image files on disk: the ground truth a mapping test compares EEG rows with."""
    image_set = ImageSet.discover(root)
    feats = image_features(image_set)
    model = SubjectModel.create(cfg, subject)
    return {p: model.specific_response(model.source_drive(feats[p])) + model.vep for p in PARTITIONS}


# --------------------------------------------------------------------------------------------------
# Raw recordings
# --------------------------------------------------------------------------------------------------

_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


def _session_images(cfg: SimulationConfig, n_train_images: int) -> dict[int, np.ndarray]:
    """Training image ids (1-based) of each session: concepts split over sessions 1/2 and 3/4."""
    rng = np.random.default_rng([cfg.seed, 23])
    n_concepts, per = cfg.n_train_concepts, cfg.images_per_concept
    out = {}
    for pair in ((1, 2), (3, 4)):
        perm = rng.permutation(n_concepts)
        half = (n_concepts + 1) // 2
        for ses, concepts in zip(pair, (perm[:half], perm[half:]), strict=True):
            ids = (np.sort(concepts)[:, None] * per + np.arange(per)[None, :] + 1).ravel()
            out[ses] = ids[ids <= n_train_images]
    return out


def _presentation_order(
    ids: np.ndarray, reps: int, extra_fraction: float, target_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    seq = np.repeat(ids, reps)
    n_extra = max(1, int(round(extra_fraction * len(ids))))
    seq = np.concatenate([seq, rng.choice(ids, size=n_extra, replace=False)])
    n_targets = max(2, int(round(target_fraction * len(seq))))
    seq = np.concatenate([seq, np.full(n_targets, TARGET_ID)])
    return seq[rng.permutation(len(seq))]


def simulate_recording(
    model: SubjectModel,
    drive: np.ndarray,
    order: np.ndarray,
    rng: np.random.Generator,
    session_gain: np.ndarray,
) -> np.ndarray:
    """A raw recording (64, n_samples) float64: 63 EEG rows (volts) + the stim row, 1 kHz."""
    cfg = model.cfg
    sf = 1000
    soa = int(round(cfg.soa * sf))
    onsets, t = [], int(2.0 * sf)
    for k in range(0, len(order), cfg.sequence_length):
        n = min(cfg.sequence_length, len(order) - k)
        onsets.extend(t + soa * np.arange(n))
        t += soa * n + int(rng.uniform(*cfg.pause) * sf)
    onsets = np.asarray(onsets)
    n_samples = int(onsets[-1] + 2.5 * sf)
    data = np.zeros((64, n_samples))
    eeg = data[:63]

    # background: 1/f sources, alpha, drift, sensor noise (filters run over the whole recording)
    n_bg = model.bg_patterns.shape[1]
    pink = signal.lfilter(_PINK_B, _PINK_A, rng.normal(size=(n_bg, n_samples)), axis=1)
    pink /= pink.std(axis=1, keepdims=True)
    eeg += model.bg_patterns @ pink * (cfg.background_uv * 1e-6 / math.sqrt(n_bg) * 2.0)
    b, a = signal.iirpeak(model.alpha_freq, Q=4.0, fs=sf)
    alpha = signal.lfilter(b, a, rng.normal(size=(2, n_samples)), axis=1)
    alpha /= alpha.std(axis=1, keepdims=True)
    eeg += model.alpha_patterns @ alpha * (cfg.alpha_uv * 1e-6)
    bd, ad = signal.butter(1, 0.05, fs=sf)
    drift = signal.lfilter(bd, ad, rng.normal(size=(63, n_samples)), axis=1)
    drift /= drift.std(axis=1, keepdims=True) + 1e-12
    eeg += drift * (cfg.drift_uv * 1e-6)
    eeg += rng.normal(scale=cfg.sensor_uv * 1e-6, size=eeg.shape)

    # blinks in the pauses between sequences
    pauses = onsets[1:][np.diff(onsets) > soa]
    bt = np.arange(-300, 300)
    blink_wave = np.exp(-0.5 * (bt / 70.0) ** 2) * cfg.blink_uv * 1e-6
    for p in pauses[rng.random(len(pauses)) < 0.6]:
        c = int(p - rng.uniform(300, 600))
        eeg[:, c + bt] += model.blink_pattern[:, None] * blink_wave[None, :] * rng.uniform(0.6, 1.2)

    # evoked responses (overlapping, as in RSVP)
    jitter = np.rint(rng.normal(0, cfg.latency_jitter_ms, len(order))).astype(int)
    gain = rng.lognormal(0, cfg.trial_gain_sd, len(order))
    vgain = rng.lognormal(0, cfg.trial_gain_sd / 2, len(order))
    stimulus = order != TARGET_ID
    batch = 512
    idx_all = np.flatnonzero(stimulus)
    for lo in range(0, len(idx_all), batch):
        idx = idx_all[lo : lo + batch]
        resp = model.specific_response(drive[order[idx] - 1] * gain[idx, None])
        resp += model.vep[None] * vgain[idx, None, None]
        for k, i in enumerate(idx):
            s = onsets[i] + jitter[i]
            eeg[:, s : s + RESPONSE_MS] += resp[k]
    for i in np.flatnonzero(~stimulus):  # targets evoke a generic response too
        s = onsets[i] + jitter[i]
        eeg[:, s : s + RESPONSE_MS] += model.vep * 1.5
    eeg *= session_gain[:, None]
    data[63, onsets] = order.astype(np.float64)
    return data


def simulate_subject(
    root: Path,
    subject: int,
    cfg: SimulationConfig,
    image_set: ImageSet,
    feats: dict[str, dict[str, np.ndarray]],
    progress: bool = True,
) -> None:
    model = SubjectModel.create(cfg, subject)
    drive = {p: model.source_drive(feats[p]) for p in PARTITIONS}
    n_train = len(image_set.files("training"))
    n_test = len(image_set.files("test"))
    train_sessions = _session_images(cfg, n_train)
    for ses in tqdm(range(1, 5), desc=f"{subject_dirname(subject)} sessions", disable=not progress):
        rng = np.random.default_rng([cfg.seed, 202, subject, ses])
        gain = 1.0 + rng.normal(0, cfg.session_gain_sd, 63)
        folder = root / "raw_data" / subject_dirname(subject) / f"ses-{ses:02d}"
        plans = {
            "training": _presentation_order(
                train_sessions[ses], cfg.train_reps_per_session, cfg.extra_fraction_training, cfg.target_fraction, rng
            ),
            "test": _presentation_order(
                np.arange(1, n_test + 1), cfg.test_reps_per_session, cfg.extra_fraction_test, cfg.target_fraction, rng
            ),
        }
        for p in PARTITIONS:
            data = simulate_recording(model, drive[p], plans[p], rng, gain)
            write_raw_file(folder / f"raw_eeg_{p}.npy", data)
