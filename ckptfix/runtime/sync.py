"""Checkpoint barriers whose timeouts fire, tell a slow writer from a dead one, and carry save failures.

Why not `dist.barrier()`: on nccl/xccl it blocks inside the device runtime, and the guide's
`dist.barrier(timeout=120)` raises TypeError (the keyword takes a timedelta, and only since torch
2.12), which its try/except then hides. Here every barrier is an `all_reduce` of two small integers
on a gloo group: gloo honours per-call timeouts on every waiting rank, also when rank 0 (usually the
slow writer) is the late one. The integers carry whether any rank's save failed and rank 0's error
policy, so the writer's failure reaches every rank with the barrier itself.

The timeout is a stall timeout, not a deadline (see ckptfix.runtime.progress): a waiting rank that
has not passed within one progress interval reads what rank 0 publishes in the store (heartbeat,
phase, bytes written) and keeps waiting while rank 0 writes and the bytes grow, or while it is alive
and busy with something else (up to the process group's own timeout); it gives up when the write
stops for `timeout`, when rank 0's heartbeat stops, or at the hard ceiling. A rank that dies is seen
at once: its connections close and the collective fails. The normal path touches no store at all.
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

from ckptfix.runtime import progress, settings
from ckptfix.runtime.backend import choose_sync_path, parse_backend_config
from ckptfix.runtime.errors import CheckpointSaveError, CheckpointSyncError
from ckptfix.runtime.logs import get_logger
from ckptfix.runtime.ranks import distributed

_KEY_PREFIX = "ckptfix"
# Past this many ranks, naming the late ones would cost too many store round trips on a timeout.
_MAX_RANKS_TO_NAME = 4096
# A slow barrier's waiters together read rank 0's record at most about this often per second: each
# polls every max(interval, world / this) seconds (4 s at 4,096 ranks), so the store's load from a long
# checkpoint write does not grow with the world size.
_STORE_READS_PER_SECOND = 1000.0
# Up to this many ranks, a fast failure waits up to one interval for the survivors' arrival marks.
_GRACE_MAX_RANKS = 256
# Process groups and operations given up on (see _abandon): referenced until the process ends.
_abandoned_objects: list[Any] = []


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
    # The default group's own timeout, read once (it cannot change while the group lives).
    pg_timeout: float | None = None


_state = _SyncState()


def _forget_process_groups() -> None:
    """Drop our references to process groups before the interpreter shuts down.

    A process group that outlives destroy_process_group() only through a Python reference is
    destroyed during interpreter finalization, where gloo's destructor can abort the process
    ("terminate called without an active exception"; seen here under torchrun with plain torch
    too). Releasing them in an atexit hook destroys them while the interpreter is still whole.
    """
    global _state
    progress.stop()
    _state = _SyncState()


def _state_for(dist: ModuleType | None) -> _SyncState:
    global _state
    world = dist.group.WORLD if dist is not None else None
    if _state.world is not world:
        if world is not None and _state.world is None:
            atexit.unregister(_forget_process_groups)
            atexit.register(_forget_process_groups)
        progress.stop()
        _state = _SyncState(world=world, pending=_state.pending if world is None else [])
    return _state


def _store(dist: ModuleType) -> Any:
    """The default group's key-value store, or None where this torch does not expose it."""
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # private API: absence only costs the naming of late ranks
        return None


def ensure_progress_publisher() -> None:
    """On rank 0 of a process group, start publishing heartbeat and write progress (idempotent).

    init_sync() starts it; atomic_save and the first barrier start it too where init_sync() was not
    called (the init call sits in another file). The publisher gets a store connection of its own, so
    its writes never queue behind the main thread's.
    """
    dist = distributed()
    if dist is None or dist.get_rank() != 0 or dist.get_world_size() == 1 or progress.publishing():
        return
    _state_for(dist)
    interval = settings.progress_interval()
    store = _store(dist)
    if interval <= 0 or store is None:
        return
    try:
        own = store.clone()
    except Exception:  # older torch without Store.clone(): share the connection (TCPStore locks it)
        own = store
    progress.start(own, interval, dist.is_initialized)


def init_sync(timeout: float | timedelta | None = None) -> None:
    """Create the gloo side group that checkpoint barriers use. Call on every rank after init_process_group.

    Creating a group is itself a collective with a fixed timeout, so it belongs where every rank
    passes. Without this call (the init call sits in another file), the first barrier that needs the
    group waits for every rank in the store, judging rank 0 as any barrier does, and only then creates
    it (see _Wait.until_all_arrived); rank 0 then publishes nothing before its first atomic_save or
    barrier, so until then a busy rank 0 cannot be told from a late one.

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
    ensure_progress_publisher()


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
    if rank == 0:
        ensure_progress_publisher()
        progress.entering_barrier(sequence)
        gave_up = progress.abandoned(sequence)
        if gave_up is not None:
            # The others already left this barrier; entering it would pair with nobody.
            state.broken = f"'{name}' #{sequence}"
            message = (
                f"checkpoint barrier '{name}' (#{sequence}) failed on rank 0: the other ranks gave up "
                f"waiting for this rank before it arrived (rank {gave_up.get('rank')}: "
                f"{gave_up.get('reason')}). The process group cannot be used after this: stop the job."
            )
            get_logger().error("%s", message)
            raise CheckpointSyncError(message, barrier=name, timeout=seconds, missing_ranks=(0,))
    _publish_failures(store, rank, sequence, mine)

    import torch

    path = choose_sync_path(
        config=dist.get_backend_config(),
        gloo_available=dist.is_gloo_available(),
        has_side_group=state.side_group is not None,
        torch_version=torch.__version__,
    )
    started = time.monotonic()
    if state.pg_timeout is None:
        state.pg_timeout = _process_group_timeout(dist)
    wait = _Wait(store, name, sequence, rank, world, seconds, started, state.pg_timeout)
    try:
        if path == "side_group" and state.side_group is None:
            # Creating the group is a collective with a fixed timeout that cannot complete while rank
            # 0 writes: wait for every rank in the store first, judged like any barrier, then create.
            get_logger().warning(
                "init_sync() was not called after init_process_group; the barrier group is created "
                "once every rank has reached this barrier"
            )
            if store is None:  # nothing to wait in: the group's creation is bounded by the timeout
                init_sync(timeout=seconds)
            else:
                wait.until_all_arrived()
                init_sync()
        # True/False: the barrier carried every rank's status; None: it could not, ask the store.
        any_failed: bool | None = None
        if path in ("side_group", "default_group"):
            group = state.side_group if path == "side_group" else None
            any_failed, rank0_raises = _reduce_status(dist, torch, group, bool(mine), policy == "raise", wait)
            policy = "raise" if rank0_raises else "continue"
        else:
            _timed_barrier(dist, path, seconds)
    except Exception as exc:
        state.broken = f"'{name}' #{sequence}"
        message, missing = wait.failure_message(exc)
        get_logger().error("%s", message)
        error = CheckpointSyncError(message, barrier=name, timeout=seconds, missing_ranks=missing)
        if isinstance(exc, (_GaveUp, _PeerGaveUp)):
            raise error from None  # this rank's own decision: the message says all there is
        raise error from exc
    finally:
        if rank == 0:
            progress.left_barrier()
    wait.passed()

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


class _GaveUp(Exception):
    """This rank stopped waiting: `verdict` says why. The collective is left pending (see _abandon)."""

    def __init__(self, verdict: progress.Verdict) -> None:
        super().__init__(verdict.reason or verdict.kind)
        self.verdict = verdict


class _PeerGaveUp(Exception):
    """Another rank gave up before the barrier's group could be created (see _Wait.until_all_arrived)."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.rank = record.get("rank")
        self.reason = str(record.get("reason"))
        super().__init__(f"rank {self.rank} gave up: {self.reason}")


class _Wait:
    """One rank's wait at one barrier: the fast path touches no store; a slow one reads rank 0's record.

    Within the first interval, nothing but the collective happens (no store traffic at all: a barrier
    on every training step costs what the collective costs). Past it, this rank marks its arrival
    (one append to one key per barrier, so a failure can name the missing ranks from one read) and
    reads rank 0's record once per poll interval, which grows with the world size so that the store
    serves at most about _STORE_READS_PER_SECOND reads a second however many ranks wait.
    """

    def __init__(
        self,
        store: Any,
        name: str,
        sequence: int,
        rank: int,
        world: int,
        seconds: float,
        started: float,
        pg_timeout: float,
    ) -> None:
        self.store, self.name = store, name
        self.sequence, self.rank, self.world = sequence, rank, world
        self.seconds, self.started = seconds, started
        interval = settings.progress_interval()
        self.use_progress = interval > 0 and store is not None
        self.slice = interval if interval > 0 else settings.DEFAULT_PROGRESS_INTERVAL
        self.poll = max(self.slice, world / _STORE_READS_PER_SECOND)
        self.pg_timeout = pg_timeout
        self.ceiling = max(settings.ceiling(), seconds, pg_timeout)
        self._watch: progress.Watch | None = None
        self.marked = False
        self.record_exists = False
        self.verdict: progress.Verdict | None = None

    @property
    def watch(self) -> progress.Watch:
        """The judgement of rank 0, made only when a barrier is slow (the fast path stays lean)."""
        if self._watch is None:
            self._watch = progress.Watch(
                sequence=self.sequence,
                timeout=self.seconds,
                busy_allowance=self.pg_timeout,
                ceiling=self.ceiling,
                started=self.started,
                rank0_here=self.rank == 0,
            )
        return self._watch

    def until_done(self, work: Any, group: Any) -> None:
        """Wait for `work`, judging rank 0 between slices; raise _GaveUp (work left pending) or its error."""
        budget = self.slice
        while True:
            try:
                work.wait(timedelta(seconds=budget))
                return
            except RuntimeError:
                if work.is_completed():
                    # Either the collective itself failed (a peer's connection closed, gloo's own
                    # timeout), or it completed just after our slice ran out (seen at 8 ranks here):
                    # waiting again returns at once, with its result or its real error.
                    work.wait()
                    return
            # Our slice ran out, the collective is still pending.
            verdict = self._judge()
            if verdict is not None and not work.is_completed():
                self.verdict = verdict
                _abandon(group, work)
                raise _GaveUp(verdict)
            budget = self.poll

    def until_all_arrived(self) -> None:
        """Before the barrier's gloo group exists: wait until every rank is here, through the store only.

        Creating the group (init_sync() was not called) is a collective that cannot complete while rank
        0 is still writing, and its only timeout is a fixed one. So every rank first counts itself in
        (one `add`), and the ranks wait for the last one with the same judgement of rank 0 as
        `until_done`; only then is the group created, by every rank at once. Who comes last, or who
        gives up, settles the outcome with one `compare_set`, so no rank creates the group while
        another has given up (which would leave it waiting in the group's own timeout).
        """
        store = self.store
        count_key, outcome_key = _group_keys(self.sequence)
        if int(store.add(count_key, 1)) >= self.world:
            outcome = _decode(store.compare_set(outcome_key, "", "go"))
        else:
            outcome = self._poll_outcome(outcome_key)
        if outcome != "go":
            raise _PeerGaveUp(json.loads(outcome))

    def _poll_outcome(self, outcome_key: str) -> str:
        """Poll for the group's outcome; judge rank 0 once per poll interval past the first slice."""
        store = self.store
        judge_at = self.started + self.slice
        delay = 0.005  # ranks that arrive together see each other within milliseconds
        while True:
            if store.check([outcome_key]):
                return _decode(store.get(outcome_key))
            now = time.monotonic()
            if now >= judge_at:
                verdict = self._judge()
                if verdict is not None:
                    reason = verdict.reason or _missing_text(self._missing_ranks())
                    mine = json.dumps({"rank": self.rank, "reason": reason})
                    outcome = _decode(store.compare_set(outcome_key, "", mine))
                    if outcome != mine:
                        return outcome  # every rank had arrived, or another rank gave up first
                    self.verdict = verdict
                    raise _GaveUp(verdict)
                judge_at = now + self.poll
            time.sleep(max(0.0, min(delay, judge_at - now)))
            delay = min(2 * delay, self.poll)

    def _judge(self) -> progress.Verdict | None:
        """Past the first slice: mark this rank's arrival, read rank 0's record and judge it."""
        self._mark_arrival()
        record = self._read_rank0() if self.rank != 0 else None
        return self.watch.update(record, time.monotonic())

    def _mark_arrival(self) -> None:
        if self.marked or self.store is None:
            return
        self.marked = True
        try:
            self.store.append(_arrival_key(self.sequence), f"{self.rank},")
        except Exception as exc:  # the store only serves diagnostics; the collective decides
            get_logger().warning("could not record arrival at the barrier in the store: %s", exc)

    def _read_rank0(self) -> dict[str, Any] | None:
        if not self.use_progress:
            return None
        try:
            record = progress.read(self.store, exists=self.record_exists)
            self.record_exists = record is not None
            return record
        except Exception as exc:  # the store went away (its host died): judge without it
            get_logger().warning("could not read rank 0's progress from the store: %s", exc)
            self.use_progress = False
            return None

    def passed(self) -> None:
        """Drop this barrier's arrival key once it passed (ranks 0 and 1: the usual waiters)."""
        if self.marked and self.rank in (0, 1) and self.store is not None:
            try:
                self.store.delete_key(_arrival_key(self.sequence))
            except Exception as exc:
                get_logger().warning("could not delete the barrier's arrival key: %s", exc)

    def failure_message(self, cause: BaseException) -> tuple[str, tuple[int, ...] | None]:
        """The error every rank raises, saying what the late rank was doing; and the missing ranks."""
        elapsed = time.monotonic() - self.started
        missing = self._missing_ranks()
        verdict = self.verdict
        if verdict is not None and self.store is not None:
            try:
                reason = verdict.reason or _missing_text(missing)
                progress.publish_abandonment(self.store, self.sequence, self.rank, reason)
            except Exception as exc:
                get_logger().warning("could not tell the other ranks why this one gave up: %s", exc)
        if verdict is not None and verdict.kind != "late":
            body = verdict.reason + "."
            if verdict.kind == "stalled":
                body += (
                    " A write that stops for the whole stall timeout is stuck, not slow; "
                    "check rank 0's storage."
                )
        elif verdict is not None or isinstance(cause, _GaveUp):
            body = _missing_text(missing)
        elif isinstance(cause, _PeerGaveUp):
            body = f"rank {cause.rank} gave up waiting first: {cause.reason}"
            body += "" if body.endswith(".") else "."
        else:
            body = self._collective_failure_text(missing)
        text = _timeout_message(self.name, self.sequence, self.rank, elapsed, self.seconds, body, cause)
        return text, missing

    def _collective_failure_text(self, missing: tuple[int, ...] | None) -> str:
        """The collective failed under us: another rank gave up (and left), died, or gloo timed out."""
        elapsed = time.monotonic() - self.started
        if elapsed >= self.ceiling:
            return self.watch.ceiling_reason(elapsed) + "."
        other = None
        if self.store is not None:
            try:
                other = progress.read_abandonment(self.store, self.sequence)
            except Exception:  # store gone with the rank hosting it: say what we know without it
                other = None
        if other is not None and other.get("rank") != self.rank:
            return f"rank {other.get('rank')} gave up waiting first: {other.get('reason')}."
        text = _missing_text(missing)
        if self.rank != 0:
            record = self._read_rank0()
            if record is not None:
                self.watch.update(record, time.monotonic())
            seen = self.watch.last_seen()
            if seen:
                text += f" {seen[0].upper()}{seen[1:]}."
        return text

    def _missing_ranks(self) -> tuple[int, ...] | None:
        """Ranks without an arrival mark for this barrier; None when the store cannot tell."""
        if self.store is None or self.world > _MAX_RANKS_TO_NAME:
            return None
        # A collective that failed within the first interval (a peer's connection closed) fails here
        # before the other survivors have marked their arrival: give them up to one interval, and stop
        # as soon as all but one rank are marked (one dead rank, the usual case, costs milliseconds).
        # Past _GRACE_MAX_RANKS the polling itself would load the store: one read, names may be short.
        early = not self.marked
        self._mark_arrival()
        key = _arrival_key(self.sequence)
        grace = self.slice if early and self.world <= _GRACE_MAX_RANKS else 0.0
        grace_until = time.monotonic() + grace
        while True:
            try:
                raw = self.store.get(key).decode() if self.store.check([key]) else ""
            except Exception:  # store gone with a dead rank: the message says the ranks are unknown
                return None
            arrived = {int(part) for part in raw.split(",") if part}
            if len(arrived) >= self.world - 1 or time.monotonic() >= grace_until:
                return tuple(r for r in range(self.world) if r not in arrived)
            time.sleep(0.05)


def _missing_text(missing: tuple[int, ...] | None) -> str:
    if missing:
        ranks = ", ".join(str(r) for r in missing)
        plural = "s" if len(missing) > 1 else ""
        return (
            f"rank{plural} {ranks} did not arrive (still busy, e.g. writing a checkpoint, or dead); "
            f"check rank{plural} {ranks}'s log."
        )
    if missing is None:
        return (
            "the other ranks could not be asked which of them are missing (their store is gone: "
            "they gave up or died)."
        )
    return "every rank arrived, but the others had already given up (timed out or died) before this one."


def _abandon(group: Any, work: Any) -> None:
    """Leave a pending collective behind for good, so that this process can still exit.

    A posted gloo operation cannot be cancelled: ProcessGroupGloo.abort() and shutdown() leave it
    pending, and the group's destructor (at exit) waits for it, that is until the late rank arrives
    or the operation's own timeout (the hard ceiling) passes: measured here, the process hung at exit.
    Keeping a reference the interpreter never drops means that destructor never runs; the late rank,
    when it arrives, finds the connection closed and fails too.
    """
    import ctypes

    for obj in (group, work):
        if obj is not None:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
            _abandoned_objects.append(obj)


def _process_group_timeout(dist: ModuleType) -> float:
    """The default group's own timeout in seconds: how long the ranks waited before the rewrite."""
    import torch

    world = dist.group.WORLD
    for device in parse_backend_config(dist.get_backend_config()):
        try:
            return float(world._get_backend(torch.device(device)).options._timeout.total_seconds())
        except Exception:  # private API, or a device this torch cannot name: try the next one
            continue
    return float(dist.default_pg_timeout.total_seconds())


def _reduce_status(
    dist: ModuleType, torch: ModuleType, group: Any, failed: bool, raise_policy: bool, wait: _Wait
) -> tuple[bool, bool]:
    """All-reduce (any rank failed, rank 0's policy is raise) on a gloo group, waiting as `wait` says.

    An all_reduce of two integers costs about what a barrier does; which ranks failed, and why, is
    read from the store only when one did. The collective's own timeout is the hard ceiling, so gloo
    never gives up before we decide to; `wait` decides, in slices of `work.wait(timeout)`, from rank
    0's published progress, and leaves the operation pending when it gives up (see _abandon).
    """
    status = torch.tensor([int(failed), int(raise_policy and dist.get_rank() == 0)], dtype=torch.int32)
    options = dist.AllreduceOptions()
    options.reduceOp = dist.ReduceOp.MAX
    # A little past the ceiling, so that this rank's own judgement (with its message) comes first.
    options.timeout = timedelta(seconds=wait.ceiling + 2 * wait.poll + 5)
    process_group = group if group is not None else dist.group.WORLD
    work = process_group.allreduce([status], options)
    wait.until_done(work, process_group)
    return bool(status[0]), bool(status[1])


def _timed_barrier(dist: ModuleType, path: str, seconds: float) -> None:
    """The default group's own barrier where no gloo group exists (nccl/xccl-only builds)."""
    if path == "default_barrier":
        dist.barrier(timeout=timedelta(seconds=seconds))
    else:
        dist.barrier(async_op=True).wait(timeout=timedelta(seconds=seconds))


def _arrival_key(sequence: int) -> str:
    return f"{_KEY_PREFIX}/arrived/{sequence}"


def _group_keys(sequence: int) -> tuple[str, str]:
    """The arrival counter and the outcome ("go", or who gave up) of a lazily created barrier group."""
    return f"{_KEY_PREFIX}/group/{sequence}/count", f"{_KEY_PREFIX}/group/{sequence}/outcome"


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _failure_key(sequence: int, rank: int) -> str:
    return f"{_KEY_PREFIX}/failure/{sequence}/{rank}"


def _failure_count_key(sequence: int) -> str:
    return f"{_KEY_PREFIX}/failures/{sequence}"


def _publish_failures(store: Any, rank: int, sequence: int, failures: list[SaveFailure]) -> None:
    """Publish this rank's save failures before it starts waiting (nothing at all when there are none)."""
    if store is None or not failures:
        return
    try:
        store.set(_failure_key(sequence, rank), json.dumps([f.__dict__ for f in failures]))
        store.add(_failure_count_key(sequence), 1)
    except Exception as exc:  # the barrier still carries the fact of a failure; details are lost
        get_logger().warning("could not record the save failure in the store: %s", exc)


def _timeout_message(
    name: str,
    sequence: int,
    rank: int,
    elapsed: float,
    seconds: float,
    body: str,
    cause: BaseException,
) -> str:
    head = (
        f"checkpoint barrier '{name}' (#{sequence}) failed on rank {rank} after {elapsed:.1f} s "
        f"(timeout {seconds:g} s): "
    )
    tail = (
        f" The process group cannot be used after this: stop the job. If saves legitimately take "
        f"longer, raise {settings.BARRIER_TIMEOUT_ENV if name != 'final' else settings.FINAL_TIMEOUT_ENV}."
    )
    if not isinstance(cause, (_GaveUp, _PeerGaveUp)):
        tail += f" Cause: {type(cause).__name__}: {cause}"
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
