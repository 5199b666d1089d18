"""The first barrier without init_sync() (review shape 13), on real gloo process groups.

The init call sits in another file, so the rewrite could not add init_sync() after it: the first
barrier creates the gloo group itself. That creation is a collective with a fixed timeout which cannot
complete while rank 0 writes, so the ranks first wait for each other in the store, judging rank 0 as
every barrier does, and create the group only once all are here. "cuda:gloo" is a default group with no
CPU backend, as with nccl or xccl: the only case where barriers need a group of their own.
"""

from __future__ import annotations

import re

import pytest

from tests.distributed import run_ranks
from tests.runtime import workers

SLACK = 4.0
LAZY = "the barrier group is created once every rank has reached this barrier"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("world", [2, 3])
def test_on_time_ranks_create_the_group_and_pass(tmp_path, world):
    outcomes = run_ranks(
        workers.barriers_pass, world, tmp_path, deadline=60, args=(False,), backend="cuda:gloo"
    )
    assert all(o.ok for o in outcomes), outcomes
    for o in outcomes:
        assert LAZY in o.log
        assert f"[rank {o.rank}] Final synchronization completed" in o.log


@pytest.mark.timeout(90)
def test_slow_first_save_without_init_sync_passes_on_every_rank(tmp_path):
    # 16 chunks 0.4 s apart: 6.4 s of steady writing against a 2 s stall timeout, before any group.
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    outcomes = run_ranks(
        workers.slow_first_save_without_init_sync,
        2,
        tmp_path / "ranks",
        deadline=60,
        args=(str(ckpt), 2.0, 16, 0.4),
        backend="cuda:gloo",
    )
    assert all(o.ok for o in outcomes), outcomes
    for o in outcomes:
        assert o.value["raised"] is False, o.value
        assert o.value["side_group"], o.value
        assert o.value["second"]["raised"] is False, o.value
        assert LAZY in o.log
    assert outcomes[1].value["after"] >= 5.0, f"rank 1 did not wait for the write: {outcomes[1].value}"
    assert (ckpt / "checkpoint.pt").stat().st_size > 900_000
    assert "Checkpoint saved successfully" in outcomes[0].log


@pytest.mark.timeout(90)
def test_first_save_that_stops_mid_file_without_init_sync_fails_fast(tmp_path):
    # 4 chunks (0.25 MB) in 1 s, then the write stops for 10 s: 2 s without progress fails rank 1,
    # before any group exists; rank 0, when it wakes up and reaches the barrier, fails too.
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    timeout = 2.0
    outcomes = run_ranks(
        workers.slow_first_save_without_init_sync,
        2,
        tmp_path / "ranks",
        deadline=75,
        args=(str(ckpt), timeout, 16, 0.25, 4, 10.0),
        backend="cuda:gloo",
    )
    assert not any(o.hung for o in outcomes), outcomes
    assert all(o.ok for o in outcomes), outcomes
    waiting = outcomes[1]
    assert waiting.value["raised"], waiting.value
    assert waiting.value["after"] <= 1.0 + timeout + SLACK, waiting.value
    message = waiting.value["message"]
    assert re.search(
        r"rank 0 has written \d+\.\d kB of checkpoint\.pt and made no progress for \d+ s", message
    ), message
    assert "stuck, not slow" in message, message
    assert waiting.value["missing"] == [0]
    assert not waiting.value["side_group"]
    writer = outcomes[0]
    assert writer.value["raised"], writer.value
    # Through its publisher ("the other ranks gave up waiting for this rank") or the group's outcome
    # ("rank 1 gave up waiting first"), whichever it reads first; either way with rank 1's reason.
    assert "gave up waiting" in writer.value["message"], writer.value
    assert "rank 0 has written" in writer.value["message"], writer.value
    assert writer.value["after"] <= SLACK, writer.value  # it learns at once, no group creation to wait in
    assert not writer.value["side_group"]


@pytest.mark.timeout(90)
def test_late_rank0_learns_from_the_group_outcome_that_the_others_gave_up(tmp_path):
    # Progress off (no publisher to carry the abandonment): rank 1 gives up on an idle rank 0 after the
    # fixed 2 s; rank 0, arriving 6 s late, finds the group's outcome taken and fails at once instead of
    # waiting for the others in the group's creation.
    outcomes = run_ranks(
        workers.late_without_init_sync,
        2,
        tmp_path,
        deadline=60,
        args=(0, 2.0, 6.0),
        env={"CKPTFIX_PROGRESS_INTERVAL": "0"},
        backend="cuda:gloo",
    )
    assert all(o.ok for o in outcomes), outcomes
    waiting, late = outcomes[1], outcomes[0]
    assert waiting.value["raised"] and waiting.value["after"] <= 2.0 + SLACK, waiting.value
    assert "rank 0 did not arrive" in waiting.value["message"], waiting.value
    assert late.value["raised"] and late.value["after"] <= SLACK, late.value
    message = late.value["message"]
    assert "rank 1 gave up waiting first: rank 0 did not arrive" in message, message
    assert "Cause:" not in message, message
