"""State and helpers every rule shares: reporting, code templates, fresh names, sync detection."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from ckptfix.analysis import catalog
from ckptfix.analysis.callgraph import CallGraph
from ckptfix.analysis.collectives import collective_name, is_barrier_call
from ckptfix.analysis.guards import GuardRecognizer
from ckptfix.analysis.names import Names, dotted, last_name
from ckptfix.analysis.plan import Edit, Key
from ckptfix.analysis.tree import LOOPS, Tree, exits, walk_local
from ckptfix.analysis.uniform import RankUniform
from ckptfix.options import Options
from ckptfix.project.view import EMPTY, ImportedFact, ProjectView

if TYPE_CHECKING:
    from ckptfix.validation.validator import Program

LOG_CALLS = frozenset({"print", "info", "debug", "warning", "warn", "log", "write", "exception", "error"})


@dataclass
class Issue:
    """A finding before it becomes a Finding: where, what, the edits that fix it (none: report only),
    and the lines whose comments may suppress it."""

    code: str
    node: ast.AST
    message: str
    edits: list[Edit] = field(default_factory=list)
    lines: tuple[int, int] = (0, 0)
    # The assumption the fix rests on, when the analysis cannot prove it (ruff's unsafe fixes): the
    # fix is written only with --unsafe-fixes.
    unsafe: str | None = None


def fmt_seconds(seconds: float) -> str:
    """120.0 -> "120", 2.5 -> "2.5": how a timeout is written into code."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(seconds)


class RuleContext:
    """What the rules read (tree, names, guards, call graph, options) and where they report."""

    def __init__(
        self, tree: Tree, names: Names, options: Options, project: ProjectView | None = None
    ) -> None:
        self.tree = tree
        self.names = names
        self.options = options
        self.project = project or EMPTY
        self.runtime = options.style == "runtime"
        self.guards = GuardRecognizer(names, options.extra_main_predicates, self.project)
        self.guards.learn_main_only_objects(tree)
        self.guards.learn_main_flags(tree)
        self.guards.learn_guard_names(tree)
        self.guards.learn_mode_parameters(tree)
        self.graph = CallGraph(tree, self.guards, self.project)
        self.module_functions = {f.name for f in self.graph.functions}
        self.issues: list[Issue] = []
        self.init_keys: list[Key] = []
        self._init_missing: list[tuple[Key, ast.Call]] = []
        self._flags: dict[int, set[str]] | None = None  # CollectiveRules._loop_flags
        self._any_flag: set[str] = set()
        self._syncs: dict[int, bool] = {}
        self._reserved: dict[int, set[str]] = {}
        self._constants = _numeric_constants(tree.module)
        self._program: Program | None = None  # the validator's view of the module, built when needed

    @cached_property
    def uniform(self) -> RankUniform:
        """Which branch tests every rank evaluates alike (built only when a barrier is placed)."""
        return RankUniform(self.tree, self.guards, self._syncs_every_rank)

    def _issue(
        self,
        code: str,
        node: ast.AST,
        message: str,
        edits: list[Edit] | None = None,
        unsafe: str | None = None,
    ) -> None:
        if code not in self.options.select:
            return
        self.issues.append(Issue(code, node, message, edits or [], self._suppression_lines(node), unsafe))

    def _suppression_lines(self, node: ast.AST) -> tuple[int, int]:
        stmt = self.tree.statement(node)
        end = stmt.end_lineno or stmt.lineno
        body = getattr(stmt, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            end = max(stmt.lineno, body[0].lineno - 1)
        return (stmt.lineno, end)

    def key(self, node: ast.AST) -> Key:
        return self.tree.start(node)

    def _main_test(self) -> tuple[str, frozenset[str]]:
        if self.runtime:
            return "{is_main_process}()", frozenset({"is_main_process"})
        return "not {dist}.is_initialized() or {dist}.get_rank() == 0", frozenset({"dist"})

    def _barrier(self, seconds: float, final: bool) -> tuple[str, frozenset[str]]:
        if self.runtime:
            name = "final_sync" if final else "checkpoint_barrier"
            return f"{{{name}}}(timeout={fmt_seconds(seconds)})", frozenset({name})
        template = (
            "if {dist}.is_initialized():\n"
            f"    {{dist}}.barrier(timeout={{datetime}}.timedelta(seconds={fmt_seconds(seconds)}))\n"
        )
        return template, frozenset({"dist", "datetime"})

    def _clause_text(self, clause: ast.expr) -> str:
        """Source of one `and` clause, parenthesized where `and` would bind it differently; braces
        escaped for the template engine (guard rewrites rebuild a test from its clauses)."""
        text = self.tree.text(clause)
        if "\n" in text or isinstance(clause, ast.BoolOp | ast.IfExp | ast.NamedExpr | ast.Lambda):
            text = f"({text})"
        return text.replace("{", "{{").replace("}", "}}")

    def _fresh_local(self, scope: ast.AST, wanted: str) -> str:
        """A name unused in `scope` (function or module) and not yet handed out there."""
        reserved = self._reserved.setdefault(id(scope), set())
        used = {n.id for n in walk_local(scope) if isinstance(n, ast.Name)} | reserved
        if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
            used |= {a.arg for a in ast.walk(scope.args) if isinstance(a, ast.arg)}
        candidate, counter = wanted, 2
        while candidate in used or candidate in self.names.imports:
            candidate, counter = f"{wanted}_{counter}", counter + 1
        reserved.add(candidate)
        return candidate

    def _collective(self, call: ast.Call) -> str | None:
        """The collective a call makes; never a method of an object that exists on the main process
        only (`saver.save_checkpoint()` on `saver = Saver() if rank == 0 else None`), whatever its
        name: the other ranks have no such object to call it on."""
        if (
            isinstance(call.func, ast.Attribute)
            and self.guards.main_only
            and (dotted(call.func.value) or "") in self.guards.main_only
        ):
            return None
        fact = self.project_fact(call)
        if fact is not None:
            # A function of another file: what it runs is known, whatever its name says.
            return (dotted(call.func) or "?") if fact.collective else None
        return collective_name(call, self.names, self.module_functions)

    def _contains_collective(self, node: ast.AST) -> bool:
        """Evaluating `node` makes a collective call directly (a function of another file of the
        project counts by what it runs, not by its name)."""
        for child in ast.walk(node):
            if not isinstance(child, ast.Call):
                continue
            fact = self.project_fact(child)
            if fact is not None:
                if fact.collective:
                    return True
            elif collective_name(child, self.names, self.module_functions) is not None:
                return True
        return False

    def project_fact(self, call: ast.Call) -> ImportedFact | None:
        """What the project's other files say of the function a call names, if it is one of theirs."""
        if not self.project.imported:
            return None
        return self.project.fact(self.names.resolve(call.func))

    def _is_sync(self, call: ast.Call, carrier: bool = False) -> bool:
        """A barrier every rank reaches (directly or through a module helper), not one under a guard.
        `carrier`: one that also carries a reported save failure to every rank (the runtime's; in the
        inline style, which has no such report, any barrier)."""
        if self.guards.local_guard(self.tree, call) is not None:
            return False

        def direct(node: ast.Call) -> bool:
            if carrier and self.runtime:
                return self.names.resolve(node.func) in catalog.RUNTIME_BARRIERS
            fact = self.project_fact(node)
            if fact is not None:
                return fact.syncs is not None and not carrier  # a helper of another file that syncs
            return is_barrier_call(node, self.names)

        if direct(call):
            return True
        return any(self.graph.reaches(callee, direct) is not None for callee in self.graph.targets(call))

    def _syncs_every_rank(self, loop: ast.AST) -> bool:
        """The loop makes collectives (directly, through helpers, or DDP's backward)."""

        def direct(call: ast.Call) -> bool:
            return (
                last_name(call.func) == "backward"
                or is_barrier_call(call, self.names)
                or self._collective(call) is not None
            )

        if id(loop) not in self._syncs:
            self._syncs[id(loop)] = self._loop_reaches(loop, direct)
        return self._syncs[id(loop)]

    def _loop_reaches(self, loop: ast.AST, predicate: object) -> bool:
        for node in walk_local(loop):
            if isinstance(node, ast.Call):
                if predicate(node):  # type: ignore[operator]
                    return True
                if any(self.graph.reaches(c, predicate) is not None for c in self.graph.targets(node)):  # type: ignore[arg-type]
                    return True
        return False


def _numeric_constants(module: ast.Module) -> set[str]:
    """Module-level names assigned exactly once to a number (`CHECKPOINT_BARRIER_TIMEOUT = 120`)."""
    counts: dict[str, int] = {}
    numeric: set[str] = set()
    for stmt in module.body:
        if isinstance(stmt, ast.Assign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    counts[target.id] = counts.get(target.id, 0) + 1
                    value = stmt.value
                    if (
                        isinstance(value, ast.Constant)
                        and isinstance(value.value, int | float)
                        and not isinstance(value.value, bool)
                    ):
                        numeric.add(target.id)
    return {name for name in numeric if counts[name] == 1}


def contains_loop(stmt: ast.stmt) -> bool:
    """The statement is, or holds, a loop (not counting nested functions)."""
    return isinstance(stmt, LOOPS) or any(isinstance(n, LOOPS) for n in walk_local(stmt))


def loop_of(tree: Tree, node: ast.AST) -> ast.AST | None:
    """The innermost loop around `node` in its own function, if any."""
    for ancestor in tree.ancestors(node):
        if isinstance(ancestor, LOOPS):
            return ancestor
        if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            return None
    return None


def exits_early(stmt: ast.stmt) -> bool:
    """`stmt` contains a return, or a break/continue that leaves the loop around it."""
    return any(not isinstance(node, ast.Raise) for node in exits(stmt))


def and_clauses(test: ast.expr) -> list[ast.expr]:
    """The clauses of `a and b and c`; a test that is no `and` is its own one clause."""
    return test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
