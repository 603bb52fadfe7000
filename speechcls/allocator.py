"""glibc's malloc told to keep freed memory for reuse, so large CPU tensors stop costing page faults.

By default glibc serves a large allocation with a fresh mmap and hands freed heap memory back to the
kernel, so a batch's big temporaries (frames, spectra, activations) are new pages every time, which the
kernel faults in and zeroes one 4 KiB page at a time (docs/benchmarks.md has the page faults and the
time they cost). PyTorch's CPU tuning guide preloads jemalloc or tcmalloc for the same reason; mallopt
needs no extra library. `speechcls.callbacks.CPUTuning` calls it for CPU runs. Memory freed by a step
stays in the process for the next one: the resident size holds at its peak instead of shrinking between
steps.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Allocations up to this size come from the heap (glibc 2.36 takes 1 GiB); where a glibc refuses it,
# 32 MiB, the upper limit mallopt(3) documents for 64-bit systems, which still holds a batch of 64
# log-mels' largest temporary (8.4 MiB). glibc's own dynamic threshold never exceeds 32 MiB.
MMAP_THRESHOLDS = (2**30, 32 * 2**20)
# mallopt takes a C int: up to 2 GiB of free memory at the top of the heap stays in the process.
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> bool:
    """Serve allocations up to MMAP_THRESHOLDS from the heap and keep what is freed; whether glibc took both.

    Process-wide and inherited by forked DataLoader workers. A no-op (False) off Linux or without glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    # Both: with either one alone the log-mel above still took over 1,000 page faults a batch.
    taken = [
        any(mallopt(M_MMAP_THRESHOLD, threshold) for threshold in MMAP_THRESHOLDS),
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    ]
    return all(taken)
