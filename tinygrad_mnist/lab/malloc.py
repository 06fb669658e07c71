"""pin_malloc_thresholds: one process-wide setting of glibc's malloc, which a program (not an
import) chooses; examples/mnist_cnn.py calls it first, for the reason and the time measured in
docs/performance.md.

glibc's malloc serves a request of at least M_MMAP_THRESHOLD (128 KiB at start) with a fresh
mmap, and returns the top of its heap to the system when more than M_TRIM_THRESHOLD is free
there; both move with the sizes a process frees. So what a run did before (evaluating in chunks)
decides whether each training step's temporaries are handed back and faulted in again.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, from glibc's malloc.h
PINNED_MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for the moving threshold: arrays below it stay in the heap
PINNED_TRIM_THRESHOLD = 64 << 20  # keep up to 64 MiB of freed heap instead of returning and refaulting it


def pin_malloc_thresholds():
    """Fix glibc's malloc thresholds where a warm process ends up, so a step's speed no longer
    depends on what the process did before. Both must be set: setting one turns off glibc's moving
    of both, and the other stays at 128 KiB. Returns False where there is no glibc (then nothing
    changes)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, PINNED_MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, PINNED_TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
