"""Keep freed CPU memory in the process so that large tensors do not page-fault every round.

glibc serves every allocation above its mmap threshold (128 KiB, growing to at most 32 MiB)
with a fresh ``mmap`` and returns it to the system on ``free``. An engine round allocates and
frees tensors of the whole model matrix (``[n, d]``: 38 MB for 1,000 nodes of 9,550 float32
parameters) several times, and touching a fresh mapping costs a page fault per 4 KiB page: on
this project's CPU machine a new 38 MB tensor costs ~14 ms to fill against ~1.3 ms for reused
memory, and ``W @ X`` 39 ms against 12 ms (``docs/BENCHMARKS.md``). PyTorch's CPU tuning guide
recommends jemalloc or tcmalloc for the same reason; :func:`tune_malloc` gets the same effect
from glibc itself with ``mallopt``: no ``mmap`` below 1 GiB and no trimming of the heap, so
freed blocks are reused.

The cost: the process keeps its peak heap instead of handing freed memory back, which a
benchmark run (measured at its peak anyway) does not mind. It is applied by the CLI and the
runner's worker processes; set ``FLARENA_MALLOC=default`` to leave glibc's behaviour alone. On
a C library other than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DONE = False


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True if they were set."""
    global _DONE
    if _DONE:
        return True
    if os.environ.get("FLARENA_MALLOC", "") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    _DONE = ok
    log.debug("glibc mallopt tuning %s", "applied" if ok else "refused")
    return ok
