"""Restricted unpickling, atomic writes, configs."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field

import numpy as np
import pytest

from eeg2image.config import ConfigError, load_config, save_config, to_dict
from eeg2image.io import DataFormatError, UnsafePickleError, atomic_dir, atomic_path, load_pickled


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "raw_eeg_training.npy"
    with open(evil, "wb") as f:
        pickle.dump({"raw_eeg_data": _RunsCode(marker)}, f, protocol=4)
    with pytest.raises(
        UnsafePickleError, match=r"raw_eeg_training.npy: refused to load: the pickle asks for '(posix|os)\.system'"
    ):
        load_pickled(evil)
    assert not marker.exists()


def test_restricted_unpickler_refuses_code_inside_npy_object_array(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {"x": _RunsCode(marker)}
    np.save(evil, arr, allow_pickle=True)
    with pytest.raises(UnsafePickleError, match="evil.npy"):
        load_pickled(evil)
    assert not marker.exists()


def test_load_pickled_reads_both_real_containers(tmp_path):
    d = {"preprocessed_eeg_data": np.arange(6.0).reshape(1, 1, 2, 3), "ch_names": ["a", "b"], "times": np.zeros(3)}
    np.save(tmp_path / "a.npy", d, allow_pickle=True)  # official: np.save(dict)
    with open(tmp_path / "b.npy", "wb") as f:  # NICE/ATM: pickle.dump(dict) under .npy
        pickle.dump(d, f, protocol=4)
    for name in ("a.npy", "b.npy"):
        got = load_pickled(tmp_path / name)
        assert got["ch_names"] == ["a", "b"]
        np.testing.assert_array_equal(got["preprocessed_eeg_data"], d["preprocessed_eeg_data"])


def test_truncated_and_garbage_files_are_named(tmp_path):
    d = {"raw_eeg_data": np.random.default_rng(0).normal(size=(4, 1000))}
    np.save(tmp_path / "full.npy", d, allow_pickle=True)
    blob = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFormatError, match=r"cut.npy.*truncated or corrupt"):
        load_pickled(tmp_path / "cut.npy")
    (tmp_path / "junk.npy").write_bytes(b"hello world")
    with pytest.raises(DataFormatError, match=r"junk.npy: not a .npy file or a pickle"):
        load_pickled(tmp_path / "junk.npy")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    final = tmp_path / "sub-01"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "a").write_text("1")
            raise RuntimeError("killed")
    assert not final.exists()
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("2")
    assert (final / "a").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01"]


@dataclass
class _Inner:
    k: int = 1


@dataclass
class _Cfg:
    name: str = "x"
    rate: float = 1.0
    sessions: list[int] = field(default_factory=lambda: [1, 2])
    window: tuple[float | None, float] | None = (None, 0.0)
    inner: _Inner = field(default_factory=_Inner)


def test_config_yaml_roundtrip_and_errors(tmp_path):
    cfg = _Cfg(name="y", rate=250, sessions=[3], window=(-0.2, 0.0), inner=_Inner(k=5))
    save_config(cfg, tmp_path / "c.yaml")
    back = load_config(_Cfg, tmp_path / "c.yaml")
    assert back == cfg and isinstance(back.rate, float)
    assert to_dict(load_config(_Cfg, {"window": None}))["window"] is None
    with pytest.raises(ConfigError, match="unknown key.*ratee"):
        load_config(_Cfg, {"ratee": 3})
    with pytest.raises(ConfigError, match="sessions\\[0\\].*integer"):
        load_config(_Cfg, {"sessions": ["a"]})
    with pytest.raises(ConfigError, match=r"unknown key.*inner\.j"):
        load_config(_Cfg, {"inner": {"j": 1}})


def test_config_reads_exponent_floats_that_yaml_leaves_as_strings(tmp_path):
    (tmp_path / "c.yaml").write_text("rate: 1e-3\n")  # PyYAML (YAML 1.1) gives the string '1e-3'
    assert load_config(_Cfg, tmp_path / "c.yaml").rate == 0.001
    with pytest.raises(ConfigError, match="rate: expected a number, got 'fast'"):
        load_config(_Cfg, {"rate": "fast"})


def test_one_input_check_and_honest_error_types(tmp_path):
    from eeg2image.io import Eeg2ImageError, MissingDataError, check_option

    assert check_option("view", "blur", ["original", "blur"]) == "blur"
    with pytest.raises(ConfigError, match=r"^train\.x: unknown encoder 'vit'; known: ved, nice$"):
        check_option("encoder", "vit", ["ved", "nice"], where="train.x")
    assert issubclass(ConfigError, Eeg2ImageError) and not issubclass(ConfigError, DataFormatError)
    with pytest.raises(MissingDataError, match="config file not found"):  # an absent file is missing data
        load_config(_Cfg, tmp_path / "absent.yaml")


def test_torch_files_with_tensors_are_read_and_with_code_refused(tmp_path):
    """A ``.pt`` of tensors goes to ``torch.load(weights_only=True)`` (our unpickler used to refuse the tensor
    rebuild global before that path could run); one that also holds a code gadget is refused by name."""
    import torch

    from eeg2image.data.things_eeg2 import load_torch_file

    path = tmp_path / "train.pt"
    torch.save({"eeg": torch.arange(6.0).reshape(2, 3), "label": np.arange(2), "session": [0, 1]}, path)
    obj = load_torch_file(path)
    assert torch.equal(obj["eeg"], torch.arange(6.0).reshape(2, 3)) and obj["session"] == [0, 1]
    marker = tmp_path / "pwned"
    torch.save({"eeg": torch.zeros(2), "x": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafePickleError, match=r"evil.pt: refused to load: unsupported GLOBAL (posix|os)\.system"):
        load_torch_file(tmp_path / "evil.pt")
    assert not marker.exists()


def test_safetensors_are_byte_stable(tmp_path):
    """The same tensors and metadata give the same bytes (safetensors keeps metadata in a hash map, whose order
    changes from one save to the next), and the file reads back."""
    import torch
    from safetensors import safe_open

    from eeg2image.io import save_safetensors

    tensors = {"b": torch.zeros(3), "a": torch.arange(4.0).reshape(2, 2)}
    meta = {k: str(i) for i, k in enumerate("zyxwvutsrq")}
    blobs = set()
    for i in range(4):
        save_safetensors(tmp_path / f"{i}.safetensors", tensors, meta)
        blobs.add((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(blobs) == 1
    with safe_open(str(tmp_path / "0.safetensors"), "pt") as f:
        assert f.metadata() == meta and torch.equal(f.get_tensor("a"), tensors["a"])
