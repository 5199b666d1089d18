"""A failed save on rank 0 reaches every rank, and the policy acts identically everywhere."""

from __future__ import annotations

import pytest
import torch

from tests.distributed import run_ranks
from tests.runtime import workers


def _assert_previous_checkpoint_intact(directory):
    assert torch.load(directory / "checkpoint.pt")["version"] == 1
    leftovers = [p.name for p in directory.iterdir() if p.name != "checkpoint.pt"]
    assert leftovers == [], f"temp files left behind: {leftovers}"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("world", [2, 4])
def test_continue_policy_logs_on_every_rank_and_training_goes_on(tmp_path, world):
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    outcomes = run_ranks(workers.failed_save, world, tmp_path / "ranks", deadline=60, args=(str(ckpt_dir),))
    assert all(o.ok for o in outcomes), outcomes
    assert all(o.value == {"raised": False} for o in outcomes)
    path = ckpt_dir / "checkpoint.pt"
    for o in outcomes:
        assert f"[rank {o.rank}] rank 0's save of {path} failed: RuntimeError" in o.log
        assert "training continues" in o.log
    assert f"[rank 0] Failed to save checkpoint {path}" in outcomes[0].log
    _assert_previous_checkpoint_intact(ckpt_dir)


@pytest.mark.timeout(90)
def test_raise_policy_raises_on_every_rank_together(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    outcomes = run_ranks(
        workers.failed_save,
        2,
        tmp_path / "ranks",
        deadline=60,
        args=(str(ckpt_dir),),
        env={"CKPTFIX_ON_SAVE_ERROR": "raise"},
    )
    assert all(o.ok for o in outcomes), outcomes
    for o in outcomes:
        assert o.value["raised"] is True
        assert o.value["path"] == str(ckpt_dir / "checkpoint.pt")
        assert o.value["writer"] == 0
        assert o.value["reason"].startswith("RuntimeError")
    _assert_previous_checkpoint_intact(ckpt_dir)
