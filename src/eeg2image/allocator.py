"""Keep freed memory in the process on Linux (glibc), so large CPU tensors are not page-faulted in at every step.

glibc gives an allocation above its mmap threshold (at most 32 MB) its own fresh pages from the kernel and returns
them when it is freed, so every training step's large temporaries (a (1024, 25, 200) activation is 20 MB) start
as untouched pages that the kernel zero-fills on first write. On the 2-core CPU this was the largest single cost
after the matrix products: the keyed-dropout mask of such a tensor took 35-46 ms with fresh pages and 8 ms with
reused ones (benchmarks/profile_train.py). ``keep_freed_memory`` tells glibc to serve every allocation from its
heap and never to give freed memory back to the kernel (no trimming), as jemalloc or tcmalloc (Intel's advice
for PyTorch on CPUs) would, without a preloaded library. The process's resident memory then stays near its
peak instead of falling between steps. Nothing changes where glibc is not the C library (macOS, Windows, musl):
it returns False. Set ``EEG2IMAGE_KEEP_FREED_MEMORY=0`` to leave glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (idempotent); True when it is in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get("EEG2IMAGE_KEEP_FREED_MEMORY", "1") == "0":
        return _done
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return _done
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))  # -1: never trim the heap
    return _done


#: When set (to a file path), the console script writes the process's peak CUDA memory there as it exits.
PEAK_CUDA_ENV = "EEG2IMAGE_PEAK_CUDA_FILE"


def write_peak_cuda_memory(path: str | os.PathLike) -> float | None:
    """Write ``{"peak_cuda_gib": G}`` (the most any device's caching allocator held, ``max_memory_reserved``) to
    ``path`` when this process used CUDA, and return G; None, and nothing written, when it did not. What
    ``benchmarks/rehearse.py`` reads per stage, since ``wait4`` measures host memory only."""
    import json

    torch = sys.modules.get("torch")  # never imported here: a process that did not import torch used no GPU
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    peak = max(torch.cuda.max_memory_reserved(d) for d in range(torch.cuda.device_count())) / 2**30
    with open(path, "w") as f:
        json.dump({"peak_cuda_gib": peak}, f)
    return peak
