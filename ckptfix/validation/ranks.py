"""The kinds of rank a rewrite is checked for, and which way each takes a rank test.

Three abstract executors stand for every process of a job: global rank 0 (`R0`); a rank that is the
first of its node or of its model-parallel shard group without being rank 0 (`RL`: local-rank and
shard guards let it through, global ones do not); and any other rank (`RK`). A condition the guard
recognizer knows is decided per executor; anything else is unknown (`None`) and both of its branches
are followed, compared branch by branch.
"""

from __future__ import annotations

import ast
from enum import Enum

from ckptfix.analysis.guards import GuardRecognizer, Kind, is_distributed_test, is_single_process_test


class Executor(Enum):
    R0 = "rank 0"
    RL = "a node's first rank"
    RK = "any other rank"


EXECUTORS = (Executor.R0, Executor.RL, Executor.RK)


def main_truth(kind: Kind, executor: Executor) -> bool:
    """Whether a main-process test of `kind` holds on `executor`."""
    if executor is Executor.R0:
        return True
    if executor is Executor.RL:
        return kind != Kind.GLOBAL
    return False


class RankTests:
    """Three-valued truth of branch conditions per executor (True, False, or None: unknown)."""

    def __init__(self, guards: GuardRecognizer) -> None:
        self.guards = guards
        # Conditions known to hold (by their text) where a trace is being followed: inside
        # `if A and rank == 0:`, a later `if A:` with nothing in between rebinding A is taken.
        self.assume: frozenset[str] = frozenset()

    def truth(self, test: ast.expr, executor: Executor) -> bool | None:
        if self.assume and ast.unparse(test) in self.assume:
            return True
        if isinstance(test, ast.BoolOp):
            values = [self.truth(value, executor) for value in test.values]
            if isinstance(test.op, ast.And):
                if False in values:
                    return False
                return True if all(v is True for v in values) else None
            if True in values:
                return True
            return False if all(v is False for v in values) else None
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = self.truth(test.operand, executor)
            return None if inner is None else not inner
        if self.guards.other_writer(test):  # the last rank, say: never rank 0; which other, unknown
            return False if executor is Executor.R0 else None
        kind = self.guards.classify(test)
        if kind is not None:
            return main_truth(kind, executor)
        kind = self.guards.classify_negated(test)
        if kind is not None:
            return not main_truth(kind, executor)
        # The job being checked runs distributed: `not dist.is_initialized()` is False there.
        if is_single_process_test(test):
            return False
        if is_distributed_test(test):
            return True
        return None
