"""The simulated THINGS-EEG2: real session design, stim coding, concepts, and signal that is decodable."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2image.config import list_presets
from eeg2image.data.simulate import (
    FACTORS,
    Concept,
    SimulationConfig,
    SubjectModel,
    draw_concepts,
    simulate_dataset,
    simulate_recording,
    simulation_config,
)
from eeg2image.data.things_eeg2 import (
    TARGET_ID,
    ImageSet,
    decode_stim,
    drop_targets,
    find_raw_file,
    read_raw_file,
)
from eeg2image.demo import split_half_identification, split_half_reliability
from eeg2image.io import ConfigError


def test_stim_decoding_recovers_every_id_and_drops_targets():
    cfg = simulation_config("tiny")
    model = SubjectModel.create(cfg, 1)
    rng = np.random.default_rng(5)
    order = rng.permutation(np.concatenate([np.repeat(np.arange(1, 9), 3), [TARGET_ID] * 4]))
    drive = np.zeros((8, model.patterns.shape[1]))
    data = simulate_recording(model, drive, order, rng, np.ones(63))
    events = decode_stim(data[63])
    np.testing.assert_array_equal(events[:, 1], order)  # every presentation, in order
    assert (np.diff(events[:, 0])[np.diff(events[:, 0]) < 1000] == 200).all()  # 200 ms onset-to-onset in RSVP
    kept, n_targets = drop_targets(events)
    assert n_targets == 4 and TARGET_ID not in kept[:, 1]
    np.testing.assert_array_equal(np.sort(kept[:, 1]), np.repeat(np.arange(1, 9), 3))
    # a pulse longer than one sample is one event
    stim = np.zeros(50)
    stim[10:13] = 7
    stim[20] = 99999
    np.testing.assert_array_equal(decode_stim(stim), [[10, 7], [20, 99999]])


def test_raw_files_follow_the_real_session_design(tiny_dataset, tiny_sim_config):
    n_train = tiny_sim_config.n_train_concepts * tiny_sim_config.images_per_concept
    n_test = tiny_sim_config.n_test_concepts
    sessions_of = {i: [] for i in range(1, n_train + 1)}
    for ses in range(1, 5):
        for partition in ("training", "test"):
            rec = read_raw_file(find_raw_file(tiny_dataset, 1, ses, partition))
            assert rec.ch_names[-1] == "stim" and rec.ch_types.count("eeg") == 63
            ev, n_targets = drop_targets(decode_stim(rec.stim))
            assert n_targets >= 2
            ids, counts = np.unique(ev[:, 1], return_counts=True)
            if partition == "test":
                assert list(ids) == list(range(1, n_test + 1)) and counts.min() >= 20 and counts.max() <= 21
            else:
                assert counts.min() >= 2 and counts.max() <= 3 and (counts == 3).any()
                for i in ids:
                    sessions_of[int(i)].append(ses)
    for i, sess in sessions_of.items():  # each training image in exactly 2 sessions: one of 1/2, one of 3/4
        assert len(sess) == 2 and sess[0] in (1, 2) and sess[1] in (3, 4), (i, sess)


def test_test_concepts_are_unseen_combinations_of_seen_factors():
    cfg = simulation_config("small")
    train, test = draw_concepts(cfg)
    assert not {c.name for c in train} & {c.name for c in test}
    for level in range(4):
        seen = {c.name.split("_")[level] for c in train}
        assert {c.name.split("_")[level] for c in test} <= seen
    assert Concept.parse(test[0].name) == test[0]
    assert Concept.parse(test[0].name).semantic_vector().sum() == len(FACTORS)


def test_images_are_written_as_real_jpegs(tiny_dataset, tiny_sim_config):
    from PIL import Image

    images = ImageSet.discover(tiny_dataset)
    with Image.open(images.files("test")[0]) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (tiny_sim_config.image_size,) * 2


def test_averaged_test_trials_carry_signal_single_trials_are_noisy(tiny_nice):
    from eeg2image.data.preprocess import read_our_preprocessed

    test = read_our_preprocessed(tiny_nice, "test")
    data = np.asarray(test.data, dtype=np.float64)
    # 40 vs 40 repetition averages identify the image far above chance (1/8) ...
    assert split_half_identification(data) >= 0.5
    # ... while single trials barely do: reliability of 1-trial "halves" is much lower than of 40-trial ones
    assert split_half_reliability(data[:, :2]) < 0.5 * split_half_reliability(data)


def test_presets_are_the_yaml_files_and_give_the_configs_they_always_gave(tmp_path):
    # the Python literals the YAML files replaced
    old = {
        "tiny": {},
        "small": {"n_train_concepts": 60, "images_per_concept": 5, "n_test_concepts": 20},
        "demo": {"n_train_concepts": 150, "images_per_concept": 8, "n_test_concepts": 50, "image_size": 128},
        "full": {"n_train_concepts": 1654, "images_per_concept": 10, "n_test_concepts": 200, "image_size": 500},
    }
    assert {name for _, name, _ in list_presets("simulation")} == set(old)
    assert all(desc for _, _, desc in list_presets("simulation"))
    for name, fields in old.items():
        assert simulation_config(name) == SimulationConfig(preset=name, **fields), name
    assert simulation_config() == SimulationConfig()  # the defaults are the tiny preset
    assert simulation_config("small", seed=5, n_test_concepts=40, specific_uv=12.0, subjects=None) == SimulationConfig(
        preset="small", n_train_concepts=60, images_per_concept=5, n_test_concepts=40, seed=5, specific_uv=12.0
    )
    user = tmp_path / "sim.yaml"
    user.write_text("seed: 7\nsubjects: [1, 2]\npause: [1.0, 2.0]\n")
    cfg = simulation_config("demo", user, {"seed": 8})
    assert (cfg.preset, cfg.image_size, cfg.seed, cfg.subjects, cfg.pause) == ("demo", 128, 8, [1, 2], (1.0, 2.0))


def test_unknown_names_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown simulation preset 'huge'; known: demo, full, small, tiny"):
        simulation_config("huge")
    with pytest.raises(ConfigError, match=r"simulate: unknown extra format 'atm'; known: nice, ubp"):
        simulate_dataset(tmp_path / "ds", formats=("nice", "atm"), progress=False)
    assert not (tmp_path / "ds").exists()  # checked before anything is written
