"""Launched by torchrun in the tests: every rank meets at a checkpoint barrier; STALL_RANK arrives late."""

import os
import time

import torch.distributed as dist

from ckptfix.runtime import checkpoint_barrier, final_sync, init_sync, is_main_process

dist.init_process_group("gloo")
init_sync()
if dist.get_rank() == int(os.environ.get("STALL_RANK", "-1")):
    time.sleep(60)  # e.g. a checkpoint write on a slow file system
checkpoint_barrier(timeout=120)
final_sync(timeout=180)
if is_main_process():
    print("training finished", flush=True)
dist.destroy_process_group()
