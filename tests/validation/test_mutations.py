"""Deliberately wrong edit plans, fed past the planner: the validator refuses each, in words (issue 13).

A validator that accepted every plan would fail every test here; each test also checks that a right
plan for the same code passes, so a validator that refused everything fails too.
"""

from __future__ import annotations

import ast

from ckptfix.analysis.plan import Edit, Insert, SplitGuard, WrapGuard
from ckptfix.api import _analyze
from ckptfix.options import Options
from ckptfix.validation.decide import validate_edits
from ckptfix.validation.validator import Verdict
from tests.codemods.helpers import src

OPTIONS = Options(unsafe_fixes=True)
HEADER = "import shutil\nimport torch\nimport torch.distributed as dist\n"
BARRIER = "{checkpoint_barrier}(timeout=120)"


def _source(code: str) -> str:
    return src(code, HEADER)  # with a `__main__` block calling the functions, as a script does


def _statement(source: str, text: str) -> ast.stmt:
    """The statement whose first line contains `text`."""
    analysis, _ = _analyze(source, "t.py", OPTIONS)
    for node in analysis.tree.nodes:
        if isinstance(node, ast.stmt) and text in analysis.tree.lines[node.lineno - 1]:
            return node
    raise AssertionError(f"no statement with {text!r}")


def _key(source: str, text: str) -> tuple[int, int]:
    stmt = _statement(source, text)
    return (stmt.lineno, stmt.col_offset)


def _verdict(source: str, edits: list[Edit]) -> Verdict:
    analysis, _ = _analyze(source, "t.py", OPTIONS)
    return validate_edits(source, [edits], OPTIONS, analysis)


def _barrier_after(source: str, text: str) -> Insert:
    return Insert(_key(source, text), True, BARRIER, frozenset({"checkpoint_barrier"}))


def _guard(source: str, text: str) -> WrapGuard:
    return WrapGuard(
        key=_key(source, text),
        followers=0,
        dest=(1, "f"),
        obj=None,
        hoist_name=None,
        preceders=0,
        exc_name="exc",
        test="{is_main_process}()",
        handler="{report_save_failure}(__path__, {exc})",
        symbols=frozenset({"is_main_process", "report_save_failure"}),
        reraise=True,
    )


def _refused(verdict: Verdict, *words: str) -> None:
    assert not verdict.valid, "the validator accepted a wrong plan"
    assert any(all(w in reason for w in words) for reason in verdict.reasons), verdict.reasons


TRAINING_LOOP = """
    def train(model, rank, loader):
        for step, batch in enumerate(loader):
            loss = model(batch)
            loss.backward()
            if rank == 0:
                torch.save(model.state_dict(), "c.pt")
"""


def test_a_barrier_inside_the_guard() -> None:
    source = _source(TRAINING_LOOP)
    _refused(_verdict(source, [_barrier_after(source, "torch.save")]), "main-process guard at line 8")
    assert _verdict(source, [_barrier_after(source, "if rank == 0")]).valid


def test_a_barrier_in_a_function_only_called_under_a_guard() -> None:
    source = _source(
        """
        def save(model):
            torch.save(model.state_dict(), "c.pt")

        def train(model, rank, loader):
            for batch in loader:
                model(batch).backward()
                if rank == 0:
                    save(model)
        """
    )
    _refused(
        _verdict(source, [_barrier_after(source, "torch.save")]),
        "`save` is called at line 11",
        "main-process guard at line 10",
    )
    assert _verdict(source, [_barrier_after(source, "if rank == 0")]).valid


RANK_ZERO_GOES_FIRST = """
    def main(rank):
        if rank != 0:
            dist.barrier()
        prepare_dataset()
        if rank == 0:
            dist.barrier()
"""


def test_a_lifted_half_of_a_balanced_barrier_pair() -> None:
    source = _source(RANK_ZERO_GOES_FIRST)
    assert _verdict(source, []).valid  # balanced as written: rank 0 meets one barrier, the others one
    lift = SplitGuard(_key(source, "if rank == 0"), 1, None, "rank == 0")
    _refused(_verdict(source, [lift]), "in `main`, rank 0 meets", "where any other rank meets")


def test_a_lifted_call_on_an_object_built_on_rank_zero_only() -> None:
    source = _source(
        """
        def train(model, rank, loader):
            saver = Saver("ckpt") if rank == 0 else None
            for batch in loader:
                model(batch).backward()
                if rank == 0:
                    saver.save_checkpoint(model)
        """
    )
    lift = SplitGuard(_key(source, "if rank == 0"), 1, None, "rank == 0")
    _refused(_verdict(source, [lift]), "saver.save_checkpoint(model)", "would run on every rank")


def test_a_guard_around_a_per_rank_write() -> None:
    source = _source(
        """
        def train(model, rank):
            torch.save(model.state_dict(), f"shard_{rank}.pt")
        """
    )
    _refused(_verdict(source, [_guard(source, "torch.save")]), "per-rank file", "no longer be written")


def test_a_lift_that_drags_the_rotation_of_old_checkpoints_to_every_rank() -> None:
    source = _source(
        """
        def train(model, optimizer, rank, loader):
            for batch in loader:
                model(batch).backward()
                if rank == 0:
                    optimizer.consolidate_state_dict(to=0)
                    shutil.rmtree("old_checkpoints")
                    torch.save(optimizer.state_dict(), "c.pt")
        """
    )
    key = _key(source, "if rank == 0")
    _refused(_verdict(source, [SplitGuard(key, 2, None, "rank == 0")]), "deletion", "shutil.rmtree")
    # Freeing the collective alone is fine (the write stays guarded, the barrier follows the branch).
    freed = [SplitGuard(key, 1, None, "rank == 0"), _barrier_after(source, "if rank == 0")]
    assert _verdict(source, freed).valid


def test_a_barrier_in_a_loop_with_a_rank_dependent_continue() -> None:
    source = _source(
        """
        def train(model, rank, loader):
            for batch in loader:
                model(batch).backward()
                if rank != 0:
                    continue
                torch.save(model.state_dict(), "c.pt")
        """
    )
    # `if rank != 0: continue` is an early exit: every rank but 0 skips what follows it.
    _refused(_verdict(source, [_barrier_after(source, "torch.save")]), "inserted at line 9", "line 7")
    _refused(_verdict(source, [_barrier_after(source, "torch.save")]), "rank 0 meets `checkpoint_barrier")


def test_a_swallowed_failure_with_no_barrier_after_it() -> None:
    source = _source(TRAINING_LOOP)
    guard = _guard(source, "torch.save")
    swallowing = WrapGuard(**{**guard.__dict__, "test": None, "reraise": False})
    _refused(_verdict(source, [swallowing]), "would be swallowed")
    assert _verdict(source, [swallowing, _barrier_after(source, "if rank == 0")]).valid
