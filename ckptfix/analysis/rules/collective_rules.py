"""CKP006: collectives, breaks and stop flags that only the main process reaches (issue 4)."""

from __future__ import annotations

import ast

from ckptfix.analysis.collectives import collective_name, is_barrier_call
from ckptfix.analysis.guards import Kind
from ckptfix.analysis.names import dotted, last_name
from ckptfix.analysis.rules.context import RuleContext, loop_of
from ckptfix.analysis.tree import walk_local


class CollectiveRules(RuleContext):
    """Code under a main-process guard that every rank must run."""

    def _syncs_every_rank(self, loop: ast.AST) -> bool:
        """The loop makes collectives (directly, through helpers, or DDP's backward)."""

        def direct(call: ast.Call) -> bool:
            return (
                last_name(call.func) == "backward"
                or is_barrier_call(call, self.names)
                or collective_name(call, self.names, self.module_functions) is not None
            )

        if id(loop) not in self._syncs:
            self._syncs[id(loop)] = self._loop_reaches(loop, direct)
        return self._syncs[id(loop)]

    def _check_divergent_exit(self, node: ast.Break | ast.Assign) -> None:
        """A `break`, or a stop flag, set under a main-process guard ends the loop on rank 0 only."""
        loop = loop_of(self.tree, node)
        if loop is None:
            return
        if isinstance(node, ast.Break):
            what = "`break`"
        else:
            flag = dotted(node.targets[0]) if len(node.targets) == 1 else None
            if flag is None or flag not in self._loop_flags(loop):
                return
            what = f"`{flag}`, which ends the loop,"
        guard = self.guards.local_guard(self.tree, node, stop=loop)
        if guard is None or guard.kind == Kind.SHARD or not self._syncs_every_rank(loop):
            return
        self._issue(
            "CKP006",
            node,
            f"{what} is set under the main-process guard at line {getattr(guard.node, 'lineno', '?')}: the "
            "loop ends on the main process only and the other ranks wait in its collectives forever",
        )

    def _loop_flags(self, loop: ast.AST) -> set[str]:
        """Names that end `loop`: in its `while` condition, or in the test of an `if` that breaks."""
        cached = self._flags.get(id(loop))
        if cached is not None:
            return cached
        tests = [loop.test] if isinstance(loop, ast.While) else []
        tests += [
            n.test
            for n in walk_local(loop)
            if isinstance(n, ast.If) and any(isinstance(s, ast.Break) for s in n.body)
        ]
        flags = {
            name for test in tests for n in ast.walk(test) if isinstance(n, ast.expr) and (name := dotted(n))
        }
        self._flags[id(loop)] = flags
        return flags

    def _other_branch_joins(self, guard: ast.AST, call: ast.Call) -> bool:
        """The other ranks make a matching collective in the guard's other branch.

        `if rank == 0: dist.scatter(t, chunks, src=0) else: dist.scatter(t, src=0)` and send/recv
        pairs (`if rank == 0: dist.send(...) elif rank == 1: dist.recv(...)`) are how rooted and
        point-to-point collectives are written: every rank joins, so nothing hangs.
        """
        if not isinstance(guard, ast.If):
            return False
        in_body = any(node is call for stmt in guard.body for node in ast.walk(stmt))
        other = guard.orelse if in_body else guard.body
        return any(
            isinstance(node, ast.Call)
            and collective_name(node, self.names, self.module_functions) is not None
            for stmt in other
            for node in ast.walk(stmt)
        )

    def _check_collective(self, call: ast.Call) -> None:
        name = collective_name(call, self.names, self.module_functions)
        if name is None:
            return
        guard = self.graph.guard(call)
        if guard is None or guard.kind == Kind.SHARD:
            return
        local = self.guards.local_guard(self.tree, call)
        if local is not None and self._other_branch_joins(local.node, call):
            return
        function = self.tree.function(call)
        if local is not None:
            where = f"under the main-process guard at line {getattr(local.node, 'lineno', '?')}"
        else:
            where = f"in `{function.name if function else '?'}`, which only the main process calls"
        self._issue(
            "CKP006",
            call,
            f"collective `{name}` {where}: the other ranks never join it and the main process hangs",
        )
