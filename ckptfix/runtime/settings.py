"""Run-time settings: the code's arguments, overridden by environment variables.

Operators on a slow file system must be able to lengthen a timeout without a code change, so the
environment wins over the value written in the training script.
"""

from __future__ import annotations

import math
import os
from datetime import timedelta
from typing import Literal

BARRIER_TIMEOUT_ENV = "CKPTFIX_BARRIER_TIMEOUT"
FINAL_TIMEOUT_ENV = "CKPTFIX_FINAL_TIMEOUT"
SAVE_ERROR_POLICY_ENV = "CKPTFIX_ON_SAVE_ERROR"
CEILING_ENV = "CKPTFIX_BARRIER_CEILING"
PROGRESS_INTERVAL_ENV = "CKPTFIX_PROGRESS_INTERVAL"

DEFAULT_BARRIER_TIMEOUT = 120.0
DEFAULT_FINAL_TIMEOUT = 180.0
# The longest any barrier waits for a rank that keeps making progress or stays alive and busy. Sized
# for very large checkpoints on slow shared storage: 4 TB at 200 MB/s is 5.6 h. A stalled writer or a
# dead rank fails long before; this only bounds a writer that trickles forever.
DEFAULT_CEILING = 6 * 3600.0
# How often the main process publishes its heartbeat and write progress in the store, and how often a
# waiting rank looks at it (one store write per interval by the writer, whatever the world size).
DEFAULT_PROGRESS_INTERVAL = 1.0

SaveErrorPolicy = Literal["continue", "raise"]
SAVE_ERROR_POLICIES: tuple[SaveErrorPolicy, ...] = ("continue", "raise")


def to_seconds(timeout: float | timedelta, *, what: str = "timeout") -> float:
    """Seconds from a number or a timedelta; rejects what would make a barrier wait forever or never."""
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be seconds (int or float) or a datetime.timedelta, got {timeout!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{what} must be a positive, finite number of seconds, got {timeout!r}")
    return float(seconds)


def _seconds_from_env(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return to_seconds(float(raw), what=name)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a positive number of seconds") from None


def barrier_timeout(timeout: float | timedelta) -> float:
    """The checkpoint barrier's timeout in seconds: CKPTFIX_BARRIER_TIMEOUT if set, else `timeout`."""
    from_env = _seconds_from_env(BARRIER_TIMEOUT_ENV)
    return from_env if from_env is not None else to_seconds(timeout)


def final_timeout(timeout: float | timedelta) -> float:
    """The final sync's timeout in seconds: CKPTFIX_FINAL_TIMEOUT if set, else `timeout`."""
    from_env = _seconds_from_env(FINAL_TIMEOUT_ENV)
    return from_env if from_env is not None else to_seconds(timeout)


def save_error_policy() -> SaveErrorPolicy:
    """What every rank does when the writer's save failed: `continue` (default) or `raise`."""
    raw = os.environ.get(SAVE_ERROR_POLICY_ENV, "").strip().lower() or "continue"
    for policy in SAVE_ERROR_POLICIES:
        if raw == policy:
            return policy
    raise ValueError(
        f"environment variable {SAVE_ERROR_POLICY_ENV}={raw!r} must be one of "
        f"{', '.join(SAVE_ERROR_POLICIES)}"
    )


def ceiling() -> float:
    """The hard ceiling on any barrier's wait, in seconds: CKPTFIX_BARRIER_CEILING if set, else 6 h.

    A barrier waits past its stall timeout only while the late rank shows progress or life; this
    bounds that, so a writer that trickles a byte a minute still fails eventually.
    """
    from_env = _seconds_from_env(CEILING_ENV)
    return from_env if from_env is not None else DEFAULT_CEILING


def progress_interval() -> float:
    """Seconds between the writer's progress publications; 0 (CKPTFIX_PROGRESS_INTERVAL=0) turns them off.

    Off, barriers are fixed deadlines again (the stall timeout counts from arrival), which is what
    an operator may want when the store is overloaded or absent.
    """
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_INTERVAL
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {PROGRESS_INTERVAL_ENV}={raw!r} is not a number of seconds"
        ) from None
    if seconds == 0:
        return 0.0
    return to_seconds(seconds, what=PROGRESS_INTERVAL_ENV)
