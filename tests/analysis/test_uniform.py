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
    return RankUniform(tree, guards).test(marked[0].test)


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
                global_step += 1
                if global_step % 500 == 0:  # here
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
    "builtins of uniform values": """
        def train(args):
            for step in range(args.steps):
                if step % max(1, int(args.steps / 10)) == 0:  # here
                    pass
        """,
}

RANK_DEPENDENT = {
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
