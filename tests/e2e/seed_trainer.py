"""A seed-style DDP trainer (the guide's shape): every rank saves the same checkpoints.

Run under torchrun with a checkpoint directory and a log directory. An audit hook (files opened for
writing or renamed from Python) and a wrapper around torch.save (which opens paths in C++) record
every write into the checkpoint directory, so the test can tell which ranks wrote, whatever code
does the writing.
"""

import json
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

CKPT_DIR = os.path.realpath(sys.argv[1])
LOG_DIR = sys.argv[2]
WRITES = []


def _audit(event, args):
    if event == "open" and args[0] is not None and not isinstance(args[0], int):
        path, mode, flags = args
        writing = (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and flags & (os.O_WRONLY | os.O_RDWR)
        )
        if writing and os.path.realpath(os.fsdecode(path)).startswith(CKPT_DIR):
            WRITES.append(os.fsdecode(path))
    elif event == "os.rename" and os.path.realpath(os.fsdecode(args[1])).startswith(CKPT_DIR):
        WRITES.append(os.fsdecode(args[1]))


sys.addaudithook(_audit)
_torch_save = torch.save


def _recording_save(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)) and os.path.realpath(os.fspath(f)).startswith(CKPT_DIR):
        WRITES.append(os.fspath(f))
    return _torch_save(obj, f, *args, **kwargs)  # ckptfix: ignore (test instrumentation)


torch.save = _recording_save


class Trainer:
    def __init__(self, rank):
        torch.manual_seed(0)
        self.rank = rank
        self.model = DDP(torch.nn.Linear(4, 2))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.current_step = 0
        self.best_val_loss = float("inf")
        self.last_checkpoint_step = -1

    def save_training_checkpoint(self, val_loss, is_best):
        checkpoint = {
            "model": self.model.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.current_step,
            "val_loss": val_loss,
        }
        checkpoint_path = os.path.join(CKPT_DIR, f"checkpoint_step_{self.current_step}.pt")
        print(f"Saving checkpoint: {checkpoint_path}")
        torch.save(checkpoint, checkpoint_path)
        self.last_checkpoint_step = self.current_step
        print(f"Checkpoint saved successfully: {checkpoint_path}")
        if is_best:
            best_path = os.path.join(CKPT_DIR, "best_model.pt")
            torch.save(checkpoint, best_path)

    def train(self, epochs=3):
        generator = torch.Generator().manual_seed(self.rank)
        for _epoch in range(epochs):
            for _ in range(4):
                loss = self.model(torch.randn(8, 4, generator=generator)).pow(2).mean()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.current_step += 1
            current_val_loss = float(loss.detach())
            is_best = current_val_loss < self.best_val_loss
            if is_best:
                self.best_val_loss = current_val_loss
            self.save_training_checkpoint(val_loss=current_val_loss, is_best=is_best)
        torch.save(self.model.module.state_dict(), os.path.join(CKPT_DIR, "final_model.pt"))


def main():
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    Trainer(rank).train()
    dist.destroy_process_group()
    with open(os.path.join(LOG_DIR, f"writes_{rank}.json"), "w") as log:
        json.dump(WRITES, log)


if __name__ == "__main__":
    main()
