"""What the main process is doing, published in the store, so a waiting rank can tell slow from stuck.

A checkpoint barrier's timeout exists to catch a writer that is dead or stuck, not one that is slow:
before the rewrite, the ranks that do not write waited in the process group's own timeout (30 min on
gloo, 10 on nccl, hours where the script says so) and a slow write survived. So rank 0 publishes, in
one key of the process group's store, what it is doing:

    {"beat": n, "phase": "busy" | "writing" | "barrier", "seq": k, "path": ..., "bytes": ...}

`beat` grows once per interval (a daemon thread: one store write per interval, whatever the world
size), `phase` says whether it is inside `atomic_save` (with the bytes written so far, read with
fstat, so every way torch.save writes is counted), inside barrier number `seq`, or busy with
something else (state gathering, validation, an upload). A waiting rank reads the key only when its
barrier did not complete within one interval, and decides with `Watch`:

- rank 0 is at this barrier too: the late rank is another one, which publishes nothing; it gets the
  barrier's timeout from the moment both this rank and rank 0 were here, as before;
- rank 0 is writing: the bytes must grow at least once per `timeout` (a stall timeout, not a deadline);
- rank 0 is busy with something else: it gets at least the process group's own timeout;
- rank 0's beat stopped for `timeout`: dead or hung (a SIGKILLed rank is seen at once anyway: its
  gloo connections close and the barrier's collective fails);
- whatever happens, nobody waits past the hard ceiling (settings.ceiling()).

Only rank 0 publishes: the rewrite puts every guarded write on the main process. A non-zero rank that
is late is judged by the fixed timeout, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from ckptfix.runtime.logs import get_logger

RECORD_KEY = "ckptfix/rank0"
ABANDONED_KEY = "ckptfix/abandoned"
# Writes are handed to the file in chunks of at most this size, and the file is made durable every
# SYNC_EVERY bytes: otherwise a write of tens of GB can land in the page cache at memory speed and
# the final fsync then runs for minutes with no progress anyone can see (and would be killed as a
# stall). With a sync every 1 GiB, the bytes counted are bytes the storage took, and the final
# fsync waits for at most 1 GiB.
CHUNK_BYTES = 256 << 20
SYNC_EVERY_BYTES = 1 << 30


@dataclass
class _Activity:
    """Rank 0's current activity, as the publisher thread reads it (under `_lock`)."""

    phase: str = "busy"
    sequence: int = 0
    path: str | None = None
    fd: int | None = None
    written: int = 0


_lock = threading.Lock()
_activity = _Activity()
_publisher: _Publisher | None = None
# What the waiting ranks said when they gave up on a barrier rank 0 had not reached (set by the thread).
_abandoned: dict[str, Any] | None = None


def human_bytes(count: int) -> str:
    """41_200_000_000 -> '41.2 GB' (decimal units, as storage is sold and `df -H` shows it)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _snapshot(beat: int) -> dict[str, Any]:
    with _lock:
        written = _activity.written
        if _activity.fd is not None:
            # The writer clears fd (under this lock) before closing it; OSError is a file system's error.
            with contextlib.suppress(OSError):
                written = os.fstat(_activity.fd).st_size
            _activity.written = written
        return {
            "beat": beat,
            "phase": _activity.phase,
            "seq": _activity.sequence,
            "path": _activity.path,
            "bytes": written,
        }


class _Publisher(threading.Thread):
    """Publishes rank 0's activity once per interval; learns whether the others gave up on it."""

    def __init__(self, store: Any, interval: float, is_alive: Any) -> None:
        super().__init__(name="ckptfix-progress", daemon=True)
        self.store = store
        self.interval = interval
        self.is_alive_group = is_alive
        self.halt = threading.Event()

    def run(self) -> None:
        global _abandoned
        beat = 0
        while True:
            if not self.is_alive_group():
                return  # destroy_process_group(): nothing to report to any more
            beat += 1
            try:
                self.store.set(RECORD_KEY, json.dumps(_snapshot(beat)))
                if _abandoned is None and self.store.check([ABANDONED_KEY]):
                    _abandoned = json.loads(self.store.get(ABANDONED_KEY))
            except Exception as exc:
                # The store is gone (its host died or the job is ending). The waiting ranks then fall
                # back to the fixed timeout, which the warning says.
                if self.is_alive_group():
                    get_logger().warning(
                        "stopped publishing checkpoint progress (the store failed: %s); other ranks "
                        "will wait for this rank with the fixed barrier timeout",
                        exc,
                    )
                return
            if self.halt.wait(self.interval):
                return


def start(store: Any, interval: float, is_alive: Any) -> None:
    """Start rank 0's publisher (idempotent). `store` should be a connection of its own (`clone()`)."""
    global _publisher
    if _publisher is not None and _publisher.is_alive():
        return
    _publisher = _Publisher(store, interval, is_alive)
    _publisher.start()


def stop() -> None:
    """Stop the publisher and forget everything (a new process group starts afresh)."""
    global _publisher, _abandoned, _activity
    if _publisher is not None:
        _publisher.halt.set()
        _publisher = None
    with _lock:
        _activity = _Activity()
    _abandoned = None


def publishing() -> bool:
    return _publisher is not None and _publisher.is_alive()


def entering_barrier(sequence: int) -> None:
    with _lock:
        _activity.phase = "barrier"
        _activity.sequence = sequence


def left_barrier() -> None:
    with _lock:
        # A save on another thread (asynchronous checkpointing) may still be writing.
        _activity.phase = "writing" if _activity.fd is not None else "busy"


def abandoned(sequence: int) -> dict[str, Any] | None:
    """What the others said when they gave up on barrier `sequence` before this rank got there."""
    record = _abandoned
    if record is not None and int(record.get("seq", -1)) == sequence:
        return record
    return None


class _ProgressFile:
    """The temp file as torch.save sees it: chunked writes, made durable every SYNC_EVERY_BYTES.

    Everything else (fileno, tell, seek, which the legacy format uses) goes to the real file.
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._unsynced = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        for start in range(0, total, CHUNK_BYTES):
            chunk = view[start : start + CHUNK_BYTES]
            self._handle.write(chunk)
            self._unsynced += len(chunk)
            if self._unsynced >= SYNC_EVERY_BYTES:
                self._handle.flush()
                getattr(os, "fdatasync", os.fsync)(self._handle.fileno())
                self._unsynced = 0
        return total

    def flush(self) -> None:
        self._handle.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


@contextlib.contextmanager
def writing(path: str, handle: IO[bytes]) -> Iterator[IO[bytes]]:
    """Mark rank 0 as writing `path` through `handle` (the file torch.save should get is yielded).

    Leave the block before the handle closes: the publisher reads the size through its descriptor.
    """
    with _lock:
        _activity.phase, _activity.path = "writing", path
        _activity.fd, _activity.written = handle.fileno(), 0
    try:
        yield _ProgressFile(handle)  # type: ignore[misc]
    finally:
        with _lock:
            if _activity.fd is not None:
                with contextlib.suppress(OSError):
                    _activity.written = os.fstat(_activity.fd).st_size
            _activity.fd = None
            if _activity.phase == "writing":  # not if the main thread entered a barrier meanwhile
                _activity.phase = "busy"


def read(store: Any, *, exists: bool = False) -> dict[str, Any] | None:
    """Rank 0's last published record, or None where it never published (or progress is off).

    `exists`: the key was seen before (it is never deleted), so one `get` is enough.
    """
    if not exists and not store.check([RECORD_KEY]):
        return None
    record: dict[str, Any] = json.loads(store.get(RECORD_KEY))
    return record


def publish_abandonment(store: Any, sequence: int, rank: int, reason: str) -> None:
    """Tell rank 0 (and ranks whose barrier then fails on a closed connection) why this rank gave up."""
    store.set(ABANDONED_KEY, json.dumps({"seq": sequence, "rank": rank, "reason": reason}))


def read_abandonment(store: Any, sequence: int) -> dict[str, Any] | None:
    if not store.check([ABANDONED_KEY]):
        return None
    record: dict[str, Any] = json.loads(store.get(ABANDONED_KEY))
    return record if int(record.get("seq", -1)) == sequence else None


@dataclass
class Verdict:
    """Why a waiting rank gives up: `kind` (late, stalled, dead, busy, ceiling) and the words for it."""

    kind: str
    reason: str


class Watch:
    """A waiting rank's judgement of rank 0 from its published records, on this rank's own clock.

    Pure (no store, no torch), so every rule is unit-tested: `update(record, now)` returns a Verdict
    when this rank should give up, else None.
    """

    def __init__(
        self,
        *,
        sequence: int,
        timeout: float,
        busy_allowance: float,
        ceiling: float,
        started: float,
        rank0_here: bool = False,
    ) -> None:
        self.sequence = sequence
        self.timeout = timeout
        self.busy_allowance = max(timeout, busy_allowance)
        self.ceiling = max(ceiling, self.busy_allowance)
        self.started = started
        self.rank0_here = rank0_here
        self.idle_since = started
        self.last_beat_seen = started
        self.last_progress = started
        self.beat: int | None = None
        self.work: tuple[str, str | None, int] | None = None
        self.record: dict[str, Any] | None = None

    def update(self, record: dict[str, Any] | None, now: float) -> Verdict | None:
        elapsed = now - self.started
        if record is not None:
            self.record = record
            if record.get("beat") != self.beat:
                self.beat = record.get("beat")
                self.last_beat_seen = now
            work = (str(record.get("phase")), record.get("path"), int(record.get("bytes") or 0))
            writing_now = work[0] == "writing"
            if self.work is not None and work != self.work and (writing_now or self.work[0] == "writing"):
                self.last_progress = now  # bytes grew, a write began or ended
            self.work = work
            if (
                not self.rank0_here
                and record.get("phase") == "barrier"
                and int(record.get("seq", -1)) >= self.sequence
            ):
                # Rank 0 just arrived: whoever is still missing gets the fixed timeout from now on.
                self.rank0_here = True
                self.idle_since = now
        if elapsed >= self.ceiling:
            return Verdict("ceiling", self.ceiling_reason(elapsed))
        if self.rank0_here or self.record is None:
            # Rank 0 is here (or publishes nothing): the late rank publishes nothing either.
            return Verdict("late", "") if now - self.idle_since >= self.timeout else None
        assert self.work is not None
        phase, path, written = self.work
        # While rank 0 writes, the bytes (read by its heartbeat thread) are the sign of life: a frozen
        # writer stops both, and "made no progress" says more than "no heartbeat".
        silent = now - self.last_beat_seen
        if phase != "writing" and silent >= self.timeout:
            return Verdict(
                "dead",
                f"rank 0 did not arrive and is not writing: no heartbeat for {silent:.0f} s (dead or hung)",
            )
        still = now - self.last_progress
        if phase == "writing":
            if still >= self.timeout:
                return Verdict(
                    "stalled",
                    f"rank 0 has written {human_bytes(written)} of {_name(path)} and made no progress "
                    f"for {still:.0f} s",
                )
            return None
        if still >= self.busy_allowance:
            return Verdict(
                "busy",
                f"rank 0 did not arrive and is not writing: it is alive but has been busy with something "
                f"else for {still:.0f} s, the process group's own timeout "
                f"({self.busy_allowance:g} s)",
            )
        return None

    def ceiling_reason(self, elapsed: float) -> str:
        """Why a barrier gave up at the hard ceiling, with what the late rank was doing then."""
        if self.rank0_here or self.work is None:
            who = "the late rank was still missing"
        elif self.work[0] == "writing":
            who = f"rank 0 was still writing {_name(self.work[1])} ({human_bytes(self.work[2])} written)"
        else:
            who = "rank 0 had not arrived (alive, busy with something else)"
        return (
            f"{who} when the barrier reached its hard ceiling of {self.ceiling:g} s after {elapsed:.0f} s "
            "(CKPTFIX_BARRIER_CEILING)"
        )

    def last_seen(self) -> str:
        """What rank 0 was last seen doing, for an error that has another cause (a closed connection)."""
        if self.work is None:
            return ""
        phase, path, written = self.work
        if self.rank0_here:
            return "rank 0 had arrived at this barrier"
        if phase == "writing":
            return f"rank 0 was last seen writing {_name(path)} ({human_bytes(written)} written)"
        return "rank 0 was last seen busy (not writing, not at this barrier)"


def _name(path: str | None) -> str:
    return os.path.basename(path) if path else "a checkpoint"
