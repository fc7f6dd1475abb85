"""Keep torch's large CPU buffers in the heap between model evaluations (glibc only).

glibc's malloc maps every block above its mmap threshold (at most 32 MB, grown dynamically) straight from
the kernel and unmaps it on free. A model evaluation on a few thousand atoms or more allocates and frees
per-edge tensors of that size many times, so each evaluation page-faults (and the kernel zero-fills) its
whole working set again: 2-3x the time on CPU (bench/throughput.py: 6,912 atoms, 1.76 s per stride against
0.75 s). Raising the threshold keeps those blocks in the heap for reuse, at up to ~2x the peak memory.
The setting is process-wide, like the environment variable GLIBC_TUNABLES it mirrors; ACTIONMD_MALLOC=default
leaves malloc alone.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30          # bytes: only blocks above 1 GB are still mapped on their own
TRIM_THRESHOLD = (1 << 31) - 1    # bytes: never hand the heap's free top back (mallopt takes an int)


def keep_large_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds once; True if they are raised (now or before), False where
    this is not glibc or ACTIONMD_MALLOC=default."""
    if os.environ.get("ACTIONMD_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other libcs: nothing to tune this way
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
