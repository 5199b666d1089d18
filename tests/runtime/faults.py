"""Real faults for runtime tests: a disk that fills up mid-write, a rank that stalls or dies."""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def full_disk(limit_bytes: int) -> Iterator[None]:
    """Make every write past `limit_bytes` in a file fail, as on a full disk.

    RLIMIT_FSIZE makes write() fail with EFBIG after a partial write; torch.save then raises the
    same RuntimeError it raises on ENOSPC and leaves a truncated file, which is the fault we need.
    """
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
