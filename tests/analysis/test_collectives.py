"""CKP006: collectives only the main process reaches; and the rewrite never creates one."""

from __future__ import annotations

import pytest

from ckptfix.api import check_source
from tests.codemods.helpers import codes, findings, rewrite, src


@pytest.mark.parametrize(
    "body",
    [
        "dist.all_reduce(t)",
        "dist.broadcast_object_list(objs, src=0)",
        "optimizer.consolidate_state_dict(to=0)",
        "dtensor.full_tensor()",
        "dcp.save(state, checkpoint_id=p)",
        "get_model_state_dict(model)",
        "dist.barrier()",
        "accelerator.wait_for_everyone()",
        "dist.all_gather_object(out, objs)",
        "dist.reduce_scatter_tensor(out, t)",
        "dist.all_to_all_single(out, t)",
        "dist.send(t, dst=1)",
        "dist.new_group([0, 1])",
        "init_device_mesh('cpu', (2,))",
        "dcp.load(state, checkpoint_id=p)",
        "FSDP.full_optim_state_dict(model, optimizer)",
        "accelerator.save_state(p)",
        "self.accelerator.gather(t)",
        "model_engine.save_checkpoint(p)",
        "trainer.save_model(p)",
        "trainer.strategy.barrier()",
        "fabric.save(p, state)",
    ],
)
def test_collective_directly_under_guard(body: str) -> None:
    header = (
        "import torch\nimport torch.distributed as dist\nimport torch.distributed.checkpoint as dcp\n"
        "from torch.distributed.checkpoint.state_dict import get_model_state_dict\n"
        "from torch.distributed.device_mesh import init_device_mesh\n"
        "from torch.distributed.fsdp import FullyShardedDataParallel as FSDP\n"
    )
    before = src(
        f"def f(self, rank, t, out, objs, optimizer, dtensor, state, p, model, accelerator, model_engine, "
        f"trainer, fabric):\n"
        f"    if rank == 0:\n        {body}\n",
        header,
    )
    assert [f[1] for f in findings(before)] == ["CKP006"]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_collective_through_helper_chain(depth: int) -> None:
    helpers = "def h1(opt):\n    opt.consolidate_state_dict(to=0)\n    torch.save(opt.state_dict(), 'o.pt')\n"
    for level in range(2, depth + 1):
        helpers += f"def h{level}(opt):\n    h{level - 1}(opt)\n"
    before = src(
        helpers + f"def train(opt, rank):\n    if rank == 0:\n        h{depth}(opt)\n    dist.barrier()\n"
    )
    assert (4, "CKP006", True) in findings(before)
    after = rewrite(before)
    # The call-site guard is gone, the consolidation runs on every rank, the write is guarded inside.
    assert f"def train(opt, rank):\n    h{depth}(opt)\n    dist.barrier()\n" in after
    assert "    opt.consolidate_state_dict(to=0)\n    if is_main_process():\n        try:\n" in after
    assert codes(after) == []


def test_collective_in_rank_zero_only_function() -> None:
    before = src("@rank_zero_only\ndef log_metrics(t):\n    dist.all_reduce(t)\n")
    assert codes(before) == ["CKP006"]


def test_ddp_state_dict_and_module_methods_are_not_collectives() -> None:
    before = src(
        """
        def save_checkpoint(model):
            torch.save(model.module.state_dict(), "c.pt")

        def train(model, rank):
            if rank == 0:
                save_checkpoint(model)
            dist.barrier()
        """
    )
    assert "CKP006" not in codes(before)


def test_rewrite_never_creates_a_collective_under_a_guard() -> None:
    before = src(
        """
        def save(model, optimizer, path):
            optimizer.consolidate_state_dict(to=0)
            torch.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, path)
            dist.all_reduce(model.flag)
            print("checkpoint saved")

        def train(model, optimizer):
            for epoch in range(3):
                save(model, optimizer, "c.pt")
        """
    )
    assert "CKP006" not in codes(before)
    after = rewrite(before)
    assert "CKP006" not in codes(after)
    # The consolidated optimizer state exists on rank 0 only (ZeroRedundancyOptimizer.state_dict()
    # raises elsewhere): the object stays inside the guard, the collectives stay outside it.
    assert (
        "    optimizer.consolidate_state_dict(to=0)\n    if is_main_process():\n        try:\n"
        '            atomic_save({"model": model.state_dict(), "optim": optimizer.state_dict()}, path)\n'
    ) in after
    assert "    dist.all_reduce(model.flag)\n" in after


def test_save_next_to_a_collective_argument_is_report_only() -> None:
    before = src("def f(m):\n    torch.save(m, get_path(dist.broadcast_object_list([0])))\n")
    assert (4, "CKP001", False) in findings(before)


def test_break_under_guard_in_a_training_loop() -> None:
    before = src(
        """
        def train(model, rank, steps):
            for step in range(steps):
                model(step).backward()
                if rank == 0 and step > 10:
                    torch.save(model, "c.pt")
                    break
            dist.barrier()
        """
    )
    assert (8, "CKP006", False) in findings(before)


def test_stop_flag_set_under_guard() -> None:
    before = src(
        """
        def train(self, model):
            while not self.should_stop:
                model(1).backward()
                if is_main_process() and model.done():
                    self.should_stop = True
        """
    )
    assert (7, "CKP006", False) in findings(before)


def test_break_every_rank_takes_is_fine() -> None:
    before = src(
        """
        def train(model, rank, steps):
            for step in range(steps):
                model(step).backward()
                if step > 10:
                    break
                if rank == 0:
                    print(step)
            for name in names:
                if rank == 0:
                    break
        """
    )
    assert "CKP006" not in codes(before)


def test_rooted_and_point_to_point_collectives_joined_in_the_other_branch_are_not_findings():
    source = """
import torch.distributed as dist

def exchange(t, chunks, rank):
    if rank == 0:
        dist.scatter(t, chunks, src=0)
    else:
        dist.scatter(t, src=0)
    if dist.get_rank() == 0:
        dist.send(t, dst=1)
    elif dist.get_rank() == 1:
        dist.recv(t, src=0)
"""
    assert [f for f in check_source(source) if f.code == "CKP006"] == []


def test_a_collective_in_one_branch_only_is_still_a_finding():
    source = """
import torch.distributed as dist

def exchange(t, rank):
    if rank == 0:
        dist.all_reduce(t)
    else:
        print("waiting")
"""
    assert [f.line for f in check_source(source) if f.code == "CKP006"] == [6]


def test_a_boolean_question_about_ranks_is_not_a_rank_number():
    # `not self._is_same_rank(i)` is not `rank == 0` (seen in torch's pipelining stage).
    source = """
import torch.distributed as dist

class Stage:
    def forward_vote(self, acc, peer):
        if not self.is_last and not self._is_same_rank(self.stage_index + 1):
            dist.send(acc, dst=peer)
"""
    assert [f for f in check_source(source) if f.code == "CKP006"] == []


@pytest.mark.parametrize(
    ("call", "is_barrier"),
    [
        ("dist.barrier()", True),
        ("dist_barrier()", True),  # a helper named for a barrier
        ("comm.synchronize()", True),
        ("threading.Barrier(2)", False),  # builds a barrier object; waits for nothing
        ("torch.cuda.synchronize()", False),  # the device, not the ranks
    ],
)
def test_barrier_calls(call: str, is_barrier: bool) -> None:
    import ast

    from ckptfix.analysis.collectives import is_barrier_call
    from ckptfix.analysis.names import Names

    module = ast.parse(f"import threading\nimport torch\nimport torch.distributed as dist\n{call}\n")
    node = module.body[-1].value  # type: ignore[attr-defined]
    assert is_barrier_call(node, Names(module)) is is_barrier
