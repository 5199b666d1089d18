"""CKP004: a final sync before the process group goes away (and init_sync after it is made)."""

from __future__ import annotations

import ast
from collections.abc import Callable

from ckptfix.analysis import catalog
from ckptfix.analysis.names import dotted, last_name
from ckptfix.analysis.plan import Insert
from ckptfix.analysis.rules.context import contains_loop
from ckptfix.analysis.rules.placement import BarrierPlacement
from ckptfix.analysis.saves import SaveFinder
from ckptfix.analysis.tree import LOOPS, FunctionNode, walk_local

# The calls `_check_final_sync` looks for.
_SYNC_CALLS = frozenset(
    {catalog.DESTROY_PROCESS_GROUP, *catalog.PROCESS_GROUP_INITIALIZERS, *catalog.RUNTIME_BARRIERS}
)


class FinalSyncRules(BarrierPlacement):
    """The end of training: destroy_process_group() (or accelerate's end_training(), which calls it) or
    the training function's last statement."""

    def _check_final_sync(self, has_checkpoints: bool) -> None:
        destroys: list[ast.Call] = []
        runtime_barriers = False
        for node in self.tree.calls:
            if not self.names.may_resolve_to(node.func, _SYNC_CALLS):
                continue  # nearly every call: no need to resolve it
            resolved = self.names.resolve(node.func)
            if resolved == catalog.DESTROY_PROCESS_GROUP and _destroys_world(node):
                destroys.append(node)
            elif resolved in catalog.RUNTIME_BARRIERS:
                runtime_barriers = True
            elif resolved in catalog.PROCESS_GROUP_INITIALIZERS:
                self._check_init(node)
        # accelerate's Accelerator.end_training() destroys the process group too.
        destroys += [
            c for c in self.tree.calls if isinstance(c.func, ast.Attribute) and c.func.attr == "end_training"
        ]
        if runtime_barriers:
            for key, call in self._init_missing:
                self._issue(
                    "CKP004",
                    call,
                    "ckptfix.runtime barriers are used but init_sync() does not follow "
                    f"`{self.tree.text(call.func)}(...)`, which sets up the process group",
                    [Insert(key, True, "{init_sync}()", frozenset({"init_sync"}))],
                )
        if not has_checkpoints:
            return  # the final sync protects the last checkpoint; without one there is nothing to lose
        template, symbols = self._barrier(self.options.final_timeout, final=True)
        for call in destroys:
            stmt = self.tree.statement(call)
            if self.graph.guard(call) is not None or self._sync_before(stmt, 0):
                continue
            fixable = isinstance(stmt, ast.Expr) and stmt.value is call and self.tree.alone_on_line(stmt)
            busy = self._work_before_the_end(self.tree.function(call) or self.tree.module, stmt, before=True)
            self._issue(
                "CKP004",
                call,
                "the process group is destroyed with no final sync: ranks still writing or waiting are torn "
                "down (the last checkpoint may be cut short)" + _busy(busy, self.tree.text),
                [Insert(self.key(stmt), False, template, symbols)] if fixable and busy is None else [],
            )
        if destroys:
            return
        for function in self._training_functions():
            last = function.body[-1]
            edit = Insert(self.key(last), not isinstance(last, ast.Return), template, symbols)
            busy = self._work_before_the_end(function, last, before=isinstance(last, ast.Return))
            self._issue(
                "CKP004",
                function,
                f"training function `{function.name}` ends with no final sync: ranks leave while the main "
                "process may still be writing the last checkpoint" + _busy(busy, self.tree.text),
                [edit] if self.tree.alone_on_line(last) and busy is None else [],
            )

    def _work_before_the_end(self, scope: ast.AST, end: ast.stmt, before: bool) -> ast.Call | None:
        """Main-process work after the last write of `scope` and before the final sync would go (before
        or after `end`): the final sync would make every rank wait for it."""
        finder = SaveFinder(self.tree, self.names, self.options.extra_save_functions, self.project)
        limit = (end.lineno, end.col_offset) if before else (end.end_lineno or end.lineno, 1 << 30)
        writes = [
            c
            for c in walk_local(scope)
            if isinstance(c, ast.Call)
            and (c.lineno, c.col_offset) < limit
            and (finder.target_of(c) is not None or self.graph.reaches_save(c, finder))
        ]
        if not writes:
            return None
        last = max(writes, key=lambda c: (c.end_lineno or 0, c.end_col_offset or 0))
        return self._main_work_between(scope, (last.end_lineno or 0, last.end_col_offset or 0), limit)

    def _check_init(self, call: ast.Call) -> None:
        stmt = self.tree.statement(call)
        if not (
            isinstance(stmt, ast.Expr | ast.Assign) and stmt.value is call and self.tree.alone_on_line(stmt)
        ):
            return  # `accelerator = Accelerator(...)` too; not a call inside another expression
        if self.graph.guard(call) is not None:
            return  # made on some ranks only: no place for a collective
        block, index = self.tree.block_of(stmt)
        if any(self._sets_up_the_group(previous) for previous in block[:index]):
            return  # `deepspeed.initialize(...)` after `deepspeed.init_distributed()`: one init_sync
        following = block[index + 1 : index + 3]
        for sibling in following:
            for node in ast.walk(sibling):
                if (
                    isinstance(node, ast.Call)
                    and self.names.resolve(node.func) == "ckptfix.runtime.init_sync"
                ):
                    return
        self.init_keys.append(self.key(stmt))
        self._init_missing.append((self.key(stmt), call))

    def _sets_up_the_group(self, stmt: ast.stmt) -> bool:
        value = stmt.value if isinstance(stmt, ast.Expr | ast.Assign) else None
        return (
            isinstance(value, ast.Call)
            and self.names.may_resolve_to(value.func, catalog.PROCESS_GROUP_INITIALIZERS)
            and self.names.resolve(value.func) in catalog.PROCESS_GROUP_INITIALIZERS
        )

    def _sync_before(self, stmt: ast.stmt, depth: int) -> bool:
        for level in self.tree.enclosing_statements(stmt):
            block, index = self.tree.block_of(level)
            for previous in block[:index]:
                for node in [previous, *walk_local(previous)]:
                    if isinstance(node, ast.Call) and self._is_sync(node):
                        return True
        function = self.tree.function(stmt)
        if depth < 2 and function is not None:
            sites = self.graph.sites[id(function)]
            return bool(sites) and all(
                isinstance(site, ast.Call) and self._sync_before(self.tree.statement(site), depth + 1)
                for site in sites
            )
        return False

    def _training_functions(self) -> list[FunctionNode]:
        """Outermost functions that run a loop calling backward() and reach a checkpoint save."""
        finder = SaveFinder(self.tree, self.names, self.options.extra_save_functions, self.project)

        def backward(call: ast.Call) -> bool:
            return last_name(call.func) == "backward"

        def saves(call: ast.Call) -> bool:
            return finder.target_of(call) is not None

        training: list[FunctionNode] = []
        for function in self.graph.functions:
            loops = [n for n in walk_local(function) if isinstance(n, LOOPS)]
            if not loops or self.graph.reaches(function, saves) is None:
                continue
            if any(self._loop_reaches(loop, backward) for loop in loops):
                training.append(function)
        outermost = []
        for function in training:
            callers = [self.tree.function(site) for site in self.graph.sites[id(function)]]
            if any(caller in training for caller in callers):
                continue
            if self._final_sync_present(function):
                continue
            outermost.append(function)
        return outermost

    def _final_sync_present(self, function: FunctionNode) -> bool:
        last_loop = max((i for i, stmt in enumerate(function.body) if contains_loop(stmt)), default=-1)
        for stmt in function.body[last_loop + 1 :]:
            for node in [stmt, *walk_local(stmt)]:
                if isinstance(node, ast.Call) and self._is_sync(node):
                    return True
        if last_loop >= 0 and self._loop_ends_in_sync(
            function.body[last_loop], function.body[last_loop + 1 :]
        ):
            return True
        sites = self.graph.sites[id(function)]
        return bool(sites) and all(
            isinstance(site, ast.Call) and self._barrier_follows(self._anchor_statement(site), site)
            for site in sites
        )

    def _loop_ends_in_sync(self, loop: ast.stmt, after: list[ast.stmt]) -> bool:
        """Every iteration of the training loop ends in a barrier every rank reaches (`for epoch ...:
        save(); accelerator.wait_for_everyone()`), nothing leaves an iteration before it, and nothing
        after the loop writes: the last checkpoint is already waited for."""
        if not isinstance(loop, LOOPS) or loop.orelse or not loop.body:
            return False
        last = loop.body[-1]
        if not (
            isinstance(last, ast.Expr) and isinstance(last.value, ast.Call) and self._is_sync(last.value)
        ):
            return False
        if any(isinstance(n, ast.Break | ast.Continue | ast.Return) for n in walk_local(loop)):
            return False  # an iteration that may leave before the barrier (nested loops' too: simpler)
        finder = SaveFinder(self.tree, self.names, self.options.extra_save_functions, self.project)
        return not any(
            isinstance(c, ast.Call)
            and (finder.target_of(c) is not None or self.graph.reaches_save(c, finder))
            for stmt in after
            for c in [stmt, *walk_local(stmt)]
        )


def _destroys_world(call: ast.Call) -> bool:
    """`destroy_process_group()` / `(None)` ends training; destroying a subgroup does not."""
    group = call.args[0] if call.args else next((kw.value for kw in call.keywords if kw.arg == "group"), None)
    if group is None or (isinstance(group, ast.Constant) and group.value is None):
        return True
    return (dotted(group) or "").endswith("group.WORLD")


def _busy(work: ast.Call | None, text: Callable[[ast.AST], str]) -> str:
    if work is None:
        return ""
    return (
        " (not rewritten automatically: a final sync there would also wait for the main process's other "
        f"work, `{text(work.func)}(...)` at line {work.lineno}, which may take longer than any timeout; "
        "put it right after the last write by hand)"
    )
