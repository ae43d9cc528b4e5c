"""Faults with real processes: ``kill -9`` at chosen points of ``preprocess``, ``embed`` and ``train``, then the rerun;
two writers at once on one folder.

A process is killed by itself at a named point (``EEG2IMAGE_FAULT=<point>:<n>``, see ``eeg2image.io.fault_point``:
a real SIGKILL, no cleanup runs) or stopped there (``:stop``, SIGSTOP) while it holds its folder's lock. The rerun
must give byte-identical results, and no partial file may ever be read as complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from badinput import run_cli


def eeg2image(*args, fault: str | None = None, wait: bool = True):
    """``eeg2image ARGS`` in a new process (with ``EEG2IMAGE_FAULT=fault``): the finished process, or the running
    one when ``wait`` is False."""
    env = {k: v for k, v in os.environ.items() if k != "EEG2IMAGE_FAULT"}
    if fault:
        env["EEG2IMAGE_FAULT"] = fault
    cmd = [sys.executable, "-m", "eeg2image.cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def killed(res) -> bool:
    return res.returncode == -signal.SIGKILL


def digest(folder: Path, pattern: str = "*") -> dict[str, str]:
    """Content hash of every file below ``folder`` matching ``pattern`` (hidden work and locks left out)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob(pattern))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def stopped(proc: subprocess.Popen) -> None:
    """Wait until ``proc`` has stopped itself at its fault point (no sleeping: the kernel tells us)."""
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"the process ended instead of stopping: {proc.communicate()}"


def resume(proc: subprocess.Popen) -> tuple[int, str, str]:
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


# --------------------------------------------------------------------------------------------------
# kill -9, then the rerun
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        "preprocess-session:1",  # after the first session's work was kept
        "before-rename@ses-03_training.npy:1",  # while a session's array is being written
        "before-rename@manifest.json:1",  # the output folder complete but not yet renamed into place
    ],
)
def test_preprocess_killed_then_rerun_gives_identical_arrays(tiny_dataset, tiny_nice, tmp_path, fault):
    res = eeg2image("preprocess", tiny_dataset, tmp_path / "out", "--quiet", fault=fault)
    assert killed(res), (res.returncode, res.stderr)
    assert not (tmp_path / "out/sub-01").exists()  # nothing that looks complete
    res = eeg2image("preprocess", tiny_dataset, tmp_path / "out", "--quiet")
    assert res.returncode == 0, res.stderr
    # the session fixture is the same preprocessing (preset nice) of the same raw files, never interrupted
    for name in ("training_eeg.npy", "test_eeg.npy", "training_sessions.npy", "test_sessions.npy"):
        assert (tmp_path / "out/sub-01" / name).read_bytes() == (tiny_nice / name).read_bytes(), name
    assert not (tmp_path / "out/.work-sub-01").exists()
    assert not list((tmp_path / "out").glob(".sub-01.tmp-*"))  # what the killed process left is swept


EMBED = ("--encoder", "effnet-lite0", "--partitions", "training", "--batch-size", "16", "--quiet")


@pytest.fixture(scope="module")
def embedded(tiny_dataset, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("embedded") / "store"
    res = eeg2image("embed", tiny_dataset, store, *EMBED)
    assert res.returncode == 0, res.stderr
    return store


@pytest.mark.parametrize(
    "fault",
    [
        "embed-batch:2",  # inside the table: two of four batches kept
        "before-rename@original__effnet-lite0.json:1",  # the table written, its manifest not yet
    ],
)
def test_embed_killed_then_rerun_gives_the_identical_table(tiny_dataset, embedded, tmp_path, fault):
    store = tmp_path / "store"
    res = eeg2image("embed", tiny_dataset, store, *EMBED, fault=fault)
    assert killed(res), (res.returncode, res.stderr)
    from eeg2image.features.store import EmbeddingStore

    with pytest.raises(Exception, match="no embeddings for view"):  # no half table is ever served
        EmbeddingStore(store).load("training", "original", "effnet-lite0")
    res = eeg2image("embed", tiny_dataset, store, *EMBED)
    assert res.returncode == 0 and "resumed" in res.stdout, (res.stdout, res.stderr)
    assert digest(store, "*.safetensors") == digest(embedded, "*.safetensors")


def train_args(run: Path, tiny_nice: Path, store: Path) -> list:
    return [
        "train",
        run,
        "--preset",
        "demo",
        "--preprocessed",
        tiny_nice.parent,
        "--store",
        store,
        "--epochs",
        "3",
        "--seeds",
        "0-1",
        "--set",
        "train.batch_size=16",
        "--quiet",
    ]


@pytest.fixture(scope="module")
def uninterrupted(tiny_nice, tiny_oracle_store, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    res = eeg2image(*train_args(run, tiny_nice, tiny_oracle_store))
    assert res.returncode == 0, res.stderr
    return run


@pytest.mark.parametrize(
    "fault",
    [
        "train-step:5",  # inside the second epoch (three steps an epoch)
        "before-rename@state.safetensors:2",  # the second checkpoint written but not yet in place
        "after-write@state.safetensors:2",  # right after the second checkpoint, before anything else
        "before-rename@history.json:1",  # the weights written, the unit not yet marked done
    ],
)
def test_train_killed_then_rerun_gives_byte_identical_weights(
    tiny_nice, tiny_oracle_store, uninterrupted, tmp_path, fault
):
    run = tmp_path / "run"
    args = train_args(run, tiny_nice, tiny_oracle_store)
    res = eeg2image(*args, fault=fault)
    assert killed(res), (res.returncode, res.stderr)
    res = eeg2image(*args)
    assert res.returncode == 0, res.stderr
    unit = "units/sub-01"
    for name in ("final.safetensors", "best.safetensors"):  # checksums confirm the reproduction
        assert (run / unit / name).read_bytes() == (uninterrupted / unit / name).read_bytes(), name
    import json

    hist, ref = (json.loads((r / unit / "history.json").read_text()) for r in (run, uninterrupted))
    assert hist["epochs"] == ref["epochs"] and hist["best_epoch"] == ref["best_epoch"]


def test_a_checkpoint_is_one_file_so_no_kill_can_pair_two_epochs(tmp_path):
    """The old checkpoint was two files renamed one after the other; now the epoch, history and fingerprint travel
    in the tensors' file (its metadata)."""
    from test_trainer import random_split

    from eeg2image.training.checkpoint import STATE, read_meta
    from eeg2image.training.trainer import TrainConfig, train_seeds

    cfg = TrainConfig(eeg_encoder="linear", epochs=2, batch_size=32)
    train_seeds(cfg, [0], random_split(), device="cpu", checkpoint_dir=tmp_path, fingerprint={"f": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE]
    assert read_meta(tmp_path)["epoch"] == 2 and read_meta(tmp_path)["fingerprint"] == {"f": 1}


# --------------------------------------------------------------------------------------------------
# two writers at once
# --------------------------------------------------------------------------------------------------


def test_a_second_train_or_an_evaluate_is_refused_while_a_train_runs(
    tiny_nice, tiny_oracle_store, uninterrupted, tmp_path, capsys
):
    run = tmp_path / "run"
    args = train_args(run, tiny_nice, tiny_oracle_store)
    first = eeg2image(*args, fault="train-step:4:stop", wait=False)
    try:
        stopped(first)  # mid-training, holding the run folder's lock
        before = digest(run)
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and f"in use by another eeg2image process (held by pid {first.pid}: eeg2image train" in err
        code, _, err = run_cli(capsys, "evaluate", run)
        assert code == 2 and "in use by another eeg2image process" in err and "evaluate" in err
        assert digest(run) == before  # neither wrote anything
    finally:
        code, _, err = resume(first)
    assert code == 0, err
    assert (run / "units/sub-01/final.safetensors").read_bytes() == (
        uninterrupted / "units/sub-01/final.safetensors"
    ).read_bytes()  # the first train, paused and watched, finished as if alone
    code, _, err = run_cli(capsys, "evaluate", run)
    assert code == 0, err


def test_a_second_embed_on_one_store_is_refused_while_the_first_writes(tiny_dataset, embedded, tmp_path, capsys):
    store = tmp_path / "store"
    first = eeg2image("embed", tiny_dataset, store, *EMBED, fault="embed-batch:1:stop", wait=False)
    try:
        stopped(first)
        before = digest(store)
        code, _, err = run_cli(capsys, "embed", tiny_dataset, store, *EMBED)
        assert (
            code == 2
            and f"{store}: in use by another eeg2image process (held by pid {first.pid}: eeg2image embed" in err
        )
        assert digest(store) == before
    finally:
        code, _, err = resume(first)
    assert code == 0, err
    assert digest(store, "*.safetensors") == digest(embedded, "*.safetensors")


def test_a_second_preprocess_of_one_subject_is_refused_while_the_first_runs(tiny_dataset, tiny_nice, tmp_path, capsys):
    out = tmp_path / "out"
    first = eeg2image("preprocess", tiny_dataset, out, "--quiet", fault="preprocess-session:1:stop", wait=False)
    try:
        stopped(first)
        code, _, err = run_cli(capsys, "preprocess", tiny_dataset, out, "--quiet")
        assert code == 2, err
        assert (
            f"{out / 'sub-01'}: in use by another eeg2image process (held by pid {first.pid}: eeg2image preprocess"
            in err
        )
    finally:
        code, _, err = resume(first)
    assert code == 0, err
    assert (out / "sub-01/training_eeg.npy").read_bytes() == (tiny_nice / "training_eeg.npy").read_bytes()


def test_a_killed_holder_leaves_no_lock_behind(tiny_dataset, tmp_path):
    """The lock is the kernel's (flock): a process killed while holding it releases it."""
    store = tmp_path / "store"
    res = eeg2image("embed", tiny_dataset, store, *EMBED, fault="embed-batch:1")
    assert killed(res)
    res = eeg2image("embed", tiny_dataset, store, *EMBED)
    assert res.returncode == 0, res.stderr
    np.testing.assert_equal(sorted(p.name for p in store.glob(".eeg2image.lock*")), [".eeg2image.lock"])
    shutil.rmtree(store)
