"""A simulated THINGS-EEG2: the real on-disk layout, from a documented forward model.

``eeg2image simulate`` writes raw session files, the authors' preprocessed files, the image folders with
JPEGs and ``image_metadata.npy``, with the same names, keys, dtypes and shape conventions as the real
dataset (fewer items unless ``--preset full``), so any tool written for the real files runs on ours.

The package is in three parts (``docs/simulation.md`` has the full description and the numbers):

* :mod:`.images`: concepts (combinations of shape, colour, texture and layout; test concepts are unseen
  combinations of seen factor values), image rendering and writing, and the image features computed back
  from the written JPEGs;
* :mod:`.eeg`: the forward model (feature-driven dipolar sources on real electrode positions, trial and
  session variability, background noise, the real session design) and the raw recordings it makes;
* here: :class:`SimulationConfig`, its presets (``eeg2image/configs/simulation/<name>.yaml``) and
  :func:`simulate_dataset`, which writes everything; the file writers live in
  :mod:`eeg2image.data.things_eeg2` beside the readers they mirror.

The model is generic (linear-nonlinear feature drive, no decoder's features), so it favours no method.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...config import stage_config, to_dict
from ...io import ConfigError, check_option, write_json
from ..things_eeg2 import PARTITIONS, subject_dirname, write_preprocessed_dict, write_ubp_pt
from .eeg import (
    RESPONSE_MS,
    SubjectModel,
    channel_positions,
    evoked_templates,
    simulate_recording,
    simulate_subject,
)
from .images import (
    COLOURS,
    FACTORS,
    LAYOUTS,
    N_SEMANTIC,
    SHAPES,
    TEXTURES,
    Concept,
    draw_concepts,
    image_features,
    render_image,
    write_image_set,
)

__all__ = [
    "COLOURS",
    "EXTRA_FORMATS",
    "FACTORS",
    "LAYOUTS",
    "N_SEMANTIC",
    "RESPONSE_MS",
    "SHAPES",
    "TEXTURES",
    "Concept",
    "SimulationConfig",
    "SubjectModel",
    "channel_positions",
    "draw_concepts",
    "evoked_templates",
    "image_features",
    "render_image",
    "simulate_dataset",
    "simulate_recording",
    "simulate_subject",
    "simulation_config",
    "write_image_set",
]

#: Preprocessed layouts ``simulate_dataset(formats=...)`` can add to the authors' files (each is the
#: preprocessing preset of the same name, written in that toolbox's file format).
EXTRA_FORMATS = ("nice", "ubp")


@dataclass
class SimulationConfig:
    """Sizes and forward-model parameters of a simulated THINGS-EEG2.

    The defaults are the ``tiny`` preset; the other presets are ``eeg2image/configs/simulation/*.yaml``."""

    preset: str = "tiny"
    modality: Literal["eeg", "meg"] = "eeg"  # meg: a THINGS-MEG in its official layout (``simulate.meg``)
    subjects: list[int] = dataclasses.field(default_factory=lambda: [1])
    n_train_concepts: int = 16
    images_per_concept: int = 4
    n_test_concepts: int = 8
    image_size: int = 64
    seed: int = 0
    # session design (per session)
    train_reps_per_session: int = 2
    test_reps_per_session: int = 20
    extra_fraction_training: float = 0.02  # share of images shown a 3rd time (real: 170 / 8270)
    extra_fraction_test: float = 0.014  # share shown a 21st time (real: 56 / 4000)
    target_fraction: float = 0.006  # targets per presentation (real: 90 / 16800)
    sequence_length: int = 20
    soa: float = 0.2
    pause: tuple[float, float] = (0.75, 1.5)  # seconds between sequences
    # forward model (amplitudes in microvolts)
    vep_uv: float = 4.0
    specific_uv: float = 4.0
    background_uv: float = 9.0
    alpha_uv: float = 5.0
    sensor_uv: float = 1.5
    drift_uv: float = 4.0
    blink_uv: float = 80.0
    trial_gain_sd: float = 0.3
    latency_jitter_ms: float = 8.0
    session_gain_sd: float = 0.03
    write_preprocessed: bool = True  # the authors' preprocessed files, made by our `authors` preset
    # THINGS-MEG's design (modality meg): each test image shown this often, catch trials' share of the epochs
    meg_test_repetitions: int = 12
    meg_catch_fraction: float = 0.08

    def __post_init__(self) -> None:
        if self.train_reps_per_session < 2 or self.test_reps_per_session < 20:
            raise ValueError("the real design has >= 2 training and >= 20 test repetitions per session")
        if self.meg_test_repetitions < 2 or not 0 <= self.meg_catch_fraction < 1:
            raise ValueError("meg_test_repetitions must be >= 2 and meg_catch_fraction in [0, 1)")
        if self.n_train_concepts < 2 or self.n_test_concepts < 1 or self.images_per_concept < 1:
            raise ValueError("need >= 2 training concepts, >= 1 test concept and >= 1 image per concept")
        total = self.n_train_concepts + self.n_test_concepts
        if total > math.prod(len(f) for f in FACTORS):
            raise ValueError(f"at most {math.prod(len(f) for f in FACTORS)} concepts can be made")


def simulation_config(
    preset: str | None = "tiny",
    yaml_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    **fields: Any,
) -> SimulationConfig:
    """The config of ``preset`` (``eeg2image/configs/simulation/<preset>.yaml``), then of ``yaml_file``,
    then ``overrides`` and ``fields`` (a field given as a keyword wins; ``None`` values are skipped)."""
    return stage_config(SimulationConfig, "simulation", preset, yaml_file, {**(overrides or {}), **fields})


def simulate_dataset(
    root: str | Path, cfg: SimulationConfig | None = None, *, formats: tuple[str, ...] = (), progress: bool = True
) -> Path:
    """Write a simulated THINGS-EEG2 under ``root``; ``formats`` may add ``nice`` and ``ubp`` files."""
    from ..preprocess import output_times, preprocess_subject, preset_config, read_our_preprocessed

    for fmt in formats:
        check_option("extra format", fmt, EXTRA_FORMATS, where="simulate")
    cfg = cfg or SimulationConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if cfg.modality == "meg":
        if formats:
            raise ConfigError(f"simulate: extra formats {list(formats)} are THINGS-EEG2's; a MEG simulation has none")
        from .meg import simulate_meg_dataset

        simulate_meg_dataset(root, cfg, progress=progress)
        write_json(
            root / "simulation.json",
            {
                "simulated": True,
                "modality": "meg",
                "config": to_dict(cfg),
                "description": "eeg2image simulated THINGS-MEG; see docs/meg.md",
            },
        )
        return root
    image_set = write_image_set(root, cfg, progress=progress)
    feats = image_features(image_set)
    for subject in cfg.subjects:
        simulate_subject(root, subject, cfg, image_set, feats, progress=progress)
    wanted = (["authors"] if cfg.write_preprocessed else []) + list(formats)
    for subject in cfg.subjects:
        sub = subject_dirname(subject)
        for fmt in wanted:
            pcfg = preset_config(fmt)
            scratch = root / ".simulate-work"
            ours = preprocess_subject(root, scratch, subject, pcfg, progress=progress)
            full_times, _ = output_times(pcfg, 1000.0)
            for p in PARTITIONS:
                arr = read_our_preprocessed(ours, p)
                if fmt == "authors":
                    write_preprocessed_dict(root / "preprocessed_data" / sub, p, arr.data, arr.ch_names, arr.times)
                elif fmt == "nice":
                    write_preprocessed_dict(
                        root / "Preprocessed_data_250Hz" / sub, p, arr.data, arr.ch_names, full_times, "pickle"
                    )
                else:
                    write_ubp_pt(
                        root / "Preprocessed_data_250Hz_whiten" / sub,
                        p,
                        arr.data,
                        arr.sessions,
                        image_set,
                        arr.ch_names,
                        full_times,
                    )
            del arr
            shutil.rmtree(scratch, ignore_errors=True)
    write_json(
        root / "simulation.json",
        {
            "simulated": True,
            "config": to_dict(cfg),
            "formats": wanted,
            "description": "eeg2image simulated THINGS-EEG2; see docs/simulation.md",
        },
    )
    return root
