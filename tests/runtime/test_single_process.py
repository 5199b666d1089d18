"""Without torch.distributed initialized, every runtime function is a safe single-process no-op."""

from __future__ import annotations

import logging

import pytest
import torch

from ckptfix.runtime import (
    CheckpointSaveError,
    atomic_save,
    checkpoint_barrier,
    final_sync,
    init_sync,
    is_main_process,
    report_save_failure,
)


def test_is_main_process_without_init():
    assert not torch.distributed.is_initialized()
    assert is_main_process() is True


def test_barriers_and_init_are_no_ops(caplog):
    caplog.set_level(logging.INFO, logger="ckptfix.runtime")
    init_sync()
    checkpoint_barrier(timeout=0.01)
    final_sync(timeout=0.01)
    assert "[rank 0] Final synchronization completed" in caplog.text


def test_failure_with_continue_policy_is_logged_and_training_goes_on(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("CKPTFIX_ON_SAVE_ERROR", raising=False)
    caplog.set_level(logging.INFO, logger="ckptfix.runtime")
    report_save_failure(tmp_path / "c.pt", RuntimeError("disk full"))
    checkpoint_barrier()
    assert f"[rank 0] Failed to save checkpoint {tmp_path / 'c.pt'}: RuntimeError: disk full" in caplog.text
    assert "training continues" in caplog.text


def test_failure_with_raise_policy_raises_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CKPTFIX_ON_SAVE_ERROR", "raise")
    with pytest.raises(
        CheckpointSaveError, match=r"rank 0's save of .*c\.pt failed \(OSError: nope\)"
    ) as info:
        report_save_failure(str(tmp_path / "c.pt"), OSError("nope"))
    assert info.value.writer_rank == 0 and info.value.path == str(tmp_path / "c.pt")


def test_bad_policy_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CKPTFIX_ON_SAVE_ERROR", "ignore")
    with pytest.raises(ValueError, match="CKPTFIX_ON_SAVE_ERROR='ignore' must be one of continue, raise"):
        checkpoint_barrier()


def test_atomic_save_works_without_distributed(tmp_path):
    atomic_save({"a": torch.ones(2)}, tmp_path / "x.pt")
    assert torch.equal(torch.load(tmp_path / "x.pt")["a"], torch.ones(2))
