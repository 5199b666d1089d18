"""CKP003 (a number as barrier timeout) and CKP007 (a try/except swallowing a barrier's error)."""

from __future__ import annotations

import ast

from ckptfix.analysis import catalog
from ckptfix.analysis.names import dotted, last_name
from ckptfix.analysis.plan import CallEdit, Edit, UnwrapTry
from ckptfix.analysis.rules.context import LOG_CALLS, RuleContext, contains_loop, fmt_seconds, loop_of
from ckptfix.analysis.tree import walk_local

_BROAD_EXCEPTIONS = frozenset(
    {"Exception", "BaseException", "RuntimeError", "DistBackendError", "DistError", "TimeoutError", "OSError"}
)


class BarrierRules(RuleContext):
    """Barriers that cannot wait (TypeError) or whose failure is hidden."""

    def _is_number(self, expr: ast.expr) -> bool:
        if isinstance(expr, ast.Constant):
            return isinstance(expr.value, int | float) and not isinstance(expr.value, bool)
        if isinstance(expr, ast.UnaryOp):
            return self._is_number(expr.operand)
        if isinstance(expr, ast.BinOp):
            return self._is_number(expr.left) and self._is_number(expr.right)
        if isinstance(expr, ast.Name):
            return expr.id in self._constants
        return False

    def _timeout(self, call: ast.Call) -> ast.expr | None:
        return next((kw.value for kw in call.keywords if kw.arg == "timeout"), None)

    def _working_barrier(self, call: ast.Call) -> CallEdit | None:
        """The edit that makes a torch barrier call really wait with a timeout; None when it already
        does (inline style, timedelta) or cannot be rewritten safely (positional group, **kwargs)."""
        timeout = self._timeout(call)
        numeric = timeout is not None and self._is_number(timeout)
        if call.args or any(kw.arg is None for kw in call.keywords):
            return None
        final = self._is_final(call)
        seconds = self.options.final_timeout if final else self.options.barrier_timeout
        if self.runtime:
            if timeout is not None and not numeric:
                return None
            if any(kw.arg not in {"timeout", "wait_all_ranks"} for kw in call.keywords):
                return None
            name = "final_sync" if final else "checkpoint_barrier"
            return CallEdit(
                self.tree.span(call),
                func=f"{{{name}}}",
                keep_keywords=frozenset({"timeout"}),
                add_keyword=None if timeout is not None else ("timeout", fmt_seconds(seconds)),
                symbols=frozenset({name}),
            )
        if timeout is None:
            value = f"{{datetime}}.timedelta(seconds={fmt_seconds(seconds)})"
            return CallEdit(
                self.tree.span(call), add_keyword=("timeout", value), symbols=frozenset({"datetime"})
            )
        if numeric:
            return CallEdit(
                self.tree.span(call),
                wrap_timeout="{datetime}.timedelta(seconds=__value__)",
                symbols=frozenset({"datetime"}),
            )
        return None

    def _is_final(self, call: ast.Call) -> bool:
        """The barrier ends training: outside any loop, after the function's (training) loop, or right
        before destroy_process_group() in its block. The runtime's final_sync says so in the logs."""
        if loop_of(self.tree, call) is not None:
            return False
        stmt = self.tree.statement(call)
        block, index = self.tree.block_of(stmt)
        following = block[index + 1 : index + 2]
        if any(
            isinstance(n, ast.Call) and self.names.resolve(n.func) == catalog.DESTROY_PROCESS_GROUP
            for s in following
            for n in ast.walk(s)
        ):
            return True
        function = self.tree.function(call)
        if function is None:
            return False
        outermost = [
            s for s in self.tree.enclosing_statements(call) if self.tree.block_of(s)[0] is function.body
        ]
        if not outermost:
            return False
        return any(contains_loop(s) for s in function.body[: function.body.index(outermost[0])])

    def _check_barrier_timeout(self, call: ast.Call) -> None:
        if not self.names.may_resolve_to(call.func, catalog.BARRIERS):
            return
        if self.names.resolve(call.func) not in catalog.BARRIERS:
            return
        timeout = self._timeout(call)
        if timeout is None or not self._is_number(timeout):
            return
        edit = self._working_barrier(call)
        self._issue(
            "CKP003",
            call,
            f"`{dotted(call.func)}(timeout={self.tree.text(timeout)})`: the timeout must be a timedelta;"
            " a number raises TypeError, so this barrier never waits",
            [edit] if edit is not None else [],
        )

    def _check_swallowed(self, node: ast.Try) -> None:
        barriers = [
            n
            for stmt in node.body
            for n in [stmt, *walk_local(stmt)]
            if isinstance(n, ast.Call)
            and self.names.may_resolve_to(n.func, catalog.BARRIERS)
            and self.names.resolve(n.func) in catalog.BARRIERS
        ]
        if not barriers:
            return
        swallowing = [
            h
            for h in node.handlers
            if _is_broad(h) and not any(isinstance(n, ast.Raise) for n in ast.walk(h))
        ]
        if not swallowing:
            return
        edits: list[Edit] = []
        fixable = (
            not node.orelse
            and not node.finalbody
            and all(
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Call)
                and self.tree.alone_on_line(stmt)
                and (stmt.value in barriers or last_name(stmt.value.func) in LOG_CALLS)
                for stmt in node.body
            )
        )
        if fixable:
            edits.append(UnwrapTry(self.key(node)))
            for barrier in barriers:
                edit = self._working_barrier(barrier)
                if edit is not None:
                    edits.append(edit)
                elif self.runtime or self._timeout(barrier) is None:
                    edits = []
                    break
        self._issue(
            "CKP007",
            node,
            "this try/except swallows the barrier's error: after a timeout the process group is broken and "
            "the next collective fails or hangs; let the barrier raise a clear error",
            edits,
        )


def _is_broad(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(last_name(t) in _BROAD_EXCEPTIONS for t in types)
