"""Keep torch's large CPU buffers in the heap between model evaluations (glibc only).

glibc's malloc maps every block above its mmap threshold (at most 32 MB, grown dynamically) straight from
the kernel and unmaps it on free. A model evaluation on a few thousand atoms or more allocates and frees
per-edge tensors of that size many times, so each evaluation page-faults (and the kernel zero-fills) its
whole working set again: 2-3x the time on CPU. Raising the threshold keeps those blocks in the heap for
reuse, at about twice the peak memory (bench/throughput.py, 27,436 atoms: 7.83 -> 2.76 s per stride,
2.8 -> 5.9 GB; at 108,000 atoms the heap outgrew 24 GB where 8.7 GB had done).

ACTIONMD_MALLOC chooses: ``auto`` (default) keeps the buffers for up to AUTO_MAX_ATOMS atoms per process
when its kept heap (~KEPT_BYTES_PER_ATOM per atom) fits in MEMORY_SHARE of the memory it may use: the
machine's, or a cgroup's limit such as a batch job's --mem (fix actionmd counts every rank on the node).
``keep`` always, ``default`` never. The setting is process-wide, like the GLIBC_TUNABLES it mirrors.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30          # bytes: only blocks above 1 GB are still mapped on their own
TRIM_THRESHOLD = (1 << 31) - 1    # bytes: never hand the heap's free top back (mallopt takes an int)
AUTO_MAX_ATOMS = 30_000           # ~6 GB of heap at the shipped models' size (2x the unkept peak)
KEPT_BYTES_PER_ATOM = 250_000     # kept peak: ~0.2 MB per atom (LJ model, 27,436-55,296 atoms), with margin
MEMORY_SHARE = 0.5                # of the memory a process may use that its kept heap may take
CHOICES = ("auto", "keep", "default")
GLIBC_MMAP_THRESHOLD = 32 << 20  # glibc's own threshold, once grown (its dynamic maximum on 64-bit)
_raised = False                  # this process raised the thresholds


def malloc_choice() -> str:
    choice = os.environ.get("ACTIONMD_MALLOC", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"ACTIONMD_MALLOC must be one of {', '.join(CHOICES)} (auto: keep torch's large buffers "
                         f"in the heap for up to {AUTO_MAX_ATOMS} atoms), got {choice!r}")
    return choice


def keep_large_buffers(n_atoms: int) -> bool:
    """Raise glibc's mmap and trim thresholds for a process that now evaluates ``n_atoms`` atoms, as
    ACTIONMD_MALLOC says; True if they are raised. A process that raised them for a small system and now
    meets a large one (auto) gets glibc's grown defaults back, so that new large buffers are mapped again."""
    global _raised
    choice = malloc_choice()
    mallopt = _mallopt() if sys.platform.startswith("linux") else None
    if mallopt is None or choice == "default":
        return False
    if choice == "auto" and (n_atoms > AUTO_MAX_ATOMS or not _kept_heap_fits(n_atoms)):
        if _raised:
            mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD)
            mallopt(M_TRIM_THRESHOLD, 2 * GLIBC_MMAP_THRESHOLD)
            _raised = False
        return False
    _raised = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _raised


def _kept_heap_fits(n_atoms: int) -> bool:
    memory = available_memory()
    return memory == 0 or n_atoms * KEPT_BYTES_PER_ATOM <= MEMORY_SHARE * memory


def available_memory(proc_cgroup: str = "/proc/self/cgroup", cgroup_root: str = "/sys/fs/cgroup") -> int:
    """Bytes this process may use: the machine's memory, or less where a cgroup limits it (a batch job's
    --mem on a large node), the smallest limit on the way to the root; 0 where unknown."""
    limits = [physical_memory()]
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and controllers == "":
            base, limit_file = Path(cgroup_root), "memory.max"                              # cgroup v2
        elif "memory" in controllers.split(","):
            base, limit_file = Path(cgroup_root) / "memory", "memory.limit_in_bytes"        # cgroup v1
        else:
            continue
        parts = [part for part in path.split("/") if part]
        for depth in range(len(parts), -1, -1):
            try:
                text = (base.joinpath(*parts[:depth]) / limit_file).read_text().strip()
            except OSError:
                continue
            if text.isdigit():  # "max" (v2) means no limit
                limits.append(int(text))
    known = [limit for limit in limits if limit > 0]
    return min(known) if known else 0


def physical_memory() -> int:
    """The machine's memory in bytes, 0 where unknown."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


@functools.lru_cache(maxsize=None)
def _mallopt():
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other libcs: nothing to tune this way
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
