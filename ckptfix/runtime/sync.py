"""Checkpoint barriers whose timeouts fire, and agreement on the writer's outcome.

Why not `dist.barrier()`: on nccl/xccl it blocks inside the device runtime, and the guide's
`dist.barrier(timeout=120)` raises TypeError (the keyword takes a timedelta, and only since torch
2.12), which its try/except then hides. Here every barrier is an `all_reduce` of two small integers
on a gloo group with a per-call timeout: gloo honours it on every waiting rank, also when rank 0
(usually the slow writer) is the late one. The integers carry whether any rank's save failed and
rank 0's error policy, so the writer's failure reaches every rank with the barrier itself.

Each rank also marks its arrival in the process group's store before waiting; on a timeout the ranks
whose mark is missing are the late or dead ones, and every rank's error names them.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType
from typing import Any

from ckptfix.runtime import settings
from ckptfix.runtime.backend import choose_sync_path
from ckptfix.runtime.errors import CheckpointSaveError, CheckpointSyncError
from ckptfix.runtime.logs import get_logger
from ckptfix.runtime.ranks import distributed

_KEY_PREFIX = "ckptfix"
# Past this many ranks, naming the late ones would cost too many store round trips on a timeout.
_MAX_RANKS_TO_NAME = 4096


@dataclass(frozen=True)
class SaveFailure:
    """A failed write, as every rank learns it."""

    rank: int
    path: str
    reason: str


@dataclass
class _SyncState:
    """Per-process-group state: a new default group (destroy + init) starts afresh."""

    world: Any = None
    side_group: Any = None
    sequence: int = 0
    broken: str | None = None
    pending: list[SaveFailure] = field(default_factory=list)


_state = _SyncState()


def _forget_process_groups() -> None:
    """Drop our references to process groups before the interpreter shuts down.

    A process group that outlives destroy_process_group() only through a Python reference is
    destroyed during interpreter finalization, where gloo's destructor can abort the process
    ("terminate called without an active exception"; seen here under torchrun with plain torch
    too). Releasing them in an atexit hook destroys them while the interpreter is still whole.
    """
    global _state
    _state = _SyncState()


def _state_for(dist: ModuleType | None) -> _SyncState:
    global _state
    world = dist.group.WORLD if dist is not None else None
    if _state.world is not world:
        if world is not None and _state.world is None:
            atexit.unregister(_forget_process_groups)
            atexit.register(_forget_process_groups)
        _state = _SyncState(world=world, pending=_state.pending if world is None else [])
    return _state


def _store(dist: ModuleType) -> Any:
    """The default group's key-value store, or None where this torch does not expose it."""
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # private API: absence only costs the naming of late ranks
        return None


def init_sync(timeout: float | timedelta | None = None) -> None:
    """Create the gloo side group that checkpoint barriers use. Call on every rank after init_process_group.

    Creating a group is itself a collective, so it must happen where every rank passes; doing it
    lazily inside the first barrier would make that barrier's timeout depend on the group creation.
    `timeout` is the group's own timeout; by default the larger of the barrier and final timeouts,
    which bounds a barrier even where a torch's gloo ignores per-operation timeouts (older
    releases create their all_reduce work without one). Idempotent; a no-op when not distributed.
    """
    dist = distributed()
    if dist is None or dist.get_world_size() == 1:
        return
    state = _state_for(dist)
    if state.side_group is not None:
        return
    if not dist.is_gloo_available():
        get_logger().warning(
            "gloo is not available in this torch build; checkpoint barriers fall back "
            "to the default group's barrier"
        )
        return
    if timeout is None:
        seconds = max(
            settings.barrier_timeout(settings.DEFAULT_BARRIER_TIMEOUT),
            settings.final_timeout(settings.DEFAULT_FINAL_TIMEOUT),
        )
    else:
        seconds = settings.to_seconds(timeout)
    state.side_group = dist.new_group(backend="gloo", timeout=timedelta(seconds=seconds))


def report_save_failure(path: str | os.PathLike[str], exc: BaseException) -> None:
    """Record and log that this rank failed to write `path`; use it in the `except` around a save.

    With several ranks, the failure travels to every rank with the next checkpoint barrier, where
    the policy (CKPTFIX_ON_SAVE_ERROR, decided by rank 0) is applied on all of them together.
    Running alone, the policy applies at once.
    """
    shown = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
    reason = f"{type(exc).__name__}: {exc}"
    get_logger().error("Failed to save checkpoint %s: %s", shown, reason, exc_info=exc)
    dist = distributed()
    failure = SaveFailure(rank=dist.get_rank() if dist is not None else 0, path=shown, reason=reason)
    if dist is None or dist.get_world_size() == 1:
        _settle([failure], settings.save_error_policy())
    else:
        _state_for(dist).pending.append(failure)


def checkpoint_barrier(
    timeout: float | timedelta = settings.DEFAULT_BARRIER_TIMEOUT, name: str = "checkpoint"
) -> None:
    """Wait until every rank is here, or raise CheckpointSyncError on every waiting rank after `timeout`.

    `timeout` is seconds or a timedelta; CKPTFIX_BARRIER_TIMEOUT overrides it. Carries save failures
    reported since the previous barrier to every rank and applies the error policy everywhere.
    """
    _synchronize(name, settings.barrier_timeout(timeout))


def final_sync(timeout: float | timedelta = settings.DEFAULT_FINAL_TIMEOUT) -> None:
    """The last barrier before training ends, so no rank tears down while another still writes.

    Same guarantees as checkpoint_barrier; CKPTFIX_FINAL_TIMEOUT overrides `timeout`.
    """
    _synchronize("final", settings.final_timeout(timeout))
    get_logger().info("Final synchronization completed")


def _synchronize(name: str, seconds: float) -> None:
    dist = distributed()
    state = _state_for(dist)
    policy = settings.save_error_policy()
    if dist is None or dist.get_world_size() == 1:
        failures, state.pending = state.pending, []
        _settle(failures, policy)
        return
    if state.broken is not None:
        raise CheckpointSyncError(
            f"{name} barrier not attempted: the earlier barrier {state.broken} failed and the process "
            "group cannot be used after that; stop the job",
            barrier=name,
            timeout=seconds,
        )
    state.sequence += 1
    sequence = state.sequence
    rank, world = dist.get_rank(), dist.get_world_size()
    mine, state.pending = state.pending, []
    store = _store(dist)
    _mark_arrival(store, rank, sequence, mine)

    import torch

    path = choose_sync_path(
        config=dist.get_backend_config(),
        gloo_available=dist.is_gloo_available(),
        has_side_group=state.side_group is not None,
        torch_version=torch.__version__,
    )
    started = time.monotonic()
    try:
        if path == "side_group" and state.side_group is None:
            # Creating the group is itself a wait for every rank: bounded by this barrier's timeout.
            get_logger().warning(
                "init_sync() was not called after init_process_group; creating the barrier group "
                "now, within this barrier's timeout (%s s)",
                f"{seconds:g}",
            )
            init_sync(timeout=seconds)
        # True/False: the barrier carried every rank's status; None: it could not, ask the store.
        any_failed: bool | None = None
        if path in ("side_group", "default_group"):
            group = state.side_group if path == "side_group" else None
            any_failed, rank0_raises = _reduce_status(
                dist, torch, group, bool(mine), policy == "raise", seconds
            )
            policy = "raise" if rank0_raises else "continue"
        else:
            _timed_barrier(dist, path, seconds)
    except Exception as exc:
        state.broken = f"'{name}' #{sequence}"
        missing = _missing_ranks(store, world, sequence)
        message = _timeout_message(name, sequence, rank, time.monotonic() - started, seconds, missing, exc)
        get_logger().error("%s", message)
        raise CheckpointSyncError(message, barrier=name, timeout=seconds, missing_ranks=missing) from exc

    if any_failed is False:
        failures = []
    elif store is None:
        failures = (
            [SaveFailure(rank=-1, path="a checkpoint", reason="details in the writer's log")]
            if any_failed
            else []
        )
    else:
        failures = _failures_from_store(store, world, sequence)
    get_logger().debug("%s barrier #%d passed in %.3f s", name, sequence, time.monotonic() - started)
    _settle(failures, policy)


def _reduce_status(
    dist: ModuleType, torch: ModuleType, group: Any, failed: bool, raise_policy: bool, seconds: float
) -> tuple[bool, bool]:
    """All-reduce (any rank failed, rank 0's policy is raise) on a gloo group, with a per-call timeout.

    An all_reduce of two integers costs about what a barrier does; which ranks failed, and why, is
    read from the store only when one did. The timeout goes into the collective's own options, so
    gloo aborts the operation itself: `async_op=True` + `work.wait(timeout)` would only stop waiting
    and leave the operation pending, so that a late rank could still complete it on its own, and
    the process could not exit while it was pending (measured here).
    """
    status = torch.tensor([int(failed), int(raise_policy and dist.get_rank() == 0)], dtype=torch.int32)
    options = dist.AllreduceOptions()
    options.reduceOp = dist.ReduceOp.MAX
    options.timeout = timedelta(seconds=seconds)
    process_group = group if group is not None else dist.group.WORLD
    process_group.allreduce([status], options).wait()
    return bool(status[0]), bool(status[1])


def _timed_barrier(dist: ModuleType, path: str, seconds: float) -> None:
    """The default group's own barrier where no gloo group exists (nccl/xccl-only builds)."""
    if path == "default_barrier":
        dist.barrier(timeout=timedelta(seconds=seconds))
    else:
        dist.barrier(async_op=True).wait(timeout=timedelta(seconds=seconds))


def _arrival_key(rank: int) -> str:
    return f"{_KEY_PREFIX}/arrival/{rank}"


def _failure_key(sequence: int, rank: int) -> str:
    return f"{_KEY_PREFIX}/failure/{sequence}/{rank}"


def _failure_count_key(sequence: int) -> str:
    return f"{_KEY_PREFIX}/failures/{sequence}"


def _mark_arrival(store: Any, rank: int, sequence: int, failures: list[SaveFailure]) -> None:
    """Publish this rank's failures, then its arrival, before it starts waiting."""
    if store is None:
        return
    try:
        if failures:
            store.set(_failure_key(sequence, rank), json.dumps([f.__dict__ for f in failures]))
            store.add(_failure_count_key(sequence), 1)
        store.set(_arrival_key(rank), str(sequence))
    except Exception as exc:  # the store only serves diagnostics; the barrier itself decides
        get_logger().warning("could not record arrival at the barrier in the store: %s", exc)


def _missing_ranks(store: Any, world: int, sequence: int) -> tuple[int, ...] | None:
    """Ranks whose arrival mark for this barrier is absent; None when the store cannot tell."""
    if store is None or world > _MAX_RANKS_TO_NAME:
        return None
    missing = []
    try:
        for rank in range(world):
            key = _arrival_key(rank)
            if not store.check([key]) or int(store.get(key)) < sequence:
                missing.append(rank)
    except Exception:  # store gone with a dead rank: the message says the ranks are unknown
        return None
    return tuple(missing)


def _timeout_message(
    name: str,
    sequence: int,
    rank: int,
    elapsed: float,
    seconds: float,
    missing: tuple[int, ...] | None,
    cause: BaseException,
) -> str:
    head = (
        f"checkpoint barrier '{name}' (#{sequence}) failed on rank {rank} after {elapsed:.1f} s "
        f"(timeout {seconds:g} s): "
    )
    if missing:
        ranks = ", ".join(str(r) for r in missing)
        plural = "s" if len(missing) > 1 else ""
        body = (
            f"rank{plural} {ranks} did not arrive (still busy, e.g. writing a checkpoint, or dead); "
            f"check rank{plural} {ranks}'s log."
        )
    elif missing is None:
        body = (
            "the other ranks could not be asked which of them are missing (their store is gone: "
            "they gave up or died)."
        )
    else:
        body = "every rank arrived, but the others had already given up (timed out or died) before this one."
    tail = (
        f" The process group cannot be used after this: stop the job. If saves legitimately take "
        f"longer, raise {settings.BARRIER_TIMEOUT_ENV if name != 'final' else settings.FINAL_TIMEOUT_ENV}. "
        f"Cause: {type(cause).__name__}: {cause}"
    )
    return head + body + tail


def _failures_from_store(store: Any, world: int, sequence: int) -> list[SaveFailure]:
    """Which ranks failed before this barrier, and why, as each published it before entering."""
    if int(store.add(_failure_count_key(sequence), 0)) == 0:
        return []
    failures: list[SaveFailure] = []
    for rank in range(world):
        key = _failure_key(sequence, rank)
        if store.check([key]):
            failures.extend(SaveFailure(**record) for record in json.loads(store.get(key)))
    return failures


def _settle(failures: list[SaveFailure], policy: settings.SaveErrorPolicy) -> None:
    """Apply the error policy to the writer's failures, identically on every rank."""
    if not failures:
        return
    logger = get_logger()
    for failure in failures:
        who = f"rank {failure.rank}'s" if failure.rank >= 0 else "a rank's"
        logger.warning("%s save of %s failed: %s", who, failure.path, failure.reason)
    if policy == "continue":
        logger.warning(
            "training continues without that checkpoint (%s=continue)", settings.SAVE_ERROR_POLICY_ENV
        )
        return
    first = failures[0]
    raise CheckpointSaveError(
        f"rank {first.rank}'s save of {first.path} failed ({first.reason}); stopping on every rank "
        f"({settings.SAVE_ERROR_POLICY_ENV}=raise)",
        path=first.path,
        writer_rank=first.rank,
        reason=first.reason,
    )
