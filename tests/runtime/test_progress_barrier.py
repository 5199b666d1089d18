"""Barriers that tell a slow writer from a stuck or dead one (issue 14), on real gloo process groups.

Rank 0 publishes heartbeat and write progress in the store; the others keep waiting while the write
progresses or rank 0 is alive and busy (up to the process group's own timeout), and give up, every
one of them, when the write stops, when rank 0 dies, or past that timeout.
"""

from __future__ import annotations

import re

import pytest

from tests.distributed import run_ranks
from tests.runtime import workers

SLACK = 4.0


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("world", "backend"), [(2, "gloo"), (3, "gloo"), (2, "cuda:gloo")])
def test_writer_progressing_for_several_timeouts_finishes_on_every_rank(tmp_path, world, backend):
    # 16 chunks 0.5 s apart: 8 s of steady writing against a 2 s stall timeout. "cuda:gloo" is a
    # default group with no CPU backend, as with nccl or xccl: the barrier runs on the gloo side group.
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    outcomes = run_ranks(
        workers.slow_writer,
        world,
        tmp_path / "ranks",
        deadline=60,
        args=(str(ckpt), 2.0, 16, 0.5),
        backend=backend,
    )
    assert all(o.ok for o in outcomes), outcomes
    for o in outcomes:
        assert o.value["raised"] is False, o.value
    for o in outcomes[1:]:
        assert o.value["after"] >= 6.0, f"rank {o.rank} did not wait for the write: {o.value}"
    assert (ckpt / "checkpoint.pt").stat().st_size > 900_000
    assert "Checkpoint saved successfully" in outcomes[0].log


@pytest.mark.timeout(90)
def test_writer_that_stops_mid_file_fails_fast_on_every_rank(tmp_path):
    # 4 chunks (0.25 MB) in 1 s, then the write stops for 10 s: 2 s without progress fails everyone.
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    timeout = 2.0
    outcomes = run_ranks(
        workers.slow_writer,
        3,
        tmp_path / "ranks",
        deadline=75,
        args=(str(ckpt), timeout, 16, 0.25, 4, None, 10.0),
    )
    assert not any(o.hung for o in outcomes), outcomes
    for o in outcomes[1:]:
        assert o.ok, o
        assert o.value["raised"], o.value
        assert o.value["after"] <= 1.0 + timeout + SLACK, o.value
        message = o.value["message"]
        assert re.search(
            r"rank 0 has written \d+\.\d kB of checkpoint\.pt and made no progress for \d+ s", message
        ), message
        assert o.value["missing"] == [0]
    # Rank 0, when its write wakes up and it reaches the barrier, fails too instead of going on alone.
    assert outcomes[0].ok and outcomes[0].value["raised"], outcomes[0]
    assert "gave up" in outcomes[0].value["message"] or "closed" in outcomes[0].value["message"]
    assert not (ckpt / "checkpoint.pt").exists() or (ckpt / "checkpoint.pt").stat().st_size > 900_000


@pytest.mark.timeout(90)
def test_sigkill_of_the_writer_mid_save_fails_fast(tmp_path):
    # The stall timeout is 20 s: the survivors must not need it, the closed connection tells them.
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    outcomes = run_ranks(
        workers.slow_writer,
        3,
        tmp_path / "ranks",
        deadline=60,
        args=(str(ckpt), 20.0, 16, 0.25, None, 6),
    )
    assert not any(o.hung for o in outcomes), outcomes
    assert outcomes[0].exitcode == -9
    for o in outcomes[1:]:
        assert o.ok, o
        assert o.value["raised"], o.value
        assert o.value["after"] <= 1.5 + SLACK, o.value
        message = o.value["message"]
        assert "rank 0 did not arrive" in message or "gave up waiting first" in message, message
        assert "writing checkpoint.pt" in message, message
    assert list(ckpt.iterdir()) == [p for p in ckpt.iterdir() if p.name.startswith(".")]
    assert not (ckpt / "checkpoint.pt").exists()


@pytest.mark.timeout(90)
def test_rank0_busy_without_writing_gets_the_process_group_timeout(tmp_path):
    # A 5 s validation pass on rank 0 against a 2 s barrier timeout: the process group's 60 s apply.
    outcomes = run_ranks(workers.busy_rank0, 2, tmp_path, deadline=60, args=(2.0, 5.0))
    assert all(o.ok for o in outcomes), outcomes
    assert all(o.value["raised"] is False for o in outcomes), outcomes
    assert outcomes[1].value["after"] >= 4.5


@pytest.mark.timeout(90)
def test_rank0_busy_past_the_process_group_timeout_fails(tmp_path):
    # The script's own process-group timeout is 5 s; rank 0 is busy for 15 s.
    outcomes = run_ranks(workers.busy_rank0, 2, tmp_path, deadline=60, args=(2.0, 15.0), pg_timeout=5)
    assert not any(o.hung for o in outcomes)
    waiting = outcomes[1]
    assert waiting.value["raised"], waiting
    assert 4.5 <= waiting.value["after"] <= 5 + SLACK, waiting.value
    message = waiting.value["message"]
    assert "rank 0 did not arrive and is not writing" in message, message
    assert "the process group's own timeout (5 s)" in message, message
    assert outcomes[0].value["raised"], outcomes[0]


@pytest.mark.timeout(90)
def test_progress_off_restores_the_fixed_timeout(tmp_path):
    # CKPTFIX_PROGRESS_INTERVAL=0: the operator asked for deadlines; a busy rank 0 fails at 2 s.
    outcomes = run_ranks(
        workers.busy_rank0, 2, tmp_path, deadline=60, args=(2.0, 8.0), env={"CKPTFIX_PROGRESS_INTERVAL": "0"}
    )
    waiting = outcomes[1]
    assert waiting.value["raised"], waiting
    assert waiting.value["after"] <= 2 + SLACK, waiting.value
    assert "rank 0 did not arrive" in waiting.value["message"]


@pytest.mark.timeout(90)
def test_hard_ceiling_ends_even_a_progressing_write(tmp_path):
    # Ceiling 5 s (and a process-group timeout of 5 s, which the ceiling may not undercut); the write
    # progresses for 8 s. The waiting rank gives up at the ceiling, saying the write was still going.
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    outcomes = run_ranks(
        workers.slow_writer,
        2,
        tmp_path / "ranks",
        deadline=60,
        args=(str(ckpt), 2.0, 16, 0.5),
        env={"CKPTFIX_BARRIER_CEILING": "5"},
        pg_timeout=5,
    )
    assert not any(o.hung for o in outcomes)
    waiting = outcomes[1]
    assert waiting.value["raised"], waiting
    assert 4.5 <= waiting.value["after"] <= 5 + SLACK, waiting.value
    message = waiting.value["message"]
    assert "rank 0 was still writing checkpoint.pt" in message and "hard ceiling of 5 s" in message, message
