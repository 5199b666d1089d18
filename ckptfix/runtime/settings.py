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

DEFAULT_BARRIER_TIMEOUT = 120.0
DEFAULT_FINAL_TIMEOUT = 180.0

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
