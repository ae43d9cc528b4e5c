"""Raw -> preprocessed: shapes, channel order, time axis, image ordering, MVNN, resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.linalg import fractional_matrix_power
from sklearn.discriminant_analysis import _cov
from sklearn.utils import shuffle

from eeg2image.config import list_presets
from eeg2image.data import preprocess as pp
from eeg2image.data.preprocess import (
    PreprocessConfig,
    epoch_recording,
    inverse_sqrt,
    mean_shrunk_covariance,
    preprocess_subject,
    preset_config,
    read_our_preprocessed,
    repetition_permutation,
    select_repetitions,
)
from eeg2image.data.simulate import evoked_templates
from eeg2image.data.things_eeg2 import (
    NICE_CHANNEL_ORDER,
    OFFICIAL_17_CHANNELS,
    RAW_CHANNEL_ORDER,
    find_raw_file,
    read_raw_file,
)
from eeg2image.io import ConfigError, DataFormatError


def test_nice_shapes_channels_times_and_session_design(tiny_nice, tiny_sim_config):
    n_train = tiny_sim_config.n_train_concepts * tiny_sim_config.images_per_concept
    train = read_our_preprocessed(tiny_nice, "training")
    test = read_our_preprocessed(tiny_nice, "test")
    assert train.shape == (n_train, 4, 63, 250) and test.shape == (tiny_sim_config.n_test_concepts, 80, 63, 250)
    assert train.ch_names == list(NICE_CHANNEL_ORDER)
    np.testing.assert_allclose(train.times, np.arange(250) / 250, atol=1e-12)  # 0 .. 0.996 s
    assert isinstance(train.data, np.memmap) and train.data.dtype == np.float32
    # every training image: 2 repetitions in one of sessions 1/2 and 2 in one of sessions 3/4
    for row in train.sessions:
        ses, counts = np.unique(row, return_counts=True)
        assert len(ses) == 2 and ses[0] in (1, 2) and ses[1] in (3, 4) and list(counts) == [2, 2]
    # every test image: 20 repetitions from each of the 4 sessions
    for row in test.sessions:
        assert list(np.unique(row, return_counts=True)[1]) == [20, 20, 20, 20]
    # the repetition axis is shuffled with the authors' seed (not in session order)
    assert not np.array_equal(test.sessions[0], np.sort(test.sessions[0]))


def test_authors_preset_shapes(tiny_dataset, tmp_path, tiny_sim_config):
    out = preprocess_subject(tiny_dataset, tmp_path, 1, preset_config("authors"), progress=False)
    test = read_our_preprocessed(out, "test")
    assert test.shape == (tiny_sim_config.n_test_concepts, 80, 17, 100)
    assert test.ch_names == list(OFFICIAL_17_CHANNELS)
    np.testing.assert_allclose(test.times, np.arange(-20, 80) / 100, atol=1e-12)  # -0.2 .. 0.79 s


def test_epoching_matches_mne_epochs(tiny_dataset):
    import mne

    rec = read_raw_file(find_raw_file(tiny_dataset, 1, 1, "training"))
    raw = mne.io.RawArray(rec.data, mne.create_info(rec.ch_names, rec.sfreq, rec.ch_types), verbose="error")
    events = mne.find_events(raw, stim_channel="stim", verbose="error")
    events = events[events[:, 2] != 99999]
    raw.pick(list(NICE_CHANNEL_ORDER))
    ep = mne.Epochs(raw, events, tmin=-0.2, tmax=1.0, baseline=(None, 0), preload=True, verbose="error")
    ref = ep.resample(250, verbose="error").get_data()[..., 50:]
    ours = epoch_recording(rec, PreprocessConfig())
    np.testing.assert_array_equal(ours.ids, events[:, 2])
    assert ours.data.shape == ref.shape
    np.testing.assert_allclose(ours.data, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_repetition_draw_and_shuffle_match_the_authors_sklearn_calls():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 30, size=400)
    uniq, idx = select_repetitions(ids, 2, seed=20200220)
    for k, c in enumerate(uniq):
        trials = np.where(ids == c)[0]
        np.testing.assert_array_equal(idx[k], shuffle(trials, random_state=20200220, n_samples=2))
    for n in (4, 80):
        np.testing.assert_array_equal(repetition_permutation(n, 20200220), shuffle(np.arange(n), random_state=20200220))
    with pytest.raises(DataFormatError, match=r"fewer than 50 repetitions"):
        select_repetitions(ids, 50, seed=1, where="x")


@pytest.mark.parametrize("shape", [(7, 250, 12), (9, 2, 12)])  # epochs mode (n > p) and time mode (n < p)
def test_mean_shrunk_covariance_equals_sklearn(shape):
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(shape[2], shape[2]))
    x = rng.normal(size=shape) @ mix * rng.uniform(0.5, 3, size=shape[2])
    ref = np.mean([_cov(x[b], shrinkage="auto") for b in range(shape[0])], axis=0)
    np.testing.assert_allclose(mean_shrunk_covariance(x, chunk=4), ref, rtol=1e-10, atol=1e-12)


def test_inverse_sqrt_equals_scipy():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(10, 10))
    spd = a @ a.T + 0.5 * np.eye(10)
    np.testing.assert_allclose(inverse_sqrt(spd), np.real(fractional_matrix_power(spd, -0.5)), atol=1e-10)


def _session_epochs(data, sessions, ses):
    return np.asarray(data, dtype=np.float64)[sessions == ses]  # (n_trials, ch, t)


def _empirical_cov(x):
    x = x - x.mean(axis=2, keepdims=True)
    return np.einsum("nct,ndt->cd", x, x) / (x.shape[0] * x.shape[2])


def test_mvnn_whitens_training_noise_to_identity(tiny_nice, tiny_unwhitened):
    white = read_our_preprocessed(tiny_nice, "training")
    raw = read_our_preprocessed(tiny_unwhitened, "training")
    eye = np.eye(63)
    for ses in (1, 2, 3, 4):
        x = _session_epochs(white.data, white.sessions, ses)
        # the noise covariance after MVNN is close to identity (the shrinkage estimator MVNN inverts keeps
        # the variances and shrinks correlations, so the plain covariance keeps a diagonal a bit below 1)
        emp = _empirical_cov(x)
        assert 0.75 < np.diag(emp).min() and np.diag(emp).max() < 1.1 and np.linalg.cond(emp) < 5
        assert np.sqrt(((emp - np.diag(np.diag(emp))) ** 2).mean()) < 0.05
        assert np.linalg.norm(emp - eye) / np.linalg.norm(eye) < 0.2
        before = _empirical_cov(_session_epochs(raw.data, raw.sessions, ses))
        assert np.linalg.cond(before) > 100  # far from identity before MVNN


def test_rows_map_to_their_images(tiny_dataset, tiny_unwhitened, tiny_sim_config):
    """Row i of the preprocessed test EEG is the response to image i on disk (via the forward model)."""
    templates = evoked_templates(tiny_dataset, 1, tiny_sim_config)["test"]  # (n, 63 raw order, 900 ms)
    test = read_our_preprocessed(tiny_unwhitened, "test")
    order = [RAW_CHANNEL_ORDER.index(c) for c in test.ch_names]
    inside = test.times < 0.9  # the templates cover 0..900 ms
    samples = np.rint(test.times[inside] * 1000).astype(int)
    t = templates[:, order][:, :, samples]
    t = (t - t.mean(0)).reshape(len(t), -1)
    e = np.asarray(test.data, dtype=np.float64).mean(axis=1)[..., inside]
    e = (e - e.mean(0)).reshape(len(e), -1)
    corr = np.corrcoef(e, t)[: len(e), len(e) :]
    assert (corr.argmax(axis=1) == np.arange(len(e))).all()
    assert np.diag(corr).mean() > 0.5


def test_killed_run_resumes_without_redoing_sessions(tiny_dataset, tmp_path, tiny_nice, monkeypatch):
    real_session, real_epoch = pp._process_session, pp.epoch_recording

    def dies_at_session_3(raw_root, subject, session, cfg, work, progress):
        if session == 3:
            raise KeyboardInterrupt("killed")
        return real_session(raw_root, subject, session, cfg, work, progress)

    monkeypatch.setattr(pp, "_process_session", dies_at_session_3)
    with pytest.raises(KeyboardInterrupt):
        preprocess_subject(tiny_dataset, tmp_path, 1, PreprocessConfig(), progress=False)
    assert not (tmp_path / "sub-01").exists()  # nothing half-written where readers look
    assert sorted(p.name for p in (tmp_path / ".work-sub-01").glob("*.json")) == ["ses-01.json", "ses-02.json"]

    epoched = []

    def counting_epoch(*args, **kwargs):
        epoched.append(args[0].path)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(pp, "_process_session", real_session)
    monkeypatch.setattr(pp, "epoch_recording", counting_epoch)
    out = preprocess_subject(tiny_dataset, tmp_path, 1, PreprocessConfig(), progress=False)
    assert sorted({p.parent.name for p in epoched}) == ["ses-03", "ses-04"]  # 1 and 2 were reused
    for p in ("training", "test"):
        np.testing.assert_array_equal(read_our_preprocessed(out, p).data, read_our_preprocessed(tiny_nice, p).data)
    assert not (tmp_path / ".work-sub-01").exists()


def test_a_changed_config_recomputes_instead_of_reusing(tiny_dataset, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    a = pp._process_session(tiny_dataset, 1, 1, PreprocessConfig(), work, False)
    b = pp._process_session(tiny_dataset, 1, 1, PreprocessConfig(mvnn="none"), work, False)
    assert a["key"] != b["key"]
    assert np.abs(np.load(work / b["files"]["test"])).max() < 1e-3  # unwhitened: still volts


def test_incomplete_design_is_a_clear_error(tiny_dataset, tmp_path):
    with pytest.raises(
        DataFormatError,
        match=r"raw_data/sub-01: the training image ids .* over sessions \[1\] are not 1\.\.|different numbers",
    ):
        preprocess_subject(tiny_dataset, tmp_path, 1, PreprocessConfig(sessions=[1]), progress=False)


def test_a_current_output_is_reused_and_a_changed_input_is_not(tiny_dataset, tmp_path, monkeypatch):
    import os
    import shutil

    raw = tmp_path / "ds"
    shutil.copytree(tiny_dataset / "raw_data", raw / "raw_data")
    cfg = PreprocessConfig(mvnn="none")
    first = preprocess_subject(raw, tmp_path / "out", 1, cfg, progress=False)
    calls = []
    real = pp._process_session
    monkeypatch.setattr(pp, "_process_session", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    assert preprocess_subject(raw, tmp_path / "out", 1, cfg, progress=False) == first and calls == []
    chunked = dataclasses.replace(cfg, epoch_chunk=7)  # memory knob only: the output is still current
    assert preprocess_subject(raw, tmp_path / "out", 1, chunked, progress=False) == first and calls == []
    f = raw / "raw_data/sub-01/ses-03/raw_eeg_test.npy"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # the raw file changed
    preprocess_subject(raw, tmp_path / "out", 1, cfg, progress=False)
    assert calls == [1, 2, 3, 4]
    calls.clear()
    preprocess_subject(
        raw, tmp_path / "out", 1, dataclasses.replace(cfg, reps_test=20, dtype="float64"), progress=False
    )
    assert calls == [1, 2, 3, 4]  # another config: recomputed


def test_presets_are_the_yaml_files_and_give_the_configs_they_always_gave(tmp_path):
    assert preset_config("nice") == PreprocessConfig()  # the dataclass defaults are the nice preset
    # the Python literals the YAML files replaced
    assert preset_config("authors") == PreprocessConfig(
        preset="authors",
        channels="occipitoparietal17",
        tmax=0.8,
        sfreq=100.0,
        keep_from=None,
        mvnn="time",
        mvnn_covariance="training+test",
    )
    assert preset_config("ubp") == PreprocessConfig(preset="ubp", shuffle_repetitions=False)
    assert {name for _, name, _ in list_presets("preprocess")} == {"nice", "authors", "ubp"}
    assert all(desc for _, _, desc in list_presets("preprocess"))
    # keyword fields override (None skipped), after a user's YAML file
    assert preset_config("nice", mvnn="none", shuffle_repetitions=False, dtype=None) == PreprocessConfig(
        mvnn="none", shuffle_repetitions=False
    )
    user = tmp_path / "pre.yaml"
    user.write_text("description: mine\nsfreq: 200.0\nreps_test: 10\n")
    cfg = preset_config("authors", user, {"reps_test": 5})
    assert (cfg.preset, cfg.channels, cfg.sfreq, cfg.reps_test) == ("authors", "occipitoparietal17", 200.0, 5)


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown preprocess preset 'nicer'; known: authors, nice, ubp"):
        preset_config("nicer")
    with pytest.raises(ConfigError, match=r"unknown channel set 'all64'; known: all63, raw63"):
        PreprocessConfig(channels="all64")
    with pytest.raises(ConfigError, match=r"channels \['Q1'\] are not THINGS-EEG2 or THINGS-MEG channels"):
        preset_config("nice", channels=["O1", "Q1"])
    with pytest.raises(ConfigError, match=r"unknown MVNN mode 'none'; known: epochs, time"):
        pp.noise_covariance(np.zeros((2, 2, 3, 4)), "none")
