"""The bad-input corpus: every reader and stage given broken input through the command line, as a user would.

Each case asserts exit status 2, one line on stderr naming the file or key and what was expected, no traceback,
and nothing written or overwritten (every file below the case's folder fingerprinted before and after; the
empty lock file a locking command keeps is the one allowed trace). Families: raw files, unsafe pickles, the
preprocessed layouts (official, NICE/ATM, UBP), image sets, embedding stores, run folders, configs, usage, and
THINGS-MEG (its official epochs and THINGS' images).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from badinput import assert_refused, fingerprint, mirror, run_cli, unlink_for_writing

from eeg2image.io import load_pickled
from eeg2image.runs import run_config
from eeg2image.training.run import train_run

RAW1 = "raw_data/sub-01/ses-01/raw_eeg_training.npy"


def quiet(*_a, **_k):
    return None


@pytest.fixture(scope="module")
def trained(tiny_dataset, tiny_nice, tiny_oracle_store, tmp_path_factory) -> Path:
    """An embedding store (oracle features) and a trained run (linear encoder, 2 epochs) of the tiny dataset."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(tiny_oracle_store, root / "store")
    over = {
        "data.preprocessed": str(tiny_nice.parent),
        "data.store": str(root / "store"),
        "data.dataset": str(tiny_dataset),
        "train.eeg_encoder": "linear",
        "train.epochs": 2,
        "train.batch_size": 16,
        "seeds": [0],
    }
    train_run(run_config("demo", None, **over), root / "run", progress=False, log=quiet)
    return root


class Case:
    """One corpus entry: ``setup(env)`` damages a copy under ``env.tmp`` and returns the command line."""

    def __init__(self, tmp: Path, dataset: Path, trained: Path | None, meg: Path | None = None):
        self.tmp, self.dataset, self.trained, self.meg = tmp, dataset, trained, meg

    def meg_epochs(self, edit) -> list[str]:
        """``preprocess`` on a mirror of the tiny THINGS-MEG whose epochs file is rewritten by ``edit(data, events,
        ch_names, sfreq)`` -> the same four (``data.things_meg.write_meg_epochs``)."""
        from eeg2image.data.things_meg import open_meg_epochs, write_meg_epochs

        ds = mirror(self.meg, self.tmp / "meg")
        path = next(ds.rglob("preprocessed_P1-epo.fif"))
        ep = open_meg_epochs(self.meg / path.relative_to(ds))
        data, events, names, sfreq = edit(ep.load(range(len(ep.events))), ep.events.copy(), list(ep.ch_names), 200.0)
        unlink_for_writing(path)
        write_meg_epochs(path, data, events, float(ep.times[0]), names, sfreq)
        return ["preprocess", ds, self.tmp / "out", "--quiet"]

    def ds(self, *copy: str) -> Path:
        """A mirror of the tiny dataset under tmp/ds (``copy``: paths copied for real)."""
        return mirror(self.dataset, self.tmp / "ds", copy=copy)

    def raw(self, edit) -> list[str]:
        """``preprocess`` on a dataset whose first raw file is ``edit(dict)`` (or the bytes it returns)."""
        ds = self.ds()
        path = unlink_for_writing(ds / RAW1)
        obj = load_pickled(self.dataset / RAW1)
        new = edit(obj)
        if isinstance(new, bytes):
            path.write_bytes(new)
        else:
            np.save(path, new, allow_pickle=True)
        return ["preprocess", ds, self.tmp / "out", "--quiet"]

    def run_copy(self, **config_edits) -> Path:
        """A copy of the trained run (and its store) under tmp, its config pointing at the copied store."""
        shutil.copytree(self.trained / "store", self.tmp / "store")
        shutil.copytree(self.trained / "run", self.tmp / "run")
        cfg = self.tmp / "run/config.yaml"
        text = cfg.read_text().replace(str(self.trained / "store"), str(self.tmp / "store"))
        for old, new in config_edits.items():
            text = text.replace(old, new)
        cfg.write_text(text)
        return self.tmp / "run"


# --------------------------------------------------------------------------------------------------
# The cases: name -> (setup, pattern the one error line must match)
# --------------------------------------------------------------------------------------------------


def _raw_with(key, fn):
    def edit(obj):
        obj[key] = fn(obj[key])
        return obj

    return edit


def _stim(fn):
    def edit(obj):
        data = np.array(obj["raw_eeg_data"])
        data[-1] = fn(data[-1])
        obj["raw_eeg_data"] = data
        return obj

    return edit


def _first_onset_to(value):
    def fn(stim):
        stim = stim.copy()
        stim[np.flatnonzero(stim)[0]] = value
        return stim

    return fn


RAW_CASES = {
    "raw truncated": (
        lambda c: c.raw(lambda o: (c.dataset / RAW1).read_bytes()[:5000]),
        r"ses-01/raw_eeg_training.npy: the file is truncated or corrupt",
    ),
    "raw empty": (lambda c: c.raw(lambda o: b""), r"raw_eeg_training.npy: the file is empty"),
    "raw not numpy": (
        lambda c: c.raw(lambda o: b"<html>404 not found</html>"),
        r"raw_eeg_training.npy: not a .npy file or a pickle",
    ),
    "raw wrong dtype": (
        lambda c: c.raw(_raw_with("raw_eeg_data", lambda d: np.asarray(d).astype(np.int16))),
        r"raw_eeg_training.npy: key 'raw_eeg_data' must be a float array of shape \(64, n_samples\); got .* int16",
    ),
    "raw wrong shape": (
        lambda c: c.raw(_raw_with("raw_eeg_data", lambda d: np.asarray(d)[1:])),
        r"raw_eeg_training.npy: key 'raw_eeg_data' has 63 rows but 'ch_names' has 64",
    ),
    "raw missing key": (
        lambda c: c.raw(lambda o: {k: v for k, v in o.items() if k != "sfreq"}),
        r"raw_eeg_training.npy: missing key\(s\) \['sfreq'\]; expected",
    ),
    "raw not a dict": (
        lambda c: c.raw(lambda o: np.asarray(o["raw_eeg_data"])),
        r"raw_eeg_training.npy: expected a dict with keys",
    ),
    "raw NaN": (
        lambda c: c.raw(_raw_with("raw_eeg_data", lambda d: np.where(np.arange(d.shape[1]) == 7, np.nan, d))),
        r"raw_eeg_training.npy: key 'raw_eeg_data' contains NaN or Inf .*must be finite",
    ),
    "raw negative sfreq": (
        lambda c: c.raw(_raw_with("sfreq", lambda s: -1000.0)),
        r"raw_eeg_training.npy: key 'sfreq' must be positive",
    ),
    "stim without events": (
        lambda c: c.raw(_stim(np.zeros_like)),
        r"raw_eeg_training.npy: the 'stim' row of key 'raw_eeg_data' holds no image events",
    ),
    "stim non-integer ids": (
        lambda c: c.raw(_stim(_first_onset_to(2.5))),
        r"raw_eeg_training.npy: the 'stim' row .*non-integer values",
    ),
    "stim negative ids": (
        lambda c: c.raw(_stim(_first_onset_to(-3))),
        r"raw_eeg_training.npy: the 'stim' row .*negative image ids \[-3\]",
    ),
}


def _session_missing(c):
    ds = c.ds()
    shutil.rmtree(ds / "raw_data/sub-01/ses-03")
    return ["preprocess", ds, c.tmp / "out", "--quiet"]


def _folder_for_file(c):
    ds = c.ds()
    unlink_for_writing(ds / RAW1).mkdir()
    return ["preprocess", ds, c.tmp / "out", "--quiet"]


def _subject_missing(c):
    return ["preprocess", c.ds(), c.tmp / "out", "--subjects", "4", "--quiet"]


SESSION_CASES = {
    "session missing": (_session_missing, r"sub-01: session file missing; expected .*ses-03/raw_eeg_training.npy"),
    "sessions listed twice": (
        lambda c: ["preprocess", c.ds(), c.tmp / "out", "--set", "sessions=[1, 1, 2, 3]"],
        r"sessions must be distinct session numbers, got \[1, 1, 2, 3\]",
    ),
    "folder where a file belongs": (
        _folder_for_file,
        r"ses-01/raw_eeg_training.npy: a folder where the raw session file belongs",
    ),
    "subject missing": (_subject_missing, r"raw_data: subject folder sub-04 not found \(have: sub-01\)"),
}


# -- unsafe pickles: each would run code (or write a file) if unpickled naively ---------------------


class _Reduce:
    """Pickles as ``func(*args)``: the shape of every pickle gadget."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _CallableReduce(_Reduce):
    def __call__(self, *a):  # pickle only checks that the reducer's callable is callable
        raise AssertionError


def _gadgets(marker: Path, victim: Path, inner: Path):
    import builtins
    import importlib

    from numpy.testing._private.utils import runstring

    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": _Reduce(os.system, f"touch {marker}"),
        "builtins.exec": _Reduce(builtins.exec, touch),
        "builtins.eval": _Reduce(builtins.eval, f"__import__('os').system('touch {marker}')"),
        "subprocess.Popen": _Reduce(subprocess.Popen, ["touch", str(marker)]),
        "numpy runstring (exec)": _Reduce(runstring, touch, {}),
        "numpy.load of a pickle": _Reduce(np.load, str(inner), None, True),
        "numpy.save over a file": _Reduce(np.save, str(victim), np.zeros(3)),
        "nested reduce getattr": _Reduce(
            _CallableReduce(getattr, _Reduce(importlib.import_module, "os"), "system"), f"touch {marker}"
        ),
    }


def _gadget_case(name):
    def setup(c):
        marker, victim, inner = c.tmp / "pwned", c.tmp / "victim.npy", c.tmp / "inner.pkl"
        np.save(victim, np.arange(5))
        with open(inner, "wb") as f:
            pickle.dump(_Reduce(os.system, f"touch {marker}"), f)
        gadget = _gadgets(marker, victim, inner)[name]
        args = c.raw(lambda o: pickle.dumps({**o, "raw_eeg_data": gadget}, protocol=4))
        c.after = lambda: (not marker.exists()) and np.array_equal(np.load(victim), np.arange(5))
        return args

    return setup


GADGET_NAMES = ["os.system", "builtins.exec", "builtins.eval", "subprocess.Popen", "numpy runstring (exec)"]
GADGET_NAMES += ["numpy.load of a pickle", "numpy.save over a file", "nested reduce getattr"]
GADGET_CASES = {
    f"unsafe pickle: {n}": (_gadget_case(n), r"raw_eeg_training.npy: refused to load: the pickle asks for")
    for n in GADGET_NAMES
}


# -- the preprocessed layouts, read by `info --deep` --------------------------------------------------

OFFICIAL = "preprocessed_data/sub-01/preprocessed_eeg_training.npy"
NICE = "Preprocessed_data_250Hz/sub-01/preprocessed_eeg_test.npy"
UBP = "Preprocessed_data_250Hz_whiten/sub-01/train.pt"


def _preprocessed(rel, edit, pickled=False):
    def setup(c):
        root = c.tmp / "ds"
        path = root / rel
        path.parent.mkdir(parents=True)
        if rel.endswith(".pt"):
            import torch

            obj = torch.load(c.dataset / rel, weights_only=False)  # our own fixture
            new = edit(obj)
            if isinstance(new, bytes):
                path.write_bytes(new)
            else:
                torch.save(new, path)
        else:
            new = edit(load_pickled(c.dataset / rel))
            if isinstance(new, bytes):
                path.write_bytes(new)
            elif pickled:
                path.write_bytes(pickle.dumps(new, protocol=4))
            else:
                np.save(path, new, allow_pickle=True)
        return ["info", root, "--deep"]

    return setup


def _with(key, fn):
    def edit(obj):
        obj = dict(obj)
        obj[key] = fn(obj[key])
        return obj

    return edit


def _evil_pt(obj):
    import torch

    return {**obj, "eeg": torch.as_tensor(np.asarray(obj["eeg"])), "x": _Reduce(os.system, "true")}


PREPROCESSED_CASES = {
    "official 3-D data": (
        _preprocessed(OFFICIAL, _with("preprocessed_eeg_data", lambda d: np.asarray(d)[0])),
        r"preprocessed_eeg_training.npy: key 'preprocessed_eeg_data' must be an array \(n_images, n_repetitions, "
        r"n_channels, n_times\); got",
    ),
    "official missing times": (
        _preprocessed(OFFICIAL, lambda o: {k: v for k, v in o.items() if k != "times"}),
        r"preprocessed_eeg_training.npy: missing key\(s\) \['times'\]",
    ),
    "official integer data": (
        _preprocessed(OFFICIAL, _with("preprocessed_eeg_data", lambda d: np.asarray(d).astype(np.int32))),
        r"key 'preprocessed_eeg_data' must be floating point, got int32",
    ),
    "official channel count": (
        _preprocessed(OFFICIAL, _with("ch_names", lambda n: list(n)[:-1])),
        r"key 'preprocessed_eeg_data' has \d+ channels \(axis 2\) but 'ch_names' lists",
    ),
    "nice NaN": (
        _preprocessed(
            NICE,
            _with("preprocessed_eeg_data", lambda d: np.where(np.arange(d.shape[-1]) == 3, np.inf, d)),
            pickled=True,
        ),
        r"preprocessed_eeg_test.npy: key 'preprocessed_eeg_data' contains NaN or Inf",
    ),
    "nice truncated": (
        _preprocessed(NICE, lambda o: pickle.dumps(o, protocol=4)[:3000]),
        r"preprocessed_eeg_test.npy: the file is truncated or corrupt",
    ),
    "nice too few times": (
        _preprocessed(NICE, _with("times", lambda t: np.asarray(t)[:10]), pickled=True),
        r"key 'times' has 10 entries, fewer than the",
    ),
    "ubp session shape": (
        _preprocessed(UBP, _with("session", lambda s: np.asarray(s)[:, :1])),
        r"train.pt: key 'session' has shape .*expected",
    ),
    "ubp without eeg": (
        _preprocessed(UBP, lambda o: {k: v for k, v in o.items() if k != "eeg"}),
        r"train.pt: missing key\(s\) \['eeg'\]",
    ),
    "ubp malicious .pt": (_preprocessed(UBP, _evil_pt), r"train.pt: refused to load: unsupported GLOBAL posix.system"),
    "ubp garbage zip": (
        _preprocessed(UBP, lambda o: b"PK\x03\x04" + b"\x00" * 64),
        r"train.pt: (the file is truncated or corrupt|could not be read safely)",
    ),
}


# -- image sets, read by `embed` -------------------------------------------------------------------

TRAIN_IMG = "image_set/training_images"


def _embed(c, ds) -> list:
    return ["embed", ds, c.tmp / "store", "--encoder", "effnet-lite0", "--partitions", "training", "--quiet"]


def _first_image(c) -> str:
    folder = sorted((c.dataset / TRAIN_IMG).iterdir())[1]
    return str(sorted(folder.iterdir())[2].relative_to(c.dataset))


def _image_deleted(c):
    ds = c.ds()
    rel = _first_image(c)
    (ds / rel).unlink()
    c.rel = rel
    return _embed(c, ds)


def _image_extra(c):
    ds = c.ds()
    rel = _first_image(c)
    shutil.copy(c.dataset / rel, (ds / rel).with_name("zz_extra.jpg"))
    return _embed(c, ds)


def _image_corrupt(c):
    ds = c.ds()
    rel = _first_image(c)
    unlink_for_writing(ds / rel).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return _embed(c, ds)


def _image_16bit(c):
    from PIL import Image

    ds = c.ds()
    rel = _first_image(c)
    path = unlink_for_writing(ds / rel).with_suffix(".png")
    (ds / rel).unlink(missing_ok=True)
    Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)).save(path)
    meta = load_pickled(c.dataset / "image_set/image_metadata.npy")
    meta["train_img_files"] = [f.replace(Path(rel).name, path.name) for f in meta["train_img_files"]]
    np.save(unlink_for_writing(ds / "image_set/image_metadata.npy"), meta)
    return _embed(c, ds)


def _metadata_order(c):
    ds = c.ds()
    meta = load_pickled(c.dataset / "image_set/image_metadata.npy")
    f = meta["train_img_files"]
    f[1], f[2] = f[2], f[1]  # two images of one concept
    np.save(unlink_for_writing(ds / "image_set/image_metadata.npy"), meta)
    return _embed(c, ds)


def _no_image_set(c):
    ds = c.ds()
    shutil.rmtree(ds / "image_set")
    return _embed(c, ds)


IMAGE_CASES = {
    "image deleted": (
        _image_deleted,
        r"training_images/.*\.jpg: image missing \(1 of the 64 images that image_metadata.npy key 'train_img_files'",
    ),
    "image extra": (_image_extra, r"zz_extra.jpg: not listed in .*image_metadata.npy key 'train_img_files'"),
    "image corrupt": (_image_corrupt, r"training_images/.*\.jpg: unreadable image"),
    "image 16-bit": (_image_16bit, r"\.png: image mode 'I;16' \(16-bit or float pixels\); expected 8-bit RGB"),
    "metadata order": (
        _metadata_order,
        r"image_metadata.npy: key 'train_img_files'\[1\] is .*the EEG-to-image order would be wrong",
    ),
    "no image set": (_no_image_set, r"ds: no image set found \(need training_images/ and test_images/"),
}


# -- embedding stores, read by `train` and `evaluate` ----------------------------------------------

TABLE = "training/original__sim-features"


def _train_on_store(c, *extra):
    shutil.copytree(c.trained / "store", c.tmp / "store")
    pre = Path(run_config_of(c).data.preprocessed)
    return ["train", c.tmp / "run", "--preset", "demo", "--preprocessed", pre, "--store", c.tmp / "store", *extra]


def run_config_of(c):
    from eeg2image.runs import read_run_config

    return read_run_config(c.trained / "run")


def _store_corrupt(c):
    args = _train_on_store(c)
    (c.tmp / "store" / f"{TABLE}.safetensors").write_bytes(b"\x00" * 40)
    return args


def _store_partial(c):
    args = _train_on_store(c)
    (c.tmp / "store" / f"{TABLE}.json").unlink()
    return args


def _store_order(c):
    args = _train_on_store(c)
    meta = c.tmp / "store" / f"{TABLE}.json"
    m = json.loads(meta.read_text())
    m["images"] = m["images"][::-1]
    meta.write_text(json.dumps(m))
    return args


def _store_dimension(c):
    from safetensors.numpy import load_file, save_file

    run = c.run_copy()
    table = c.tmp / "store/test/original__sim-features"
    arr = load_file(str(table.with_suffix(".safetensors")))["embeddings"]
    save_file({"embeddings": arr[:, :-5].copy()}, str(table.with_suffix(".safetensors")))
    m = json.loads(table.with_suffix(".json").read_text())
    table.with_suffix(".json").write_text(json.dumps({**m, "dim": m["dim"] - 5}))
    return ["evaluate", run]


STORE_CASES = {
    "store corrupt": (_store_corrupt, r"original__sim-features.safetensors: unreadable embedding file"),
    "store partial": (
        _store_partial,
        r"original__sim-features.json: no training embeddings for view 'original' of encoder 'sim-features'",
    ),
    "store other encoder": (
        lambda c: _train_on_store(c, "--set", "data.image_encoder=effnet-lite0"),
        r"original__effnet-lite0.json: no training embeddings for view 'original' of encoder 'effnet-lite0'",
    ),
    "store other order": (
        _store_order,
        r"original__sim-features.json: key 'images' is not in the image set's sorted order",
    ),
    "store other dimension": (
        _store_dimension,
        r"final.safetensors: the model takes EEG of .* and 97-d embeddings; the test data has .* and 92-d",
    ),
}


# -- run folders, read by `evaluate` ---------------------------------------------------------------


def _weights_removed(c):
    run = c.run_copy()
    (run / "units/sub-01/final.safetensors").unlink()
    return ["evaluate", run]


def _weights_old_version(c):
    from safetensors.torch import load_file, save_file

    run = c.run_copy()
    path = run / "units/sub-01/final.safetensors"
    save_file(load_file(str(path)), str(path), metadata={"seeds": "[0]"})  # as written before the model config
    return ["evaluate", run]


def _run_config_yaml(text):
    def setup(c):
        run = c.run_copy()
        (run / "config.yaml").write_text(text)
        return ["evaluate", run]

    return setup


RUN_CASES = {
    "run weights missing": (_weights_removed, r"final.safetensors: missing; train the run first"),
    "run of an older version": (
        _weights_old_version,
        r"final.safetensors: no model config in the file \(made by an older version\)",
    ),
    "run config edited: unknown key": (
        lambda c: ["evaluate", c.run_copy(**{"  lr:": "  lrr:"})],
        r"unknown key\(s\) train.lrr; known keys",
    ),
    "run config edited: seeds": (
        lambda c: ["evaluate", c.run_copy(**{"seeds:\n- 0\n": "seeds:\n- 0\n- 1\n"})],
        r"final.safetensors: weights of seeds \[0\], the run's config says \[0, 1\]",
    ),
    "run config not YAML": (_run_config_yaml("data: [unclosed\n"), r"config.yaml: not valid YAML"),
    "not a run folder": (lambda c: ["evaluate", c.ds()], r"ds/config.yaml: missing; is .*ds a run folder"),
    "no folder at all": (lambda c: ["evaluate", c.tmp / "nowhere"], r"nowhere/config.yaml: missing; is .*a run folder"),
}


# -- configs and usage, refused before anything is read ----------------------------------------------


def _train_set(*sets):
    def setup(c):
        args = ["train", c.tmp / "run", "--preset", "demo"]
        for s in sets:
            args += ["--set", s]
        return args

    return setup


def _config_file(text):
    def setup(c):
        (c.tmp / "cfg").mkdir()
        path = c.tmp / "cfg/run.yaml"
        if text is not None:
            path.write_text(text)
        return ["train", c.tmp / "run", "--config", path]

    return setup


CONFIG_CASES = {
    "config unknown key": (_train_set("train.lrr=3"), r"unknown key\(s\) train.lrr; known keys: amp"),
    "config wrong type": (_train_set("train.epochs=many"), r"train.epochs: expected an integer, got 'many'"),
    "config negative lr": (_train_set("train.lr=-0.001"), r"train.lr: -0.001 is out of range; expected > 0"),
    "config batch 0": (_train_set("train.batch_size=0"), r"train.batch_size: 0 is out of range; expected >= 2"),
    "config adapter dropout 1": (
        _train_set("train.target.adapter_dropout=1.0"),
        r"train.target.adapter_dropout: 1.0 is out of range; expected >= 0 and < 1",
    ),
    "config encoder dropout 1.5": (
        _train_set("train.eeg_options={dropout: 1.5}"),
        r"train.eeg_options.dropout: 1.5 is out of range; expected >= 0 and < 1",
    ),
    "config val_fraction": (_train_set("data.val_fraction=1.5"), r"data.val_fraction: 1.5 is out of range"),
    "config no seeds": (_train_set("seeds=[]"), r"seeds: \[\]; expected one or more distinct seeds"),
    "config file absent": (_config_file(None), r"cfg/run.yaml: config file not found"),
    "config file unknown key": (_config_file("train:\n  epocs: 3\n"), r"unknown key\(s\) train.epocs"),
    "config file not a mapping": (_config_file("- 1\n- 2\n"), r"run.yaml: expected a mapping at the top level"),
}

USAGE_CASES = {
    "usage unknown option": (lambda c: ["train", c.tmp / "run", "--bogus"], r"No such option: --bogus"),
    "usage unknown command": (lambda c: ["trian"], r"No such command 'trian'"),
    "usage missing argument": (lambda c: ["train"], r"Missing argument 'out'.*eeg2image train --help"),
    "usage unknown preset": (
        lambda c: ["simulate", c.tmp / "x", "--preset", "huge"],
        r"unknown simulation preset 'huge'; known: demo, full, small, tiny",
    ),
    "usage --set without =": (
        lambda c: ["simulate", c.tmp / "x", "--set", "foo"],
        r"--set expects key=value, got 'foo'",
    ),
    "usage seeds not numbers": (
        lambda c: ["train", c.tmp / "run", "--seeds", "a"],
        r"--seeds: expected numbers like 1,2,3 or 0-9, got 'a'",
    ),
    "usage subjects range": (
        lambda c: ["sweep", c.tmp / "sw", "--subjects", "3-1"],
        r"--subjects: expected numbers like 1,2,3 or 0-9, got '3-1'",
    ),
    "usage info on no folder": (lambda c: ["info", c.tmp / "nowhere"], r"nowhere: no such folder"),
    "usage unknown reconstruction row": (
        lambda c: ["reconstruct", c.tmp / "a", "--out", c.tmp / "o", "--rows", "eeg,best"],
        r"unknown row 'best'.*eeg, low-level, shuffled, nearest, linear, ceiling",
    ),
    "usage decoder generator without its folder": (
        lambda c: ["reconstruct", c.tmp / "a", "--out", c.tmp / "o", "--generator", "decoder"],
        r"generator=decoder needs the decoder's folder",
    ),
    "usage init_strength 1": (
        lambda c: ["reconstruct", c.tmp / "a", "--out", c.tmp / "o", "--set", "generate.init_strength=1"],
        r"generate.init_strength: 1.* is out of range; expected >= 0 and < 1",
    ),
    "usage decoder config unknown key": (
        lambda c: ["train-decoder", c.ds(), c.tmp / "st", c.tmp / "d", "--set", "decoder.stepz=3"],
        r"unknown key\(s\) decoder.stepz",
    ),
    "usage decoder channels": (
        lambda c: ["train-decoder", c.ds(), c.tmp / "st", c.tmp / "d", "--set", "decoder.channels=[30]"],
        r"decoder.channels: 30 is not a multiple of 4",
    ),
    "usage embed the same encoder twice": (
        lambda c: ["embed", c.ds(), c.tmp / "st", "--encoder", "evnet", "--encoder", "evnet"],
        r"--encoder evnet --encoder evnet: expected distinct encoders",
    ),
    "usage decoder latents not a VAE": (
        lambda c: ["train-decoder", c.ds(), c.tmp / "st", c.tmp / "d", "--latents", "effnet-lite0"],
        r"latents 'effnet-lite0': expected a VAE's latent table, vae:<folder>",
    ),
}


def _drop_one_test_repetition(d, ev, n, sf):
    tid = next(i for i in np.unique(ev) if (ev == i).sum() == 12)
    keep = np.arange(len(ev)) != np.flatnonzero(ev == tid)[0]
    return d[keep], ev[keep], n, sf


def _missing_image(c):
    ds = mirror(c.meg, c.tmp / "meg")
    victim = sorted((ds / "THINGS" / "Images").rglob("*.jpg"))[0]
    victim.unlink()
    return ["preprocess", ds, c.tmp / "out", "--quiet"]


#: THINGS-MEG's official epochs and THINGS' images (``data.things_meg``, ``data.preprocess_meg``).
MEG_CASES = {
    "meg epochs other channels": (
        lambda c: c.meg_epochs(lambda d, ev, n, sf: (d[:, 1:], ev, n[1:], sf)),
        r"preprocessed_P1-epo.fif: key 'ch_names': 270 channels, expected THINGS-MEG's 271 CTF sensors",
    ),
    "meg epochs other rate": (
        lambda c: c.meg_epochs(lambda d, ev, n, sf: (d, ev, n, 250.0)),
        r"preprocessed_P1-epo.fif: key 'sfreq' is 250 Hz, expected 200",
    ),
    "meg epochs without catch-trial coding": (
        lambda c: c.meg_epochs(lambda d, ev, n, sf: (d[ev != 999999], ev[ev != 999999], n, sf)),
        r"preprocessed_P1-epo.fif: key 'events': no catch trial coded 999999",
    ),
    "meg test image with 11 repetitions": (
        lambda c: c.meg_epochs(_drop_one_test_repetition),
        r"preprocessed_P1-epo.fif: key 'events': image ids shown neither once .* nor 12 times .*\(11x\)",
    ),
    "meg events beyond image_paths.csv": (
        lambda c: c.meg_epochs(lambda d, ev, n, sf: (d, np.where(ev == ev.min(), 5000, ev), n, sf)),
        r"key 'events': ids \[5000\] exceed the \d+ rows of .*image_paths.csv",
    ),
    "meg image missing from THINGS": (
        _missing_image,
        r"images named by image_paths.csv are missing",
    ),
}

NEEDS_RUN = set(STORE_CASES) | set(RUN_CASES)
CASES = {
    **RAW_CASES,
    **SESSION_CASES,
    **GADGET_CASES,
    **PREPROCESSED_CASES,
    **IMAGE_CASES,
    **STORE_CASES,
    **RUN_CASES,
    **CONFIG_CASES,
    **USAGE_CASES,
    **MEG_CASES,
}


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30, len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_by_name_and_changes_nothing(name, request, tiny_dataset, tmp_path, capsys):
    setup, named = CASES[name]
    trained = request.getfixturevalue("trained") if name in NEEDS_RUN else None
    meg = request.getfixturevalue("tiny_meg") if name in MEG_CASES else None
    case = Case(tmp_path / "case", tiny_dataset, trained, meg)
    case.tmp.mkdir()
    args = setup(case)
    before = fingerprint(case.tmp)
    code, _, err = run_cli(capsys, *args)
    assert_refused(code, err, named, before, fingerprint(case.tmp))
    if hasattr(case, "after"):
        assert case.after(), "the pickle ran code or wrote a file"


def test_a_session_recorded_twice_is_named_and_its_work_kept_for_the_fix(tiny_dataset, tmp_path, capsys):
    """Two sessions with the same bytes (a copy slip) are found once every session is read: the one case that
    keeps what it made (the per-session work, which the corrected rerun reuses), and writes no output."""
    ds = mirror(tiny_dataset, tmp_path / "ds")
    src = ds / "raw_data/sub-01/ses-02/raw_eeg_test.npy"
    unlink_for_writing(src).symlink_to(tiny_dataset / "raw_data/sub-01/ses-01/raw_eeg_test.npy")
    code, _, err = run_cli(capsys, "preprocess", ds, tmp_path / "out", "--quiet")
    assert code == 2 and "Traceback" not in err
    assert "ses-02/raw_eeg_test.npy: the same bytes as" in err and "ses-01/raw_eeg_test.npy" in err
    assert not (tmp_path / "out/sub-01").exists()  # no output, only the hidden per-session work
    kept = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".eeg2image.lock"))
    assert kept == [".work-sub-01"]


def test_grey_palette_and_alpha_images_are_converted_not_refused(tmp_path):
    """THINGS images are RGB JPEGs; other 8-bit modes convert as every peer converts them (PIL .convert("RGB"))."""
    from PIL import Image

    from eeg2image.data.things_eeg2 import load_image

    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for mode in ("L", "P", "RGBA", "CMYK"):
        path = tmp_path / f"x_{mode}.png" if mode != "CMYK" else tmp_path / "x.jpg"
        im = Image.fromarray(rgb).convert(mode)
        im.save(path)
        out = np.asarray(load_image(path))
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, np.asarray(Image.open(path).convert("RGB")))
