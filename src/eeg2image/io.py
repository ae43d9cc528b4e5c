"""Safe reading and atomic writing of files, and the manifests that say what made them.

Everything a user downloaded goes through :func:`load_pickled` (a restricted unpickler that builds only
numpy arrays and plain containers); everything we write goes through an atomic path that is renamed
into place only once complete, so a killed run never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BusyError",
    "ConfigError",
    "DataFormatError",
    "Eeg2ImageError",
    "MissingDataError",
    "UnsafePickleError",
    "atomic_dir",
    "atomic_path",
    "check_option",
    "check_range",
    "fault_point",
    "file_sha256",
    "folder_lock",
    "load_pickled",
    "package_versions",
    "read_json",
    "save_safetensors",
    "write_json",
    "write_manifest",
]


class Eeg2ImageError(Exception):
    """Base class of the errors we raise on purpose: the CLI prints their message, not a traceback."""


class DataFormatError(Eeg2ImageError, ValueError):
    """A file exists but does not hold what it should (wrong key, shape, dtype, NaN, truncated...)."""


class UnsafePickleError(DataFormatError):
    """A pickle asked for something other than numpy arrays and plain containers."""


class MissingDataError(Eeg2ImageError, FileNotFoundError):
    """A file or folder the step needs is not there."""


class ConfigError(Eeg2ImageError, ValueError):
    """A name, key or value the user chose does not exist or does not fit (a preset, an encoder, a config key)."""


class BusyError(Eeg2ImageError):
    """Another eeg2image process is writing the folder this one would write (or read while it changes)."""


def check_option(name: str, value: Any, allowed: Any, *, where: str | None = None) -> Any:
    """``value`` if it is one of ``allowed``, else a :class:`ConfigError` of one shape everywhere:
    ``[where: ]unknown <name> <value>; known: <allowed>`` (after MNE's ``_check_option``)."""
    allowed = list(allowed)
    if value in allowed:
        return value
    prefix = f"{where}: " if where else ""
    known = ", ".join(str(a) for a in allowed) or "none"
    raise ConfigError(f"{prefix}unknown {name} {value!r}; known: {known}")


def check_range(
    where: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` if it lies in the interval, else a :class:`ConfigError` naming the key and the interval:
    ``train.lr: 0.0 is out of range; expected > 0``."""
    bad = (
        (low is not None and (value <= low if low_open else value < low))
        or (high is not None and (value >= high if high_open else value > high))
        or value != value  # NaN
    )
    if bad:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"{'<' if high_open else '<='} {high:g}")
        raise ConfigError(f"{where}: {value!r} is out of range; expected {' and '.join(parts)}")
    return value


class _TensorStorageFound(UnsafePickleError):
    """A torch.save pickle refers to tensor storages (persistent ids): torch.load must read it."""


# --------------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------------

# (module, name) pairs a THINGS-EEG2 pickle legitimately needs: numpy array reconstruction and dtypes.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    # pickle protocol 2 stores bytes as _codecs.encode(str, "latin1") (torch.save's default protocol)
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: Path, torch_file: bool = False):
        super().__init__(file)
        self._source = source
        self._torch_file = torch_file

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        # numpy dtype classes (numpy >= 1.25 may pickle dtypes through numpy.dtypes.*DType)
        if module == "numpy.dtypes" and name.endswith("DType"):
            return super().find_class(module, name)
        if self._torch_file and (module == "torch" or module.startswith("torch.")):
            # tensors (torch._utils._rebuild_tensor_v2, torch.FloatStorage, ...): torch.load(weights_only=True),
            # itself an allowlist, reads them; we never build them here
            raise _TensorStorageFound(f"{self._source}: the pickle holds torch objects ({module}.{name}).")
        raise UnsafePickleError(
            f"{self._source}: refused to load: the pickle asks for '{module}.{name}', which could run "
            "code. Only numpy arrays and plain containers (dict, list, str, numbers) are accepted. "
            "If you trust this file, convert it yourself to plain arrays first."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise _TensorStorageFound(f"{self._source}: the pickle refers to stored tensors ({pid!r}).")


def _restricted_load(stream: Any, source: Path, torch_file: bool = False) -> Any:
    try:
        return _RestrictedUnpickler(stream, source, torch_file).load()
    except UnsafePickleError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataFormatError(
            f"{source}: the file is truncated or corrupt ({type(exc).__name__}: {exc}). "
            "Download it again; the expected size is in the dataset documentation."
        ) from exc


def load_pickled(path: str | Path) -> Any:
    """Load a file THINGS-EEG2 users have: an ``np.save``'d object (0-d object array) or a raw pickle.

    Never executes code from the file: only numpy arrays and plain containers can be built. A 0-d
    object array is unwrapped (``.item()``), so both the official files (``np.save(dict)``) and the
    NICE/ATM files (``pickle.dump(dict)`` under a ``.npy`` name) return the dict.
    A plain numeric ``.npy`` (no pickle inside) is returned memory-mapped.
    """
    path = Path(path)
    if path.is_dir():
        raise DataFormatError(f"{path}: a folder where a file belongs; expected a .npy file or a pickle.")
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file.")
    with open(path, "rb") as f:
        head = f.read(6)
        f.seek(0)
        if head == b"\x93NUMPY":
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    _, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    _, _, dtype = np.lib.format.read_array_header_2_0(f)
            except ValueError as exc:
                raise DataFormatError(f"{path}: corrupt .npy header ({exc}).") from exc
            if not dtype.hasobject:
                f.close()
                return _open_plain_npy(path)
            obj = _restricted_load(f, path)
            if not isinstance(obj, np.ndarray):
                raise DataFormatError(f"{path}: the .npy payload is a {type(obj).__name__}, not an array.")
            return obj.item() if obj.shape == () else obj
        if head[:1] == b"\x80":
            obj = _restricted_load(f, path)
            if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
                return obj.item()
            return obj
    if not head:
        raise DataFormatError(f"{path}: the file is empty.")
    raise DataFormatError(
        f"{path}: not a .npy file or a pickle (first bytes {head!r}); expected the THINGS-EEG2 format."
    )


def _open_plain_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # numpy raises ValueError for truncated data
        raise DataFormatError(f"{path}: truncated or corrupt .npy file ({exc}).") from exc


# --------------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------------


def _tmp_sibling(final: Path) -> Path:
    _sweep_stale(final)
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")


def _sweep_stale(final: Path) -> None:
    """Remove the temporary siblings of ``final`` that a killed process left (its pid no longer runs)."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
            os.kill(pid, 0)
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        except PermissionError:  # a live process of another user
            continue


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it is renamed to ``final`` in one step.

    On any exception the temporary file is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(final)
    try:
        yield tmp
        if tmp.exists():
            _fsync_file(tmp)
            fault_point("before-rename", final.name)
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; on success it replaces ``final`` whole."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if final.exists():
            old = _tmp_sibling(final.with_name(final.name + ".old"))
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc}).") from exc


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple | set):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------------------------------
# Hashes and manifests
# --------------------------------------------------------------------------------------------------


def file_sha256(path: str | Path, chunk: int = 1 << 23) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def json_sha256(obj: Any) -> str:
    """Stable hash of a JSON-able object (a config, a list of inputs)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


_VERSIONED = ("numpy", "scipy", "mne", "scikit-learn", "torch", "open_clip_torch", "pillow")


def package_versions(names: tuple[str, ...] = _VERSIONED) -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("eeg2image", *names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


REHEARSAL_MARKER = "REHEARSAL_RANDOM_WEIGHTS.txt"
REHEARSAL_LABEL = (
    "rehearsal: random weights (made under a folder marked by benchmarks/rehearse.py: real architectures, random "
    "weights, simulated data; these numbers are not results)"
)


def rehearsal_label(path: str | Path) -> str | None:
    """``REHEARSAL_LABEL`` when ``path`` or a folder above it carries the rehearsal's marker file, else None: every
    report, table and manifest written there says so beside its numbers."""
    p = Path(path).absolute()
    return REHEARSAL_LABEL if any((d / REHEARSAL_MARKER).is_file() for d in (p, *p.parents)) else None


def write_manifest(
    folder: str | Path,
    *,
    stage: str,
    config: Any,
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``manifest.json``: what produced the folder, from which inputs and with which config."""
    manifest = {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "config_sha256": json_sha256(config),
        "inputs": inputs,
        "inputs_sha256": json_sha256(inputs),
        "outputs": outputs,
        "versions": package_versions(),
        "command": " ".join(sys.argv),
    }
    if extra:
        manifest.update(extra)
    if label := rehearsal_label(folder):
        manifest["rehearsal"] = label
    write_json(Path(folder) / "manifest.json", manifest)
    return manifest


# --------------------------------------------------------------------------------------------------
# Byte-stable safetensors
# --------------------------------------------------------------------------------------------------


def canonical_safetensors(blob: bytes) -> bytes:
    """The same safetensors file with its header written in one fixed order (metadata keys sorted).

    The safetensors writer keeps ``__metadata__`` in a hash map, so two saves of the same tensors and metadata
    differ in their bytes; this makes them equal, so a checksum can confirm that a run was reproduced. Tensor
    offsets are relative to the data section and do not change."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered: dict[str, Any] = {}
    if meta:
        ordered["__metadata__"] = dict(sorted(meta.items()))
    ordered.update(sorted(header.items()))
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section stays 8-byte aligned
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


def save_safetensors(path: str | Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Write torch tensors or numpy arrays (one kind per call) to ``path`` atomically, byte-stable (same
    tensors and metadata -> same bytes)."""
    first = next(iter(tensors.values()), None)
    if isinstance(first, np.ndarray):
        from safetensors.numpy import save
    else:
        from safetensors.torch import save
    blob = canonical_safetensors(save(tensors, metadata=metadata))
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
    fault_point("after-write", Path(path).name)


# --------------------------------------------------------------------------------------------------
# Locks: one writer per output folder
# --------------------------------------------------------------------------------------------------

LOCK_NAME = ".eeg2image.lock"


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str, part: str = "") -> Iterator[None]:
    """Hold ``folder``'s lock while ``what`` (``train``, ``embed``, ``evaluate``) works in it; a second eeg2image
    process that asks for it is refused at once with a :class:`BusyError` naming the folder and its holder.

    An OS-level lock (``filelock``): the kernel releases it when the holder dies, even by ``kill -9``, so a
    killed run never leaves a folder locked. ``part`` locks one part of a shared folder (``preprocess`` locks one
    subject of its output folder, so subjects can run side by side)."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{LOCK_NAME}-{part}" if part else LOCK_NAME
    lock = FileLock(folder / name, timeout=0, is_singleton=False)
    info = folder / (name + ".json")
    try:
        lock.acquire()
    except Timeout:
        holder = ""
        with contextlib.suppress(Exception):
            h = json.loads(info.read_text())
            holder = f" (held by pid {h['pid']}: eeg2image {h['what']}, since {h['since']})"
        raise BusyError(
            f"{folder / part if part else folder}: in use by another eeg2image process{holder}; {what} waits for "
            "nothing and changed nothing: run it again when that process has finished"
        ) from None
    try:
        write_json(info, {"pid": os.getpid(), "what": what, "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
        yield
    finally:
        with contextlib.suppress(OSError):
            info.unlink()
        lock.release()


# --------------------------------------------------------------------------------------------------
# Fault injection (tests only): EEG2IMAGE_FAULT="<point>[@<name>]:<n>[:stop]"
# --------------------------------------------------------------------------------------------------

_FAULT_COUNTS: dict[str, int] = {}


def fault_point(point: str, name: str = "") -> None:
    """A place where the fault tests kill this process (``kill -9`` of itself, the n-th time it is reached) or
    stop it (``SIGSTOP``, so a second process can be tried against its lock). Does nothing unless the
    ``EEG2IMAGE_FAULT`` variable names this point, e.g. ``train-step:5``, ``after-write@state.safetensors:2``
    or ``train-step:1:stop``."""
    spec = os.environ.get("EEG2IMAGE_FAULT")
    if not spec:
        return
    target, _, rest = spec.partition(":")
    count, _, action = rest.partition(":")
    if target not in (point, f"{point}@{name}"):
        return
    _FAULT_COUNTS[target] = _FAULT_COUNTS.get(target, 0) + 1
    if _FAULT_COUNTS[target] == int(count or 1):
        import signal

        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)
