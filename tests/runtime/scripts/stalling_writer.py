"""Launched by torchrun in the tests: every rank meets at a checkpoint barrier; STALL_RANK arrives late.

Rank 0 stalls the way a writer does on a hung file system: its checkpoint write stops half-way (the
runtime must fail the job fast, saying how far the write got); another rank just sleeps.
"""

import io
import os
import tempfile
import time

import torch
import torch.distributed as dist

from ckptfix.runtime import (
    atomic_save,
    checkpoint_barrier,
    final_sync,
    init_sync,
    is_main_process,
    report_save_failure,
)

_real_save = torch.save


def _stalling_save(obj, f, *args, **kwargs):
    buffer = io.BytesIO()
    _real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    time.sleep(60)
    f.write(data[len(data) // 2 :])


dist.init_process_group("gloo")
init_sync()
stall = dist.get_rank() == int(os.environ.get("STALL_RANK", "-1"))
if is_main_process():
    path = os.path.join(tempfile.mkdtemp(), "checkpoint.pt")
    if stall:
        torch.save = _stalling_save
    try:
        atomic_save({"weights": torch.zeros(100_000)}, path)
    except Exception as exc:
        report_save_failure(path, exc)
elif stall:
    time.sleep(60)
checkpoint_barrier(timeout=120)
final_sync(timeout=180)
if is_main_process():
    print("training finished", flush=True)
dist.destroy_process_group()
