"""Is the rewritten program at least as sound as the original? Refuse it, in words, where it is not.

Checked on the program a plan produces (`plan_ast`, or `ast.parse` of libcst's output), against the
original, with the rank as a symbol (`trace`):
1. in every function the rewrite changed, and every function that calls one, rank 0, a node's first
   rank and any other rank meet the same barriers and collectives in the same order and number (a
   mismatch the original already had, untouched by the rewrite, is not the rewrite's);
2. every barrier or collective the rewrite adds, or moves to other ranks, is reached alike by every
   rank: no main-process guard, no condition, loop count or early exit ranks may disagree on around it,
   in its function or around any of its calls, and its function's callers are all visible;
3. no write to a shared path, deletion, upload or print runs on more ranks than before; no per-rank
   output is written by fewer ranks than before; no write is lost;
4. a failure the rewrite catches goes somewhere: rank 0 meets a barrier that carries it on every path
   after the except, or the handler re-raises.
Facts that rest on a name alone (a collective recognised by its method name) make a valid fix unsafe.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

from ckptfix.analysis import catalog
from ckptfix.analysis.checker import rule_context
from ckptfix.analysis.names import Names
from ckptfix.analysis.rules.context import RuleContext
from ckptfix.analysis.saves import SaveFinder
from ckptfix.analysis.tree import LOOPS, FunctionNode, Tree
from ckptfix.options import Options
from ckptfix.project.view import ProjectView
from ckptfix.validation.effects import (
    DELETE,
    MAIN_OBJECT,
    PRINT,
    RANK_WRITE,
    UPLOAD,
    WRITE,
    EffectClassifier,
)
from ckptfix.validation.ranks import EXECUTORS, Executor, RankTests
from ckptfix.validation.trace import (
    TEARDOWN,
    Branch,
    Evaluator,
    Exit,
    Item,
    Loop,
    Opaque,
    Sync,
    Trace,
    normalize,
    qualname,
)

# The inline style's failure report: its string is the template's (ckptfix.analysis.rules.save_rules).
_INLINE_REPORT = "rank 0: failed to save checkpoint"
_NARROW_ONLY = (WRITE, DELETE, UPLOAD, PRINT, MAIN_OBJECT)

Key = tuple[str, str, str, int]  # (category, function, label, occurrence)


@dataclass
class Verdict:
    """Why a rewrite is refused (empty: it may be written), and the assumptions it rests on."""

    reasons: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)
    # Lines of the rewritten program the reasons are about (what was inserted or moved, the effect,
    # the handler): they say which of the rewrite's edits to drop.
    culprits: set[int] = field(default_factory=set)

    @property
    def valid(self) -> bool:
        return not self.reasons


class Program:
    """One version of a module, as the validator reads it."""

    ctx: RuleContext

    def __init__(
        self,
        source: str,
        module: ast.Module,
        options: Options,
        ctx: RuleContext | None = None,
        reuse: Program | None = None,
        project: ProjectView | None = None,
    ) -> None:
        # `reuse`: the original, when this program was built from it by `plan_ast`, sharing every
        # statement it leaves alone (a function that is another object has changed; no need to compare
        # its code, and what an unchanged statement meets there it meets here).
        self.derived = reuse is not None
        if ctx is None:
            tree = Tree(source, module)
            if project is None and reuse is not None:
                project = reuse.ctx.project  # the same file, so the same facts of the others
            ctx = rule_context(tree, Names(module, tree), options, project)
        self.ctx = ctx
        self.tree = ctx.tree
        finder = SaveFinder(self.tree, ctx.names, options.extra_save_functions, ctx.project)
        self.effects = EffectClassifier(self.tree, ctx.names, finder, set(ctx.guards.main_only))
        self.evaluator: Evaluator = Evaluator(
            ctx, self.effects, reuse.evaluator if reuse is not None else None
        )
        self._reach: dict[tuple[str, ...], dict[int, set[Executor]]] = {}
        self._functions: dict[str, FunctionNode] | None = None

    # --- who runs what -----------------------------------------------------------------------------
    def roots(self) -> list[FunctionNode]:
        """Functions entered from outside the module's own calls: no call site, or passed around."""
        graph = self.ctx.graph
        return [
            f
            for f in graph.functions
            if not graph.sites[id(f)] or any(not isinstance(s, ast.Call) for s in graph.sites[id(f)])
        ]

    def reach(self, roots: list[str]) -> dict[int, set[Executor]]:
        """For each effect or sync call some executor reaches from the given roots (by qualified
        name, "<module>" for the module's own code): which executors reach it."""
        key = tuple(sorted(roots))
        cached = self._reach.get(key)
        if cached is not None:
            return cached
        reach: dict[int, set[Executor]] = {}
        functions = self.functions()
        scopes: list[ast.AST] = [
            self.tree.module if name == "<module>" else functions[name]
            for name in key
            if name == "<module>" or name in functions
        ]
        for executor in EXECUTORS:
            for scope in scopes:
                self.trace(scope, executor)
                for call_id in self.evaluator.visits.get((id(scope), executor), ()):
                    reach.setdefault(call_id, set()).add(executor)
        self._reach[key] = reach
        return reach

    def identities(self, roots: list[str]) -> dict[Key, tuple[set[Executor], ast.Call]]:
        """Each effect and sync reached from `roots`, by what survives a rewrite: its category,
        function and label."""
        reach = self.reach(roots)
        calls = sorted(
            (self.evaluator.calls[i] for i in reach),
            key=lambda c: (c.lineno, c.col_offset),
        )
        found: dict[Key, tuple[set[Executor], ast.Call]] = {}
        counts: dict[tuple[str, str, str], int] = {}
        for call in calls:
            function = qualname(self.ctx, call)
            kinds: list[tuple[str, str]] = []
            effect = self.effects.of(call)
            if effect is not None:
                kinds.append((effect.category, effect.label))
            if self.evaluator.sync_of(call) is not None:
                kinds.append(("sync", ast.unparse(call)))
            for category, label in kinds:
                slot = (category, function, label)
                counts[slot] = counts.get(slot, 0) + 1
                found[(category, function, label, counts[slot])] = (reach[id(call)], call)
        return found

    def functions(self) -> dict[str, FunctionNode]:
        if self._functions is None:
            self._functions = {qualname(self.ctx, f): f for f in self.ctx.graph.functions}
        return self._functions

    def trace(self, scope: ast.AST, executor: Executor) -> Trace:
        if isinstance(scope, ast.Module):
            return self.evaluator.module_trace(executor)
        return self.evaluator.function_trace(scope, executor)  # type: ignore[arg-type]

    def callers(self, function: FunctionNode) -> list[FunctionNode | ast.Module]:
        out: list[FunctionNode | ast.Module] = []
        for site in self.ctx.graph.sites[id(function)]:
            caller = self.tree.function(site)
            out.append(caller if caller is not None else self.tree.module)
        return out


# --- 1. the same barriers and collectives on every rank ----------------------------------------------
def first_difference(a: Trace, b: Trace) -> tuple[Item | None, Item | None] | None:
    """Where two executors' traces part, or None when they match. A path that raises matches anything:
    whatever it would have met never runs."""
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else None
        y = b[index] if index < len(b) else None
        if (isinstance(x, Exit) and x.kind == "raise") or (isinstance(y, Exit) and y.kind == "raise"):
            return None
        if x is None or y is None or type(x) is not type(y):
            return (x, y)
        if isinstance(x, Sync) and isinstance(y, Sync):
            if x.kind != y.kind:
                return (x, y)
        elif isinstance(x, Branch) and isinstance(y, Branch):
            if x.node is not y.node or len(x.alternatives) != len(y.alternatives):
                return (x, y)
            for alt_x, alt_y in zip(x.alternatives, y.alternatives, strict=True):
                found = first_difference(alt_x, alt_y)
                if found is not None:
                    return found
        elif isinstance(x, Loop) and isinstance(y, Loop):
            if x.node is not y.node:
                return (x, y)
            found = first_difference(x.body, y.body)
            if found is not None:
                return found
        elif (isinstance(x, Exit) and isinstance(y, Exit) and x.kind != y.kind) or (
            isinstance(x, Opaque) and isinstance(y, Opaque) and x.node is not y.node
        ):
            return (x, y)
    return None


def _first_sync(item: Item) -> Sync | None:
    if isinstance(item, Sync):
        return item
    inner: list[Trace] = list(item.alternatives) if isinstance(item, Branch) else []
    if isinstance(item, Loop):
        inner = [item.body]
    for trace in inner:
        for part in trace:
            found = _first_sync(part)
            if found is not None:
                return found
    return None


def _describe(item: Item | None) -> str:
    if item is None:
        return "nothing more"
    item = _first_sync(item) or item
    if isinstance(item, Sync):
        return f"`{_short(item.node)}` (line {item.node.lineno})"
    if isinstance(item, Exit):
        return f"a `{item.kind}`"
    if isinstance(item, Loop):
        return f"the loop at line {getattr(item.node, 'lineno', '?')}"
    if isinstance(item, Branch):
        return f"the branch at line {getattr(item.node, 'lineno', '?')}"
    return f"a recursive call at line {getattr(item.node, 'lineno', '?')}"


def _short(call: ast.Call) -> str:
    text = ast.unparse(call)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Mismatch:
    text: str  # "rank 0 meets ... where any other rank meets ..."
    lines: frozenset[int]  # where the two part


def mismatch(program: Program, scope: ast.AST) -> Mismatch | None:
    """How rank 0's barriers and collectives in `scope` differ from another rank's, or None."""
    traces = {executor: program.trace(scope, executor) for executor in EXECUTORS}
    for other in (Executor.RK, Executor.RL):
        found = first_difference(traces[Executor.R0], traces[other])
        if found is not None:
            x, y = found
            lines = frozenset(
                getattr(item.node, "lineno", 0)
                for item in (x, y)
                if item is not None and hasattr(item, "node")
            )
            return Mismatch(f"rank 0 meets {_describe(x)} where {other.value} meets {_describe(y)}", lines)
    return None


Shape = tuple[object, ...]


def _without(trace: Trace, skip: frozenset[int]) -> Trace:
    out: list[Item] = []
    for item in trace:
        if isinstance(item, Sync) and id(item.node) in skip:
            continue
        if isinstance(item, Branch):
            out.append(Branch(item.node, tuple(_without(alt, skip) for alt in item.alternatives)))
        elif isinstance(item, Loop):
            out.append(Loop(item.node, _without(item.body, skip)))
        else:
            out.append(item)
    return tuple(out)


def shape(trace: Trace, skip: frozenset[int] = frozenset()) -> Shape:
    """A trace as plain data, comparable between two versions of a module (whose nodes are not the
    same objects): syncs by kind and text, branches and loops by what they hold; `skip`: syncs to
    leave out (what the rewrite added), as if they had never been there."""
    out: list[object] = []
    for item in normalize(_without(trace, skip)) if skip else trace:
        if isinstance(item, Sync):
            out.append(("sync", item.kind, ast.unparse(item.node)))
        elif isinstance(item, Branch):
            out.append(("branch", tuple(shape(alt) for alt in item.alternatives)))
        elif isinstance(item, Loop):
            out.append(("loop", shape(item.body)))
        elif isinstance(item, Exit):
            out.append(("exit", item.kind))
        else:
            out.append(("recursion",))
    return tuple(out)


# --- 2. what the rewrite adds is reached alike ---------------------------------------------------------
@dataclass(frozen=True)
class Why:
    """Why some rank may not reach a node. `proven`: a rank test, a guard or the callers say so;
    otherwise only that ckptfix cannot prove the ranks agree (a condition or loop it cannot read)."""

    text: str
    proven: bool
    # Only an assumption about callers in other files of the project is unproved: the fix is unsafe,
    # not refused.
    assumption: bool = False


def why_not_alike(program: Program, node: ast.AST, seen: frozenset[int] = frozenset()) -> Why | None:
    """None when every rank reaches `node` equally often; else why not, in words."""
    ctx, tree = program.ctx, program.tree
    guard = ctx.guards.local_guard(tree, node)
    if guard is not None:
        return Why(f"it runs under the main-process guard at line {getattr(guard.node, 'lineno', '?')}", True)
    uniform = ctx.uniform
    child: ast.AST = tree.statement(node)
    for owner in tree.ancestors(child):
        if isinstance(child, ast.stmt):
            block, index = tree.block_of(child)
            for previous in block[: max(index, 0)]:
                if not uniform._exits_alike(previous, failures=False):
                    return Why(
                        f"the statement at line {previous.lineno} may leave early on some ranks only", False
                    )
        if isinstance(owner, ast.Module | ast.ClassDef):
            return None
        if isinstance(owner, ast.FunctionDef | ast.AsyncFunctionDef):
            return _callers_alike(program, owner, seen)
        if isinstance(owner, ast.If):
            if child is owner.test or not uniform.test(owner.test):
                rank_test = RankTests(ctx.guards)
                proven = any(rank_test.truth(owner.test, e) is not None for e in EXECUTORS)
                return Why(f"ranks may disagree on the condition at line {owner.lineno}", proven)
        elif isinstance(owner, LOOPS):
            if not any(item is child for item in owner.body):
                return Why(f"it is in the else of the loop at line {owner.lineno}", False)
            if not uniform._counts_alike(owner):
                return Why(
                    f"the loop at line {owner.lineno} may run a different number of times on each rank", False
                )
        elif isinstance(owner, ast.Lambda):
            return Why("it runs inside a lambda", True)
        elif isinstance(owner, ast.ExceptHandler):
            return Why(f"it runs only where the exception handled at line {owner.lineno} was raised", True)
        elif isinstance(owner, ast.Match):
            return Why(f"ranks may take different cases of the match at line {owner.lineno}", False)
        # A `try` or `with` body is entered by every rank alike: an exception is a failure, whose
        # barrier timeouts end the job; where it is caught, its handler is the branch above.
        child = owner
    return None


def _callers_alike(program: Program, function: FunctionNode, seen: frozenset[int]) -> Why | None:
    ctx = program.ctx
    if ctx.guards.decorator_kind(function) is not None:
        return Why(f"`{function.name}` is decorated to run on the main process only", True)
    if id(function) in seen:
        return Why(f"`{function.name}` is recursive", True)
    unseen = ctx.graph.callers_unseen(function)
    if unseen is not None:
        return Why(unseen, True)
    for site in ctx.graph.sites[id(function)]:
        if not isinstance(site, ast.Call):
            continue  # handed to a launcher: every rank
        why = why_not_alike(program, site, seen | {id(function)})
        if why is not None:
            return Why(
                f"`{function.name}` is called at line {site.lineno}, where {why.text}",
                why.proven,
                why.assumption,
            )
    assumed = ctx.graph.callers_elsewhere_assumed(function)
    if assumed is not None:
        return Why(assumed, False, assumption=True)
    return None


def after_teardown(trace: Trace, torn: bool = False) -> Sync | None:
    """A barrier met once the process group is gone (`final_sync()` after `end_training()`): it waits
    for nothing, and its log says the final sync completed."""
    for item in trace:
        if isinstance(item, Sync):
            if item.kind == TEARDOWN:
                torn = True
            elif torn:
                return item
        elif isinstance(item, Branch):
            for alternative in item.alternatives:
                found = after_teardown(alternative, torn)
                if found is not None:
                    return found
            torn = torn or all(_tears_down(alt) for alt in item.alternatives)
        elif isinstance(item, Loop):
            found = after_teardown(item.body, torn)
            if found is not None:
                return found
    return None


def _tears_down(trace: Trace) -> bool:
    return any(isinstance(item, Sync) and item.kind == TEARDOWN for item in trace)


# --- 4. caught failures go somewhere --------------------------------------------------------------------
def _carries(trace: Trace, kinds: frozenset[str]) -> bool | None:
    """True: every path meets a barrier of `kinds` (or raises); False: some path leaves first; None:
    some path falls off the end without either."""
    for item in trace:
        if isinstance(item, Sync) and item.kind in kinds:
            return True
        if isinstance(item, Exit):
            return item.kind == "raise"
        if isinstance(item, Branch):
            results = [_carries(alt, kinds) for alt in item.alternatives]
            if False in results:
                return False
            if all(r is True for r in results):
                return True
    return None


def _held_conditions(program: Program, stmt: ast.stmt) -> frozenset[str]:
    """The `and` clauses of the `if`s around `stmt` (in its function) that their bodies do not rebind:
    they still hold when the code after those `if`s tests them again."""
    held: set[str] = set()
    child: ast.AST = stmt
    for owner in program.tree.ancestors(stmt):
        if isinstance(owner, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module | ast.ClassDef):
            break
        if isinstance(owner, ast.If) and any(item is child for item in owner.body):
            stored = {
                n.id
                for part in owner.body
                for n in ast.walk(part)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del)
            }
            clauses = (
                owner.test.values
                if isinstance(owner.test, ast.BoolOp) and isinstance(owner.test.op, ast.And)
                else [owner.test]
            )
            for clause in clauses:
                if not any(isinstance(n, ast.Name) and n.id in stored for n in ast.walk(clause)):
                    held.add(ast.unparse(clause))
        child = owner
    return frozenset(held)


def carried(
    program: Program,
    stmt: ast.stmt,
    kinds: frozenset[str],
    seen: frozenset[int] = frozenset(),
    held: frozenset[str] | None = None,
) -> bool:
    """Rank 0 meets a barrier of `kinds` on every path after `stmt` (in its function or its callers')."""
    tree = program.tree
    if held is None:
        held = _held_conditions(program, stmt)
    block, index = tree.block_of(stmt)
    tests = program.evaluator.tests
    tests.assume = held
    try:
        result = _carries(program.evaluator.block(block[index + 1 :], Executor.R0), kinds)
    finally:
        tests.assume = frozenset()
    if result is not None:
        return result
    parent = tree.parent.get(id(stmt))
    if parent is None or isinstance(parent, ast.Module | ast.ClassDef | ast.Lambda):
        return False
    if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef):
        sites = program.ctx.graph.sites[id(parent)]
        if not sites or id(parent) in seen or not all(isinstance(s, ast.Call) for s in sites):
            return False
        return all(carried(program, tree.statement(s), kinds, seen | {id(parent)}) for s in sites)
    while not isinstance(parent, ast.stmt):
        parent = tree.parent[id(parent)]
    return carried(program, parent, kinds, seen, held)


def _reporting_handlers(program: Program) -> Iterator[ast.ExceptHandler]:
    """Except handlers that report a failed save and do not re-raise it."""
    names = program.ctx.names
    for handler in program.tree.of_type(ast.ExceptHandler):
        reports = False
        for node in ast.walk(handler):
            if isinstance(node, ast.Raise):
                reports = False
                break
            if (
                isinstance(node, ast.Call)
                and names.resolve(node.func) == f"{catalog.RUNTIME_MODULE}.report_save_failure"
            ):
                reports = True
            if isinstance(node, ast.Constant) and node.value == _INLINE_REPORT:
                reports = True
        if reports:
            yield handler


def _replaces_barrier(before: Program, after: Program, call: ast.Call) -> bool:
    """The same function of the original already calls a barrier (the rewrite makes one work)."""
    function = after.tree.function(call)
    scope = before.tree.module if function is None else before.functions().get(qualname(after.ctx, function))
    if scope is None:
        return False
    return any(
        isinstance(node, ast.Call) and before.ctx.names.resolve(node.func) in catalog.BARRIERS
        for node in ast.walk(scope)
    )


def _in_handler(program: Program, node: ast.AST) -> bool:
    return any(isinstance(a, ast.ExceptHandler) for a in program.tree.ancestors(node))


# --- the whole check ---------------------------------------------------------------------------------
def _changed_scopes(before: Program, after: Program) -> list[ast.AST]:
    """Functions of `after` that differ from `before` (by their code), the module body if it does,
    and every function that calls one of them, at any depth."""
    old = before.functions()
    changed: list[ast.AST] = []
    for name, function in after.functions().items():
        previous = old.get(name)
        if previous is None or (
            previous is not function and (after.derived or ast.dump(previous) != ast.dump(function))
        ):
            changed.append(function)
    top_before = [
        s
        for s in before.tree.module.body
        if not isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    top_after = [
        s
        for s in after.tree.module.body
        if not isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    if len(top_before) != len(top_after) or any(
        a is not b and (after.derived or ast.dump(a) != ast.dump(b))
        for a, b in zip(top_before, top_after, strict=True)
    ):
        changed.append(after.tree.module)
    seen = {id(s) for s in changed}
    queue: list[FunctionNode] = [s for s in changed if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    while queue:
        function = queue.pop()
        for caller in after.callers(function):
            if id(caller) not in seen:
                seen.add(id(caller))
                changed.append(caller)
                if not isinstance(caller, ast.Module):
                    queue.append(caller)
    return changed


def _scope_in(program: Program, scope: ast.AST, owner: Program) -> ast.AST | None:
    """The same function (by qualified name) of `owner` in another version of the module."""
    if isinstance(scope, ast.Module):
        return program.tree.module
    return program.functions().get(qualname(owner.ctx, scope))


def _executors(executors: set[Executor]) -> str:
    if executors >= set(EXECUTORS):
        return "every rank"
    return " and ".join(e.value for e in EXECUTORS if e in executors) or "no rank"


def validate(before: Program, after: Program, inline: bool = False, moves_only: bool = False) -> Verdict:
    """Compare two versions of a module (see the module docstring). `moves_only`: check 2 alone, on the
    collectives the rewrite moves (a guard change refused there is refused whatever else follows)."""
    verdict = Verdict()
    scopes = _changed_scopes(before, after)
    # Effects and syncs are compared from the entry points whose runs reach what changed: elsewhere the
    # code, and who runs it, is the same.
    entries = {id(root) for root in after.roots()}
    roots = [
        "<module>" if isinstance(scope, ast.Module) else qualname(after.ctx, scope)
        for scope in scopes
        if isinstance(scope, ast.Module) or id(scope) in entries
    ]
    old, new = before.identities(roots), after.identities(roots)
    if moves_only:
        _check_reached(before, after, old, new, verdict)
        return verdict
    added = frozenset(id(call) for key, (_, call) in new.items() if key[0] == "sync" and key not in old)
    # 1. every rank meets the same barriers and collectives, in the same order
    for scope in scopes:
        found = mismatch(after, scope)
        if found is None:
            continue
        previous = _scope_in(before, scope, after)
        if (
            previous is not None
            and mismatch(before, previous) is not None
            and all(
                shape(after.trace(scope, e), added) == shape(before.trace(previous, e)) for e in EXECUTORS
            )
        ):
            continue  # the original already mismatched there, and the rewrite changed none of it
        name = "the module" if isinstance(scope, ast.Module) else f"`{getattr(scope, 'name', '?')}`"
        verdict.reasons.append(f"in {name}, {found.text}")
        verdict.culprits |= found.lines
    for scope in scopes:
        for executor in EXECUTORS:
            late = after_teardown(after.trace(scope, executor))
            if late is not None and id(late.node) in added:
                verdict.culprits.add(late.node.lineno)
                verdict.reasons.append(
                    f"the `{_short(late.node)}` inserted at line {late.node.lineno} comes after the process "
                    "group is torn down: it would wait for nothing"
                )
                break
    # 2. what is new, or runs on other ranks than before, is reached alike
    _check_reached(before, after, old, new, verdict)
    # 3. side effects run on the same ranks
    for key, (executors, call) in old.items():
        category = key[0]
        if category == "sync":
            continue
        now = new.get(key)
        if now is None:
            if category in (WRITE, RANK_WRITE):
                verdict.culprits.add(call.lineno)
                verdict.reasons.append(
                    f"the write to `{key[2]}` at line {call.lineno} would no longer happen"
                )
            continue
        if category == PRINT and _in_handler(after, now[1]):
            continue  # printed where an exception was caught: on the ranks that failed, not on more
        if category in _NARROW_ONLY and not now[0] <= executors:
            verdict.culprits.add(call.lineno)
            verdict.reasons.append(
                f"the {category} `{_short(call)}` at line {call.lineno} would run on "
                f"{_executors(now[0])} (it ran on {_executors(executors)} only)"
            )
        if category == RANK_WRITE and not executors <= now[0]:
            verdict.culprits.add(call.lineno)
            verdict.reasons.append(
                f"the per-rank file `{key[2]}` (line {call.lineno}) would no longer be written by "
                f"{_executors(executors - now[0])}"
            )
    # 4. a reported failure reaches the other ranks, or is raised
    kinds = frozenset({"ckptfix", "barrier"}) if inline else frozenset({"ckptfix"})
    existing = {ast.dump(h) for h in before.tree.of_type(ast.ExceptHandler)}
    for handler in _reporting_handlers(after):
        if ast.dump(handler) in existing:
            continue
        owner = after.tree.parent[id(handler)]
        assert isinstance(owner, ast.stmt)
        if not carried(after, owner, kinds):
            verdict.culprits.add(handler.lineno)
            verdict.reasons.append(
                f"the failure caught at line {handler.lineno} would be swallowed: no barrier follows it on "
                "every path to tell the other ranks, and it is not re-raised"
            )
    verdict.reasons = list(dict.fromkeys(verdict.reasons))
    verdict.unsafe = list(dict.fromkeys(verdict.unsafe))
    return verdict


def _check_reached(
    before: Program,
    after: Program,
    old: dict[Key, tuple[set[Executor], ast.Call]],
    new: dict[Key, tuple[set[Executor], ast.Call]],
    verdict: Verdict,
) -> None:
    """Check 2: what is new, or runs on other ranks than before, is reached alike."""
    for key, (executors, call) in new.items():
        if key[0] != "sync":
            continue
        known = old.get(key)
        if known is not None and known[0] == executors:
            continue
        why = why_not_alike(after, call)
        what = "inserted" if known is None else "moved"
        if why is not None and why.assumption:
            verdict.unsafe.append(f"the `{_short(call)}` {what} at line {call.lineno} assumes {why.text}")
            why = None
        if why is not None and (why.proven or known is None or executors <= known[0]):
            verdict.culprits.add(call.lineno)
            # A collective that only some ranks reached before, and that a condition ckptfix cannot
            # read guards now, hung before and may work now: not worse. Anything else must be proved.
            message = (
                f"the `{_short(call)}` {what} at line {call.lineno} would not be reached by every rank: "
                f"{why.text}"
            )
            if why.proven or not _replaces_barrier(before, after, call):
                verdict.reasons.append(message)
            else:  # the code asked for a barrier there; whether its ranks agree is not provable
                verdict.unsafe.append(
                    f"ckptfix cannot prove that every rank reaches the barrier at line {call.lineno}: "
                    f"{why.text}"
                )
        sync = after.evaluator.sync_of(call)
        if known is not None and sync is not None and sync.heuristic:
            verdict.culprits.add(call.lineno)
            verdict.unsafe.append(f"`{_short(call)}` is taken for a collective by its name alone")
