"""progress.Watch: how a waiting rank judges rank 0 from its records, rule by rule, on a fake clock."""

from __future__ import annotations

import io
import os

import pytest

from ckptfix.runtime import progress


def _watch(**kwargs: float) -> progress.Watch:
    options = {"sequence": 3, "timeout": 10.0, "busy_allowance": 100.0, "ceiling": 1000.0, "started": 0.0}
    options.update(kwargs)
    return progress.Watch(**options)  # type: ignore[arg-type]


def _record(beat: int, phase: str = "busy", seq: int = 2, path: str | None = None, written: int = 0) -> dict:
    return {"beat": beat, "phase": phase, "seq": seq, "path": path, "bytes": written}


def test_growing_write_is_waited_for_well_past_the_timeout():
    watch = _watch()
    for t in range(1, 300):
        record = _record(t, "writing", path="/ckpt/ckpt_step_9000.pt", written=t * 1_000_000)
        assert watch.update(record, float(t)) is None


def test_write_that_stops_fails_after_the_timeout_with_what_it_wrote():
    watch = _watch()
    for t in range(1, 6):
        assert (
            watch.update(_record(t, "writing", path="/x/ckpt_step_9000.pt", written=t * 8_240_000_000), t)
            is None
        )
    verdicts = [
        watch.update(_record(t, "writing", path="/x/ckpt_step_9000.pt", written=41_200_000_000), t)
        for t in range(6, 30)
    ]
    first = next(i for i, v in enumerate(verdicts) if v is not None) + 6
    assert first == 15  # last growth seen at t=5
    verdict = verdicts[first - 6]
    assert verdict is not None and verdict.kind == "stalled"
    assert verdict.reason == "rank 0 has written 41.2 GB of ckpt_step_9000.pt and made no progress for 10 s"


def test_busy_rank0_gets_the_process_group_timeout_not_the_barrier_timeout():
    watch = _watch()
    assert all(watch.update(_record(t), float(t)) is None for t in range(1, 100))
    verdict = watch.update(_record(100), 100.0)
    assert verdict is not None and verdict.kind == "busy"
    assert verdict.reason.startswith("rank 0 did not arrive and is not writing")
    assert "the process group's own timeout (100 s)" in verdict.reason


def test_busy_time_counts_from_the_end_of_the_write():
    watch = _watch()
    for t in range(1, 50):
        assert watch.update(_record(t, "writing", path="a.pt", written=t), float(t)) is None
    for t in range(50, 149):
        assert watch.update(_record(t), float(t)) is None  # uploading after the write ended at t=50
    assert watch.update(_record(150), 150.0) is not None


def test_silent_heartbeat_means_dead_or_hung_after_the_timeout():
    watch = _watch()
    assert watch.update(_record(7), 1.0) is None
    assert watch.update(_record(7), 10.9) is None
    verdict = watch.update(_record(7), 11.0)
    assert verdict is not None and verdict.kind == "dead"
    assert verdict.reason == "rank 0 did not arrive and is not writing: no heartbeat for 10 s (dead or hung)"


def test_rank0_present_leaves_the_fixed_timeout_for_the_missing_rank():
    watch = _watch()
    assert watch.update(_record(1), 1.0) is None
    assert watch.update(_record(2, "barrier", seq=3), 4.0) is None  # rank 0 arrives at t=4
    assert watch.update(_record(3, "barrier", seq=3), 13.9) is None
    verdict = watch.update(_record(4, "barrier", seq=3), 14.0)
    assert verdict is not None and verdict.kind == "late"


def test_no_record_is_the_fixed_timeout_as_before():
    watch = _watch()
    assert watch.update(None, 9.9) is None
    verdict = watch.update(None, 10.0)
    assert verdict is not None and verdict.kind == "late"


def test_hard_ceiling_ends_even_a_progressing_write():
    watch = _watch(ceiling=200.0)
    verdict = None
    for t in range(1, 201):
        verdict = watch.update(_record(t, "writing", path="big.pt", written=t), float(t))
        if verdict is not None:
            break
    assert verdict is not None and verdict.kind == "ceiling" and t == 200
    assert "rank 0 was still writing big.pt" in verdict.reason and "hard ceiling of 200 s" in verdict.reason


def test_ceiling_is_never_below_the_busy_allowance():
    assert _watch(ceiling=50.0, busy_allowance=100.0).ceiling == 100.0


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 B"), (999, "999 B"), (1_000, "1.0 kB"), (41_200_000_000, "41.2 GB")]
)
def test_human_bytes(count, text):
    assert progress.human_bytes(count) == text


def test_progress_file_chunks_and_syncs(monkeypatch, tmp_path):
    monkeypatch.setattr(progress, "CHUNK_BYTES", 10)
    monkeypatch.setattr(progress, "SYNC_EVERY_BYTES", 25)
    synced = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd))
    seen = []

    class Recorder(io.BytesIO):
        def write(self, data):  # type: ignore[override]
            seen.append(bytes(data))
            return super().write(data)

        def fileno(self) -> int:
            return 99

    handle = Recorder()
    wrapped = progress._ProgressFile(handle)
    assert wrapped.write(b"x" * 42) == 42
    assert [len(c) for c in seen] == [10, 10, 10, 10, 2]
    assert synced == [99]  # after 30 bytes; 12 unsynced remain for the final fsync
    assert handle.getvalue() == b"x" * 42
    assert wrapped.fileno() == 99


class _RacingWork:
    """A collective that completes just after the waiter's slice ran out (seen at 8 ranks)."""

    def __init__(self) -> None:
        self.waits: list[object] = []

    def wait(self, timeout: object = None) -> bool:
        self.waits.append(timeout)
        if timeout is not None:
            raise RuntimeError("Operation timed out!")
        return True

    def is_completed(self) -> bool:
        return True


def test_a_collective_completing_as_the_slice_ends_is_a_pass_not_a_failure():
    from ckptfix.runtime import sync

    wait = sync._Wait(None, "checkpoint", 1, 1, 2, 2.0, 0.0, 1800.0)
    work = _RacingWork()
    wait.until_done(work, None)
    assert len(work.waits) == 2 and work.waits[1] is None


def test_a_write_on_another_thread_does_not_hide_that_rank0_is_at_the_barrier(tmp_path):
    with open(tmp_path / "c.pt", "wb") as handle, progress.writing(str(tmp_path / "c.pt"), handle):
        progress.entering_barrier(7)  # the main thread reaches a barrier while the save goes on
        assert progress._snapshot(1)["phase"] == "barrier"
    assert progress._snapshot(2)["phase"] == "barrier"
    progress.left_barrier()
    assert progress._snapshot(3)["phase"] == "busy"
    progress.stop()
