"""Rank functions for the distributed runtime tests (module-level so spawned processes can import them)."""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from ckptfix.runtime import (
    CheckpointSaveError,
    CheckpointSyncError,
    atomic_save,
    checkpoint_barrier,
    final_sync,
    init_sync,
    is_main_process,
    report_save_failure,
)
from fixtures.full_disk import full_disk


def barriers_pass(rank: int, world: int, use_init_sync: bool) -> dict[str, Any]:
    """Several checkpoint barriers and a final sync, all ranks on time."""
    if use_init_sync:
        init_sync()
        init_sync()  # idempotent
    for _ in range(3):
        checkpoint_barrier(timeout=20)
    final_sync(timeout=20)
    return {"main": is_main_process()}


def late_rank(rank: int, world: int, late: int, timeout: float, delay: float) -> dict[str, Any]:
    """`late` arrives `delay` seconds after the others; the others must give up after `timeout`."""
    init_sync()
    checkpoint_barrier(timeout=timeout)  # a first barrier everyone makes
    if rank == late:
        time.sleep(delay)
    started = time.monotonic()
    try:
        checkpoint_barrier(timeout=timeout)
    except CheckpointSyncError as exc:
        after = time.monotonic() - started
        # The group is broken now: a later barrier must refuse at once instead of hanging.
        try:
            final_sync(timeout=timeout)
            refused = ""
        except CheckpointSyncError as again:
            refused = str(again)
        return {
            "raised": True,
            "after": after,
            "missing": exc.missing_ranks,
            "message": str(exc),
            "refused": refused,
        }
    return {"raised": False, "after": time.monotonic() - started}


def late_without_init_sync(rank: int, world: int, late: int, timeout: float, delay: float) -> dict[str, Any]:
    """No init_sync(): the first barrier creates its group, and must still give up after `timeout`."""
    if rank == late:
        time.sleep(delay)
    started = time.monotonic()
    try:
        checkpoint_barrier(timeout=timeout)
    except CheckpointSyncError as exc:
        return {"raised": True, "after": time.monotonic() - started, "message": str(exc)}
    return {"raised": False, "after": time.monotonic() - started}


def dead_rank(rank: int, world: int, dead: int, timeout: float) -> dict[str, Any]:
    """`dead` exits abruptly before the barrier; the survivors must fail fast and name it."""
    init_sync()
    if rank == dead:
        os._exit(17)
    started = time.monotonic()
    try:
        checkpoint_barrier(timeout=timeout)
    except CheckpointSyncError as exc:
        return {
            "raised": True,
            "after": time.monotonic() - started,
            "missing": exc.missing_ranks,
            "message": str(exc),
        }
    return {"raised": False}


def failed_save(rank: int, world: int, directory: str) -> dict[str, Any]:
    """Rank 0 writes v1, then fails to write v2 on a 'full disk'; every rank must learn it together."""
    init_sync()
    path = os.path.join(directory, "checkpoint.pt")
    if is_main_process():
        atomic_save({"version": 1, "weights": torch.ones(10)}, path)
    checkpoint_barrier(timeout=20)
    if is_main_process():
        try:
            with full_disk(64 * 1024):
                atomic_save({"version": 2, "weights": torch.zeros(1_000_000)}, path)
        except Exception as exc:
            report_save_failure(path, exc)
    try:
        checkpoint_barrier(timeout=20)
    except CheckpointSaveError as exc:
        outcome = {"raised": True, "path": exc.path, "writer": exc.writer_rank, "reason": exc.reason}
    else:
        outcome = {"raised": False}
    # Whatever the policy, the ranks are still in step: one more barrier must pass.
    checkpoint_barrier(timeout=20)
    return outcome


def fallback_path(rank: int, world: int, path: str, late: int | None, directory: str) -> dict[str, Any]:
    """Force the no-gloo-group fallback (`path`), as on an nccl/xccl-only build, on a real gloo group."""
    from ckptfix.runtime import sync

    sync.choose_sync_path = lambda **_: path  # type: ignore[assignment]
    target = os.path.join(directory, "checkpoint.pt")
    if is_main_process():
        try:
            with full_disk(16 * 1024):
                atomic_save({"weights": torch.zeros(100_000)}, target)
        except Exception as exc:
            report_save_failure(target, exc)
    checkpoint_barrier(timeout=20)  # carries rank 0's failure through the store
    if rank == late:
        time.sleep(6)
    started = time.monotonic()
    try:
        checkpoint_barrier(timeout=2)
    except CheckpointSyncError as exc:
        return {"raised": True, "after": time.monotonic() - started, "missing": exc.missing_ranks}
    return {"raised": False}


def _barrier_outcome(timeout: float) -> dict[str, Any]:
    """One checkpoint barrier, timed: whether it raised, after how long, and what it said."""
    started = time.monotonic()
    try:
        checkpoint_barrier(timeout=timeout)
    except CheckpointSyncError as exc:
        return {
            "raised": True,
            "after": time.monotonic() - started,
            "missing": exc.missing_ranks,
            "message": str(exc),
        }
    return {"raised": False, "after": time.monotonic() - started}


def busy_rank0(rank: int, world: int, timeout: float, busy: float) -> dict[str, Any]:
    """Rank 0 is busy under its guard (validation, an upload: no write) for `busy` seconds."""
    init_sync()
    checkpoint_barrier(timeout=timeout)
    if rank == 0:
        time.sleep(busy)
    return _barrier_outcome(timeout)


def _slow_torch_save(
    chunks: int, pause: float, stop_after: int | None, kill_after: int | None, stop_for: float
) -> Any:
    """A torch.save that writes its bytes in `chunks` flushed pieces, `pause` s apart, as slow storage
    does; it stops (sleeps `stop_for` s) or SIGKILLs its process after `stop_after`/`kill_after`."""
    import io
    import signal

    real_save = torch.save

    def save(obj: object, f: Any, *args: Any, **kwargs: Any) -> None:
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        size = -(-len(data) // chunks)
        for index in range(chunks):
            if index == stop_after:
                time.sleep(stop_for)
            if index == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            f.write(data[index * size : (index + 1) * size])
            f.flush()
            time.sleep(pause)

    return save


def slow_writer(
    rank: int,
    world: int,
    directory: str,
    timeout: float,
    chunks: int,
    pause: float,
    stop_after: int | None = None,
    kill_after: int | None = None,
    stop_for: float = 60.0,
) -> dict[str, Any]:
    """Rank 0 writes a ~1 MB checkpoint through atomic_save at a pace (or stops, or dies) while the
    others wait at the barrier after it."""
    init_sync()
    checkpoint_barrier(timeout=timeout)
    return _slow_save_then_barrier(directory, timeout, chunks, pause, stop_after, kill_after, stop_for)


def slow_first_save_without_init_sync(
    rank: int,
    world: int,
    directory: str,
    timeout: float,
    chunks: int,
    pause: float,
    stop_after: int | None = None,
    stop_for: float = 60.0,
) -> dict[str, Any]:
    """No init_sync() (the init call sits in another file): rank 0's first atomic_save runs at a pace
    (or stops) while the others wait at the first barrier, which has to create its gloo group."""
    from ckptfix.runtime import sync

    outcome = _slow_save_then_barrier(directory, timeout, chunks, pause, stop_after, None, stop_for)
    outcome["side_group"] = sync._state.side_group is not None
    if not outcome["raised"]:
        outcome["second"] = _barrier_outcome(timeout)  # the group made by the first barrier serves
    return outcome


def _slow_save_then_barrier(
    directory: str,
    timeout: float,
    chunks: int,
    pause: float,
    stop_after: int | None,
    kill_after: int | None,
    stop_for: float,
) -> dict[str, Any]:
    path = os.path.join(directory, "checkpoint.pt")
    if is_main_process():
        torch.save = _slow_torch_save(chunks, pause, stop_after, kill_after, stop_for)
        try:
            atomic_save({"weights": torch.arange(250_000, dtype=torch.float32)}, path)
        except Exception as exc:
            report_save_failure(path, exc)
    return _barrier_outcome(timeout)
