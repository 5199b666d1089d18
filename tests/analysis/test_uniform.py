"""RankUniform: which `if` tests every rank evaluates alike (the barrier may then go inside the branch)."""

from __future__ import annotations

import ast
import textwrap

import pytest

from ckptfix.analysis.guards import GuardRecognizer
from ckptfix.analysis.names import Names
from ckptfix.analysis.tree import Tree
from ckptfix.analysis.uniform import RankUniform


def _judge(source: str) -> bool:
    """The verdict on the test of the `if` marked `# here`."""
    source = textwrap.dedent(source)
    module = ast.parse(source)
    tree = Tree(source, module)
    guards = GuardRecognizer(Names(module, tree))
    guards.learn_main_only_objects(tree)
    marked = [
        node
        for node in tree.nodes
        if isinstance(node, ast.If) and "# here" in source.splitlines()[node.lineno - 1]
    ]
    assert len(marked) == 1
    return RankUniform(tree, guards, _syncs).test(marked[0].test)


def _syncs(loop: ast.AST) -> bool:
    """As in training code: the loop's `loss.backward()` meets the other ranks every iteration."""
    return any(isinstance(n, ast.Attribute) and n.attr == "backward" for n in ast.walk(loop))


UNIFORM = {
    "range counter": """
        def train(n):
            for step in range(n):
                if step % 10 == 0:  # here
                    pass
        """,
    "range counter with uniform start": """
        START = 5
        def train(n):
            for step in range(START, n, 2):
                if (step + 1) % 10 == 0:  # here
                    pass
        """,
    "enumerate index": """
        def train(loader):
            for i, batch in enumerate(loader, start=1):
                if i % 100 == 0:  # here
                    pass
        """,
    "counter incremented each step": """
        def train(loader, every):
            global_step = 0
            for batch in loader:
                loss = model(batch)
                loss.backward()
                global_step += 1
                if global_step % 500 == 0:  # here
                    pass
        """,
    "a uniform early exit before the counter": """
        def train(loader, args):
            step = 0
            for batch in loader:
                model(batch).backward()
                if step == 0 and args.eval_only:
                    break
                step += 1
                if step % 100 == 0:  # here
                    pass
        """,
    "module-level script counter and constant": """
        eval_interval = 200
        iter_num = 0
        while True:
            if iter_num % eval_interval == 0:  # here
                pass
            iter_num += 1
        """,
    "settings object": """
        def train(args):
            for epoch in range(args.epochs):
                if epoch % args.save_every == 0 or epoch == args.epochs - 1:  # here
                    pass
        """,
    "a setting that only mentions processing": """
        def main(parser):
            args = parser.parse_args()
            if args.multiprocessing_distributed:  # here
                pass
        """,
    "builtins of uniform values": """
        def train(args):
            for step in range(args.steps):
                if step % max(1, int(args.steps / 10)) == 0:  # here
                    pass
        """,
}

RANK_DEPENDENT = {
    # from a review that ran each of these under torchrun: the rewritten file stopped at the barrier
    "set after a call that may raise, in a try": """
        def train(args, local):
            ok = False
            try:
                open(local).close()
                ok = True
            except OSError:
                pass
            for step in range(args.steps):
                if step % 10 == 0 and ok:  # here
                    pass
        """,
    "set in a with that may suppress the error": """
        import contextlib
        def train(args, local):
            every = 1
            with contextlib.suppress(OSError):
                open(local).close()
                every = 50
            for step in range(args.steps):
                if step % every == 0:  # here
                    pass
        """,
    "set in a loop's else": """
        def train(args, loader):
            every = 100
            for x in loader:
                if x is None:
                    break
            else:
                every = 1
            for step in range(args.steps):
                if step % every == 0:  # here
                    pass
        """,
    "counted over per-rank data": """
        def train(my_files):
            n = 0
            for f in my_files:
                n += 1
            if n > 5:  # here
                pass
        """,
    "set after a rank-dependent early exit": """
        def train(loader):
            n = 0
            for x in loader:
                model(x).backward()
                if x is None:
                    continue
                n += 1
                if n % 10 == 0:  # here
                    pass
        """,
    "a setting changed through setattr": """
        import torch.distributed as dist
        def train(args):
            setattr(args, "save_every", 5 if dist.get_rank() == 0 else 7)
            for epoch in range(args.epochs):
                if epoch % args.save_every == 0:  # here
                    pass
        """,
    "a per-process setting of HF": """
        def train(training_args):
            for epoch in range(3):
                if epoch % 5 == 0 and training_args.should_log:  # here
                    pass
        """,
    "settings picked per rank": """
        import torch.distributed as dist
        def train(configs):
            cfg = configs[dist.get_rank()]
            for epoch in range(3):
                if epoch % cfg.save_every == 0:  # here
                    pass
        """,
    "module names rebound through globals()": """
        import torch.distributed as dist
        eval_interval = 100
        globals()["eval_interval"] = 100 + dist.get_rank()
        for iter_num in range(1000):
            if iter_num % eval_interval == 0:  # here
                pass
        """,
    "settings kept under another name": """
        def train(args):
            a = args
            a.every = 3
            for epoch in range(3):
                if epoch % args.every == 0:  # here
                    pass
        """,
    "rank test": """
        def train(n, rank):
            for step in range(n):
                if step % 10 == 0 and rank == 0:  # here
                    pass
        """,
    "rank-derived flag": """
        import torch.distributed as dist
        def train(n):
            is_master = dist.get_rank() == 0
            for step in range(n):
                if is_master:  # here
                    pass
        """,
    "parameter": """
        def train(loss, best):
            if loss < best:  # here
                pass
        """,
    "per-process setting": """
        def train(args):
            if args.local_rank == 0:  # here
                pass
        """,
    "setting the code assigns": """
        import torch.distributed as dist
        def train(args):
            args.should_save = dist.get_rank() == 0
            if args.should_save:  # here
                pass
        """,
    "counter bumped on one rank only": """
        def train(loader, rank):
            step = 0
            for batch in loader:
                if rank == 0:
                    step += 1
                if step % 10 == 0:  # here
                    pass
        """,
    "loop over data": """
        def train(loader):
            for step in loader:
                if step % 10 == 0:  # here
                    pass
        """,
    "range start from a checkpoint": """
        def train(ckpt, n):
            start = ckpt["step"]
            for step in range(start, n):
                if step % 10 == 0:  # here
                    pass
        """,
    "shadowed range": """
        from mylib import range
        def train(n):
            for step in range(n):
                if step % 10 == 0:  # here
                    pass
        """,
    "global written elsewhere": """
        step = 0
        def bump():
            global step
            step = compute()
        def train():
            if step % 10 == 0:  # here
                pass
        """,
    "call of anything else": """
        def train(model):
            if model.should_save():  # here
                pass
        """,
    "attribute of self": """
        class T:
            def train(self):
                if self.global_step % 10 == 0:  # here
                    pass
        """,
}


@pytest.mark.parametrize("source", UNIFORM.values(), ids=UNIFORM.keys())
def test_uniform(source: str) -> None:
    assert _judge(source)


@pytest.mark.parametrize("source", RANK_DEPENDENT.values(), ids=RANK_DEPENDENT.keys())
def test_rank_dependent(source: str) -> None:
    assert not _judge(source)


def test_a_function_defined_before_is_no_early_exit() -> None:
    assert _judge(
        """
        def helper():
            return 1
        iter_num = 0
        while True:
            if iter_num % 10 == 0:  # here
                pass
            iter_num += 1
        """
    )
