"""checkpoint_barrier / final_sync on real gloo process groups, with late, dead and timely ranks."""

from __future__ import annotations

import pytest

from tests.distributed import run_ranks
from tests.runtime import workers

# Slack over the barrier timeout within which every waiting rank must have raised.
SLACK = 4.0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("use_init_sync", [True, False])
def test_barriers_pass_when_every_rank_arrives(tmp_path, world, use_init_sync):
    outcomes = run_ranks(workers.barriers_pass, world, tmp_path, deadline=60, args=(use_init_sync,))
    assert all(o.ok for o in outcomes), outcomes
    assert [o.value["main"] for o in outcomes] == [True] + [False] * (world - 1)
    for o in outcomes:
        assert f"[rank {o.rank}] Final synchronization completed" in o.log


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("world", "late"), [(2, 1), (4, 2), (4, 3)])
def test_late_rank_makes_every_waiting_rank_raise_in_time(tmp_path, world, late):
    """A rank other than the writer, late while rank 0 waits idle at the barrier: the fixed timeout.

    (Rank 0 late but alive is busy under its guard: it gets the process group's own timeout now, see
    test_progress_barrier.py.)"""
    timeout, delay = 2.0, 5.0
    outcomes = run_ranks(workers.late_rank, world, tmp_path, deadline=60, args=(late, timeout, delay))
    assert not any(o.hung for o in outcomes), "a rank was left behind"
    for o in outcomes:
        assert o.exitcode == 0 and o.error_type is None, o
        assert o.value["raised"], f"rank {o.rank} passed a barrier that rank {late} never reached in time"
        assert "final barrier not attempted: the earlier barrier 'checkpoint' #2 failed" in o.value["refused"]
        if o.rank == late:
            # The late rank finds the others gone: it must fail too, not wait forever.
            assert "barrier 'checkpoint' (#2) failed on rank" in o.value["message"]
            continue
        assert timeout - 0.5 <= o.value["after"] <= timeout + SLACK, o.value
        assert o.value["missing"] == [late]
        message = o.value["message"]
        assert f"rank {late} did not arrive" in message
        assert "'checkpoint'" in message and "timeout 2 s" in message
        assert f"[rank {o.rank}] checkpoint barrier 'checkpoint'" in o.log


@pytest.mark.timeout(90)
def test_first_barrier_creating_its_group_still_times_out(tmp_path):
    """No init_sync() (the init call sits in another file) and a default group without a CPU backend
    (as with nccl): the first barrier creates the gloo group it needs once every rank is there. Rank 0
    is late but published nothing yet (no init_sync, no atomic_save): the fixed timeout, as before."""
    timeout, delay = 2.0, 10.0
    outcomes = run_ranks(
        workers.late_without_init_sync,
        2,
        tmp_path,
        deadline=60,
        args=(0, timeout, delay),
        backend="cuda:gloo",
    )
    assert not any(o.hung for o in outcomes)
    waiting = outcomes[1]
    assert waiting.value["raised"], waiting
    assert waiting.value["after"] <= timeout + SLACK, waiting.value
    assert "created once every rank has reached this barrier" in waiting.log
    assert "rank 0 did not arrive" in waiting.value["message"], waiting.value
    # Rank 0, when it arrives, finds that the others gave up: it fails too, instead of waiting in
    # the group creation.
    assert outcomes[0].value["raised"], outcomes[0]
    assert "gave up waiting" in outcomes[0].value["message"], outcomes[0]


@pytest.mark.timeout(90)
def test_dead_rank_is_named_and_survivors_fail_fast(tmp_path):
    timeout = 10.0
    outcomes = run_ranks(workers.dead_rank, 3, tmp_path, deadline=60, args=(2, timeout))
    assert not any(o.hung for o in outcomes)
    assert outcomes[2].exitcode == 17
    for o in outcomes[:2]:
        assert o.value["raised"], o
        assert o.value["after"] <= timeout + SLACK
        assert o.value["missing"] == [2]
        assert "rank 2 did not arrive" in o.value["message"]


@pytest.mark.timeout(90)
def test_barrier_timeout_from_environment_wins(tmp_path):
    # The code asks for 60 s; the operator's variable says 2 s, and the barrier must honour it.
    outcomes = run_ranks(
        workers.late_rank,
        2,
        tmp_path,
        deadline=60,
        args=(1, 60.0, 8.0),
        env={"CKPTFIX_BARRIER_TIMEOUT": "2"},
    )
    waiting = outcomes[0]
    assert waiting.value["raised"] and waiting.value["after"] <= 2 + SLACK, waiting
    assert "timeout 2 s" in waiting.value["message"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("path", ["default_barrier", "async_barrier"])
def test_fallback_barriers_time_out_and_carry_failures(tmp_path, path):
    """The paths used where no gloo group exists (nccl/xccl-only), exercised on a real gloo group."""
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    outcomes = run_ranks(
        workers.fallback_path, 2, tmp_path / "ranks", deadline=60, args=(path, 0, str(ckpt_dir))
    )
    assert not any(o.hung for o in outcomes)
    waiting = outcomes[1]
    assert waiting.value["raised"] and waiting.value["after"] <= 2 + SLACK, waiting
    assert waiting.value["missing"] == [0]
    assert f"rank 0's save of {ckpt_dir / 'checkpoint.pt'} failed: RuntimeError" in waiting.log
    assert not (ckpt_dir / "checkpoint.pt").exists()
    assert list(ckpt_dir.iterdir()) == []
