"""Run one module's code once per kind of rank, abstractly: which barriers and collectives each meets,
in which order, and which side effects it reaches (PARCOACH's question, for Python).

A trace is a tuple of items: `Sync` (a barrier or collective, matched across ranks by its `kind`),
`Branch` (a condition that is not a rank test: each alternative is followed; ranks are assumed to take
the same one here, since whether they do is `uniform`'s to prove where it matters), `Loop` (its body
once, standing for any number of iterations), `Exit` (return, break, continue, raise). A rank test is
decided per executor, so the traces of rank 0 and of another rank differ exactly where rank tests
make them differ. After an `if` that exits on some branches, the rest of the block is appended to the
branches that go on, so an `Exit` only ever ends a branch.

Calls of the module's own functions are followed (their traces inlined, computed once per executor);
a function decorated to run on the main process only has an empty trace on the other ranks.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from ckptfix.analysis import catalog
from ckptfix.analysis.collectives import is_barrier_call
from ckptfix.analysis.names import dotted, last_name
from ckptfix.analysis.rules.context import RuleContext
from ckptfix.analysis.tree import FunctionNode, walk_local
from ckptfix.validation.effects import EFFECT_NAMES, EffectClassifier
from ckptfix.validation.ranks import Executor, RankTests, main_truth

_EXIT_CALLS = frozenset({"sys.exit", "exit", "quit", "os._exit"})
TEARDOWN = "teardown"


@dataclass(frozen=True)
class Sync:
    kind: str  # what must match across ranks: "ckptfix" (the runtime's barriers), "barrier", "all_reduce"...
    node: ast.Call
    heuristic: bool  # recognised by its name only, on a receiver of unknown type


@dataclass(frozen=True)
class Branch:
    node: ast.AST
    alternatives: tuple[Trace, ...]


@dataclass(frozen=True)
class Loop:
    node: ast.AST
    body: Trace


@dataclass(frozen=True)
class Exit:
    kind: str  # "return", "break", "continue", "raise"


@dataclass(frozen=True)
class Opaque:
    """A recursive call: not followed."""

    node: ast.AST


Item = Union[Sync, Branch, Loop, Exit, Opaque]  # noqa: UP007 (a runtime alias)
Trace = tuple[Item, ...]


def ends_in_exit(trace: Trace) -> bool:
    return bool(trace) and isinstance(trace[-1], Exit)


def may_exit(trace: Trace) -> bool:
    """The trace ends with a branch some of whose alternatives leave the block."""
    if not trace or not isinstance(trace[-1], Branch):
        return False
    return any(ends_in_exit(alt) or may_exit(alt) for alt in trace[-1].alternatives)


def append_rest(trace: Trace, rest: Trace) -> Trace:
    """`trace` followed by `rest` on every path that does not leave the block."""
    if ends_in_exit(trace):
        return trace
    if may_exit(trace):
        last = trace[-1]
        assert isinstance(last, Branch)
        return (*trace[:-1], Branch(last.node, tuple(append_rest(alt, rest) for alt in last.alternatives)))
    return trace + rest


def strip_tail(trace: Trace, kind: str) -> Trace:
    """Drop a trailing `Exit(kind)` on every path: a `return` at the end of a function, or a
    `continue` at the end of a loop body, changes nothing."""
    if not trace:
        return trace
    last = trace[-1]
    if isinstance(last, Exit) and last.kind == kind:
        return trace[:-1]
    if isinstance(last, Branch):
        return (*trace[:-1], Branch(last.node, tuple(strip_tail(alt, kind) for alt in last.alternatives)))
    return trace


def _fails_at_once(trace: Trace) -> bool:
    return bool(trace) and trace[-1] == Exit("raise") and not _has_sync(trace)


def _holds(trace: Trace, leaf: Callable[[Item], bool]) -> bool:
    """Some item of the trace, at any depth of its branches and loops, is a `leaf`."""
    for item in trace:
        if leaf(item):
            return True
        if isinstance(item, Branch) and any(_holds(alt, leaf) for alt in item.alternatives):
            return True
        if isinstance(item, Loop) and _holds(item.body, leaf):
            return True
    return False


def _has_sync(trace: Trace) -> bool:
    return _holds(trace, lambda item: isinstance(item, Sync | Opaque))


def _has_return(trace: Trace) -> bool:
    return _holds(trace, lambda item: isinstance(item, Exit) and item.kind == "return")


Memo = dict[int, tuple[Item, Trace]]


def normalize(trace: Trace, memo: Memo | None = None) -> Trace:
    """What matters for matching: branches and loops without barriers or collectives go (with the
    exits inside them, unless a loop's body may return); a branch whose alternatives all do the same
    is that one alternative. `memo` keeps what each branch and loop became: a callee's trace, inlined
    in its callers, is normalized once."""
    out: list[Item] = []
    for item in trace:
        if not isinstance(item, Branch | Loop):
            out.append(item)
            continue
        hit = memo.get(id(item)) if memo is not None else None
        if hit is not None and hit[0] is item:
            out.extend(hit[1])
            continue
        produced = _normalize_item(item, memo)
        if memo is not None:
            memo[id(item)] = (item, produced)
            for new in produced:
                if isinstance(new, Branch | Loop):
                    memo[id(new)] = (new, (new,))
        out.extend(produced)
    return tuple(out)


def _normalize_item(item: Branch | Loop, memo: Memo | None) -> Trace:
    if isinstance(item, Loop):
        body = normalize(item.body, memo)
        return (Loop(item.node, body),) if _has_sync(body) or _has_return(body) else ()
    alternatives = tuple(normalize(alt, memo) for alt in item.alternatives)
    # A path that fails before any barrier (a handler that re-raises) asks nothing of the others: the
    # job fails there, whatever they meet.
    alternatives = tuple(alt for alt in alternatives if not _fails_at_once(alt)) or alternatives
    if all(alt == alternatives[0] for alt in alternatives[1:]):
        return alternatives[0]
    if any(_has_sync(alt) or _has_return(alt) for alt in alternatives):
        return (Branch(item.node, alternatives),)
    # The alternatives differ only in exits that lead past nothing that syncs (with the rest of the
    # block appended to the branches that go on, nothing follows such a branch).
    return ()


class Evaluator:
    """Traces of one module's functions for each executor, and the effects each executor reaches.

    `visits[(scope id, executor)]` holds the ids of the effect and sync calls an executor reaches
    when it runs that scope (callees included); `scopes` maps those ids back to the calls.
    """

    def __init__(self, ctx: RuleContext, effects: EffectClassifier, reuse: Evaluator | None = None) -> None:
        """`reuse`: the evaluator of the program this one was derived from (plan_ast shares every
        statement it leaves alone): a shared statement that calls no changed function meets what it met
        there, and is not run again."""
        self.ctx = ctx
        self.tests = RankTests(ctx.guards)
        self.effects = effects
        self._traces: dict[tuple[int, Executor], Trace] = {}
        self.visits: dict[tuple[int, Executor], set[int]] = {}
        self._active: list[set[int]] = []
        self._in_progress: set[tuple[int, Executor]] = set()
        self._memo: Memo = {}
        # Each statement's trace and the calls it reached, per executor (kept with the statement, so
        # that an id is never taken for another's).
        self._statements: dict[tuple[int, Executor], tuple[ast.stmt, Trace, frozenset[int]]] = {}
        self._inherited: dict[tuple[int, Executor], tuple[ast.stmt, Trace, frozenset[int]]] = {}
        self._inherited_calls: dict[int, ast.Call] = {}
        self._clean: Callable[[ast.stmt], bool] = lambda stmt: False
        if reuse is not None:
            self._inherited = reuse._statements
            self._inherited_calls = reuse.calls
            self._clean = self._calls_nothing_changed(reuse)
        self.calls: dict[int, ast.Call] = {}  # id -> effect or sync call reached by some executor
        # What each call is, worked out once for all executors: an effect?, its sync, an exit?, the
        # module functions it runs.
        self._kinds: dict[int, tuple[bool, Sync | None, bool, list[FunctionNode]]] = {}
        # Statements and expressions that hold something a trace records (a sync, an effect, a call
        # of a module function, a way out of a block): the rest meet nothing and are not walked.
        self._live: set[int] = set()
        exits: list[ast.AST] = [
            *ctx.tree.of_type(ast.Return),
            *ctx.tree.of_type(ast.Raise),
            *ctx.tree.of_type(ast.Break),
            *ctx.tree.of_type(ast.Continue),
        ]
        spelled = self._interesting_names()
        main_only = ctx.guards.main_only
        for found in ctx.tree.calls:
            func = found.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if (
                name in spelled
                or "barrier" in name
                or "upload" in name
                or (main_only and isinstance(func, ast.Attribute) and dotted(func.value) in main_only)
            ):
                exits.append(found)  # may be interesting: what it is, `_kind` says when it is reached
        parent = ctx.tree.parent
        for leaf in exits:
            node: ast.AST | None = leaf
            while node is not None and id(node) not in self._live:
                self._live.add(id(node))
                node = parent.get(id(node))

    def _interesting_names(self) -> set[str]:
        """The last names a call that syncs, has an effect, runs a module function or exits can have:
        a call spelled otherwise is none of these, so nothing leads the traces into it."""
        ctx = self.ctx
        names = {
            *catalog.BARRIER_LIKE_NAMES,
            *(c.rsplit(".", 1)[-1] for c in catalog.COLLECTIVES),
            *catalog.COLLECTIVE_METHODS,
            *catalog.RECEIVER_COLLECTIVES,
            *(f.name for f in ctx.graph.functions),
            *(
                s.rsplit(".", 1)[-1]
                for s in (catalog.TORCH_SAVE, *catalog.SAFETENSORS_SAVES, *catalog.RUNTIME_SAVES)
            ),
            catalog.HF_SAVE_PRETRAINED,
            *catalog.DELEGATED_MAIN_SAVES,
            *(name.rsplit(".", 1)[-1] for name in ctx.options.extra_save_functions),
            # Functions of the project's other files that write, sync or run a collective.
            *(
                name.rsplit(".", 1)[-1]
                for name, fact in ctx.project.imported.items()
                if fact.saves or fact.collective or fact.syncs
            ),
            *EFFECT_NAMES,
            "exit",
            "quit",
            "_exit",
            "destroy_process_group",
            "end_training",
        }
        interesting = {n.rsplit(".", 1)[-1] for n in names}
        # Local aliases of those (`save_fn = torch.save`, `from torch import save as write`).
        interesting |= {
            local for local, target in ctx.names.imports.items() if target.rsplit(".", 1)[-1] in interesting
        }
        return interesting

    def _kind(self, call: ast.Call) -> tuple[bool, Sync | None, bool, list[FunctionNode]]:
        kind = self._kinds.get(id(call))
        if kind is None:
            sync = self.sync_of(call)
            exits = sync is None and dotted(call.func) in _EXIT_CALLS
            targets = [] if sync is not None or exits else self.ctx.graph.targets(call)
            kind = self._kinds[id(call)] = (self.effects.of(call) is not None, sync, exits, targets)
        return kind

    # --- scopes ------------------------------------------------------------------------------------
    def function_trace(self, function: FunctionNode, executor: Executor) -> Trace:
        key = (id(function), executor)
        cached = self._traces.get(key)
        if cached is not None:
            return cached
        kind = self.ctx.guards.decorator_kind(function)
        visits: set[int] = set()
        if kind is not None and not main_truth(kind, executor):
            trace: Trace = ()
        else:
            self._in_progress.add(key)
            self._active.append(visits)
            try:
                trace = normalize(strip_tail(self.block(function.body, executor), "return"), self._memo)
            finally:
                self._active.pop()
                self._in_progress.discard(key)
        self._traces[key] = trace
        self.visits[key] = visits
        return trace

    def module_trace(self, executor: Executor) -> Trace:
        module = self.ctx.tree.module
        key = (id(module), executor)
        cached = self._traces.get(key)
        if cached is not None:
            return cached
        visits: set[int] = set()
        self._active.append(visits)
        try:
            trace = normalize(self.block(module.body, executor), self._memo)
        finally:
            self._active.pop()
        self._traces[key] = trace
        self.visits[key] = visits
        return trace

    # --- statements --------------------------------------------------------------------------------
    def block(self, stmts: list[ast.stmt], executor: Executor) -> Trace:
        out: list[Item] = []
        for index, stmt in enumerate(stmts):
            if id(stmt) not in self._live:
                continue  # meets nothing a trace records, and always goes on to the next statement
            trace = self.statement(stmt, executor)
            if ends_in_exit(trace):
                out.extend(trace)
                return tuple(out)
            if may_exit(trace):
                rest = self.block(stmts[index + 1 :], executor)
                out.extend(append_rest(trace, rest))
                return tuple(out)
            out.extend(trace)
        return tuple(out)

    def _calls_nothing_changed(self, reuse: Evaluator) -> Callable[[ast.stmt], bool]:
        """A test for statements whose run cannot differ from the original's: none of its calls spells
        a function that changed (another object than the original's) or that calls one, at any depth."""
        old = {id(f) for f in reuse.ctx.graph.functions}
        functions = self.ctx.graph.functions
        dirty = {f.name for f in functions if id(f) not in old}
        if dirty:
            calls_by_function = {
                id(f): {last_name(n.func) for n in walk_local(f) if isinstance(n, ast.Call)}
                for f in functions
            }
            grew = True
            while grew:
                grew = False
                for function in functions:
                    if function.name not in dirty and calls_by_function[id(function)] & dirty:
                        dirty.add(function.name)
                        grew = True
        touched: set[int] = set()
        parent = self.ctx.tree.parent
        for call in self.ctx.tree.calls:
            if (last_name(call.func) or "") in dirty:
                node: ast.AST | None = call
                while node is not None and id(node) not in touched:
                    touched.add(id(node))
                    node = parent.get(id(node))
        return lambda stmt: id(stmt) not in touched

    def statement(self, stmt: ast.stmt, executor: Executor) -> Trace:
        key = (id(stmt), executor)
        if not self.tests.assume:
            hit = self._statements.get(key)
            if hit is None or hit[0] is not stmt:
                hit = self._inherited.get(key)
                if hit is not None and (hit[0] is not stmt or not self._clean(stmt)):
                    hit = None
                if hit is not None:
                    for call_id in hit[2]:
                        self.calls.setdefault(call_id, self._inherited_calls[call_id])
            if hit is not None:
                if self._active:
                    self._active[-1].update(hit[2])
                return hit[1]
        visits: set[int] = set()
        self._active.append(visits)
        try:
            trace = self._statement(stmt, executor)
        finally:
            self._active.pop()
        if self._active:
            self._active[-1].update(visits)
        if not self.tests.assume:
            self._statements[key] = (stmt, trace, frozenset(visits))
        return trace

    def _statement(self, stmt: ast.stmt, executor: Executor) -> Trace:
        out: list[Item] = []
        if isinstance(stmt, ast.If):
            self.expr(stmt.test, executor, out)
            truth = self.tests.truth(stmt.test, executor)
            if truth is True:
                out.extend(self.block(stmt.body, executor))
            elif truth is False:
                out.extend(self.block(stmt.orelse, executor))
            else:
                alternatives = (self.block(stmt.body, executor), self.block(stmt.orelse, executor))
                out.append(Branch(stmt, alternatives))
        elif isinstance(stmt, ast.For | ast.AsyncFor):
            self.expr(stmt.iter, executor, out)
            out.append(Loop(stmt, strip_tail(self.block(stmt.body, executor), "continue")))
            out.extend(self.block(stmt.orelse, executor))
        elif isinstance(stmt, ast.While):
            self.expr(stmt.test, executor, out)
            if self.tests.truth(stmt.test, executor) is not False:
                out.append(Loop(stmt, strip_tail(self.block(stmt.body, executor), "continue")))
            out.extend(self.block(stmt.orelse, executor))
        elif isinstance(stmt, ast.Try | ast.TryStar):
            body = self.block(stmt.body, executor)
            completed = append_rest(body, self.block(stmt.orelse, executor))
            handlers = tuple(self.block(h.body, executor) for h in stmt.handlers)
            out.append(Branch(stmt, (completed, *handlers)))
            if stmt.finalbody:
                out[-1:] = list(append_rest(tuple(out[-1:]), self.block(stmt.finalbody, executor)))
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            for item in stmt.items:
                self.expr(item.context_expr, executor, out)
            out.extend(self.block(stmt.body, executor))
        elif isinstance(stmt, ast.Match):
            self.expr(stmt.subject, executor, out)
            cases = tuple(self.block(case.body, executor) for case in stmt.cases)
            out.append(Branch(stmt, (*cases, ())))
        elif isinstance(stmt, ast.Return):
            self.expr(stmt.value, executor, out)
            out.append(Exit("return"))
        elif isinstance(stmt, ast.Raise):
            self.expr(stmt.exc, executor, out)
            out.append(Exit("raise"))
        elif isinstance(stmt, ast.Break):
            out.append(Exit("break"))
        elif isinstance(stmt, ast.Continue):
            out.append(Exit("continue"))
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            pass  # a definition runs none of its body
        elif not isinstance(stmt, ast.Import | ast.ImportFrom | ast.Global | ast.Nonlocal | ast.Pass):
            for child in ast.iter_child_nodes(stmt):
                if isinstance(child, ast.expr):
                    self.expr(child, executor, out)
        return tuple(out)

    # --- expressions -------------------------------------------------------------------------------
    def expr(self, node: ast.expr | None, executor: Executor, out: list[Item]) -> None:
        """Append what evaluating `node` meets, children before the call that uses them; `and`/`or`
        and conditional expressions short-circuit like branches."""
        if node is None or id(node) not in self._live or isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.BoolOp):
            self._bool_op(node, node.values, executor, out)
            return
        if isinstance(node, ast.IfExp):
            self.expr(node.test, executor, out)
            truth = self.tests.truth(node.test, executor)
            body: list[Item] = []
            orelse: list[Item] = []
            if truth is not False:
                self.expr(node.body, executor, body)
            if truth is not True:
                self.expr(node.orelse, executor, orelse)
            if truth is None:
                out.append(Branch(node, (tuple(body), tuple(orelse))))
            else:
                out.extend(body or orelse)
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child, executor, out)
            elif isinstance(child, ast.keyword | ast.comprehension):
                for grandchild in ast.iter_child_nodes(child):
                    if isinstance(grandchild, ast.expr):
                        self.expr(grandchild, executor, out)
        if isinstance(node, ast.Call):
            self.call(node, executor, out)

    def _bool_op(self, node: ast.BoolOp, values: list[ast.expr], executor: Executor, out: list[Item]) -> None:
        stop = isinstance(node.op, ast.Or)  # `or` stops at the first true value, `and` at a false one
        for index, value in enumerate(values):
            self.expr(value, executor, out)
            if index == len(values) - 1:
                return
            truth = self.tests.truth(value, executor)
            if truth is stop:
                return
            if truth is None:
                rest: list[Item] = []
                self._bool_op(node, values[index + 1 :], executor, rest)
                if rest:
                    out.append(Branch(node, ((), tuple(rest))))
                return

    def call(self, call: ast.Call, executor: Executor, out: list[Item]) -> None:
        effect, sync, exits, targets = self._kind(call)
        active = self._active[-1] if self._active else None
        if (effect or sync is not None) and active is not None:
            active.add(id(call))
            self.calls[id(call)] = call
        if sync is not None:
            out.append(sync)
            return
        if exits:
            out.append(Exit("raise"))
            return
        for function in targets:
            key = (id(function), executor)
            if key in self._in_progress:
                out.append(Opaque(call))
                continue
            out.extend(self.function_trace(function, executor))
            if active is not None:
                active.update(self.visits.get(key, ()))

    def sync_of(self, call: ast.Call) -> Sync | None:
        """The barrier or collective a call makes, if any; the end of the process group is one too
        ("teardown"), which no barrier may follow."""
        names = self.ctx.names
        resolved = names.resolve(call.func)
        if resolved == catalog.DESTROY_PROCESS_GROUP or (
            isinstance(call.func, ast.Attribute) and call.func.attr == "end_training"
        ):
            return Sync(TEARDOWN, call, heuristic=resolved is None)
        if resolved in catalog.RUNTIME_BARRIERS:
            return Sync("ckptfix", call, heuristic=False)
        if resolved in catalog.BARRIERS and self._broken_timeout(call):
            return None  # `dist.barrier(timeout=120)` raises TypeError: it never waits
        if is_barrier_call(call, names):
            group = next((k.value for k in call.keywords if k.arg == "group"), None)
            kind = "barrier" if group is None else f"barrier@{ast.unparse(group)}"
            heuristic = resolved is None or resolved not in catalog.BARRIERS
            return Sync(kind, call, heuristic=heuristic)
        name = self.ctx._collective(call)
        if name is not None:
            short = name.rsplit(".", 1)[-1]
            heuristic = resolved not in catalog.COLLECTIVES and short not in catalog.TORCH_COLLECTIVE_METHODS
            return Sync(short, call, heuristic=heuristic)
        return None

    def _broken_timeout(self, call: ast.Call) -> bool:
        timeout = next((k.value for k in call.keywords if k.arg == "timeout"), None)
        is_number: Callable[[ast.expr], bool] | None = getattr(self.ctx, "_is_number", None)
        return timeout is not None and is_number is not None and is_number(timeout)


def qualname(ctx: RuleContext, node: ast.AST) -> str:
    """`Trainer.save`, `main.<locals>.helper`, or "<module>" for code at module level."""
    parts: list[str] = []
    current: ast.AST | None = node
    while current is not None:
        if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if parts and isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef):
                parts.append("<locals>")
            parts.append(current.name)
        current = ctx.tree.parent.get(id(current))
    return ".".join(reversed(parts)) or "<module>"
