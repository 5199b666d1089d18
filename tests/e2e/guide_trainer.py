"""A trainer that followed the guide by hand: call-site guard, int barrier timeouts in try/except.

`dist.barrier(timeout=120)` raises TypeError and the except hides it, so rank 1 never waits for rank
0's (slow) save. Each rank logs when rank 0 finished saving and when each rank got past the barrier.
"""

import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

CKPT_DIR = sys.argv[1]
LOG_DIR = sys.argv[2]


def is_main_process():
    return not dist.is_initialized() or dist.get_rank() == 0


class Config:
    def __init__(self):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()


class Trainer:
    def __init__(self, config):
        torch.manual_seed(0)
        self.config = config
        self.model = DDP(torch.nn.Linear(4, 2))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.current_step = 0
        self.last_checkpoint_step = -1
        self.events = {"saved": [], "passed": []}

    def save_training_checkpoint(self, val_loss, is_best):
        checkpoint = {"model": self.model.module.state_dict(), "step": self.current_step}
        checkpoint_path = os.path.join(CKPT_DIR, f"checkpoint_step_{self.current_step}.pt")
        try:
            print(f"Saving checkpoint: {checkpoint_path}")
            time.sleep(2.0)  # a slow file system
            torch.save(checkpoint, checkpoint_path)
            self.last_checkpoint_step = self.current_step
            self.events["saved"].append(time.time())
            print(f"Checkpoint saved successfully: {checkpoint_path}")
        except Exception as e:
            print(f"Failed to save checkpoint: {e}")

    def train(self):
        for _epoch in range(2):
            loss = self.model(torch.randn(8, 4)).pow(2).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.current_step += 1
            # Only main process saves checkpoint
            if is_main_process():
                try:
                    self.save_training_checkpoint(val_loss=float(loss), is_best=False)
                except Exception as e:
                    print(f"Failed to save checkpoint: {e}")
            # Synchronize all processes after checkpointing
            if self.config.world_size > 1:
                try:
                    dist.barrier(timeout=120)  # 2 minute timeout for checkpoint sync
                except Exception as e:
                    print(f"Checkpoint barrier timeout on rank {self.config.rank}: {e}")
            self.events["passed"].append(time.time())
        # Synchronize all processes after final checkpoint and evaluation
        if self.config.world_size > 1:
            try:
                dist.barrier(timeout=180)  # 3 minute timeout for final sync
                print(f"Rank {self.config.rank}: Final synchronization completed")
            except Exception as e:
                print(f"Final barrier timeout on rank {self.config.rank}: {e}")


def main():
    dist.init_process_group("gloo")
    trainer = Trainer(Config())
    trainer.train()
    dist.destroy_process_group()
    with open(os.path.join(LOG_DIR, f"events_{trainer.config.rank}.json"), "w") as log:
        json.dump(trainer.events, log)


if __name__ == "__main__":
    main()
