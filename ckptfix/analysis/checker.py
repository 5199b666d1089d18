"""The rules: walk one module's `ast`, produce issues (a finding plus the edits that fix it).

CKP001 unguarded save, CKP002 no barrier after a checkpoint, CKP003 numeric barrier timeout, CKP004 no
final sync, CKP005 non-atomic write, CKP006 collective only the main process reaches, CKP007 swallowed
barrier error. The edits never put a collective under a guard and never put a barrier inside one.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from ckptfix.analysis import catalog
from ckptfix.analysis.callgraph import CallGraph
from ckptfix.analysis.collectives import collective_name, contains_collective, is_barrier_call
from ckptfix.analysis.distributed import is_distributed
from ckptfix.analysis.guards import Guard, GuardRecognizer, Kind
from ckptfix.analysis.names import Names, dotted, last_name
from ckptfix.analysis.plan import (
    CallEdit,
    Edit,
    InlineAtomic,
    Insert,
    Key,
    UnwrapTry,
    WrapGuard,
)
from ckptfix.analysis.saves import Save, SaveFinder, argument
from ckptfix.analysis.tree import LOOPS, FunctionNode, Tree, walk_local
from ckptfix.options import Options

_SUCCESS_TEXT = re.compile(r"saved|success|✅|complete|written|wrote|done", re.IGNORECASE)
_SUCCESS_TARGET = re.compile(r"last_|saved|checkpoint|ckpt", re.IGNORECASE)
_LOG_CALLS = frozenset({"print", "info", "debug", "warning", "warn", "log", "write", "exception", "error"})
_BROAD_EXCEPTIONS = frozenset(
    {"Exception", "BaseException", "RuntimeError", "DistBackendError", "DistError", "TimeoutError", "OSError"}
)


@dataclass
class Issue:
    """A finding before it becomes a Finding: where, what, the edits that fix it (none: report only),
    and the lines whose comments may suppress it."""

    code: str
    node: ast.AST
    message: str
    edits: list[Edit] = field(default_factory=list)
    lines: tuple[int, int] = (0, 0)


@dataclass
class Analysis:
    tree: Tree
    names: Names
    issues: list[Issue]
    # init_process_group(...) statements with no init_sync() after them (runtime style needs one).
    init_keys: list[Key]


def analyze(source: str, module: ast.Module, options: Options) -> Analysis:
    """Run every selected rule over one parsed module."""
    tree = Tree(source, module)
    names = Names(module, tree.nodes)
    if not (options.assume_distributed or is_distributed(tree.nodes, names)):
        return Analysis(tree, names, [], [])
    checker = _Checker(tree, names, options)
    checker.run()
    return Analysis(tree, names, checker.issues, checker.init_keys)


def _fmt(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(seconds)


class _Checker:
    def __init__(self, tree: Tree, names: Names, options: Options) -> None:
        self.tree = tree
        self.names = names
        self.options = options
        self.runtime = options.style == "runtime"
        self.guards = GuardRecognizer(names, options.extra_main_predicates)
        self.graph = CallGraph(tree, self.guards)
        self.module_functions = {f.name for f in self.graph.functions}
        self.issues: list[Issue] = []
        self.init_keys: list[Key] = []
        self._init_missing: list[tuple[Key, ast.Call]] = []
        self._flags: dict[int, set[str]] = {}
        self._syncs: dict[int, bool] = {}
        self._reserved: dict[int, set[str]] = {}
        self._constants = _numeric_constants(tree.module)

    # --- driver ----------------------------------------------------------------------------------------
    def run(self) -> None:
        saves = [s for s in SaveFinder(self.tree, self.names, self.options.extra_save_functions).find()]
        checkpoints = [s for s in saves if not s.per_rank and not s.in_memory]
        for save in checkpoints:
            self._check_save(save)
        for node in self.tree.nodes:
            if isinstance(node, ast.Call):
                self._check_barrier_timeout(node)
                self._check_collective(node)
            elif isinstance(node, ast.Try):
                self._check_swallowed(node)
            elif isinstance(node, ast.Break | ast.Assign):
                self._check_divergent_exit(node)
        self._check_final_sync(bool(checkpoints))

    def _issue(self, code: str, node: ast.AST, message: str, edits: list[Edit] | None = None) -> None:
        if code not in self.options.select:
            return
        self.issues.append(Issue(code, node, message, edits or [], self._suppression_lines(node)))

    def _suppression_lines(self, node: ast.AST) -> tuple[int, int]:
        stmt = self.tree.statement(node)
        end = stmt.end_lineno or stmt.lineno
        body = getattr(stmt, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            end = max(stmt.lineno, body[0].lineno - 1)
        return (stmt.lineno, end)

    def key(self, node: ast.AST) -> Key:
        return self.tree.start(node)

    # --- templates -------------------------------------------------------------------------------------
    def _main_test(self) -> tuple[str, frozenset[str]]:
        if self.runtime:
            return "{is_main_process}()", frozenset({"is_main_process"})
        return "not {dist}.is_initialized() or {dist}.get_rank() == 0", frozenset({"dist"})

    def _barrier(self, seconds: float, final: bool) -> tuple[str, frozenset[str]]:
        if self.runtime:
            name = "final_sync" if final else "checkpoint_barrier"
            return f"{{{name}}}(timeout={_fmt(seconds)})", frozenset({name})
        template = (
            "if {dist}.is_initialized():\n"
            f"    {{dist}}.barrier(timeout={{datetime}}.timedelta(seconds={_fmt(seconds)}))\n"
        )
        return template, frozenset({"dist", "datetime"})

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

    # --- CKP001 / CKP002 / CKP005 ----------------------------------------------------------------------
    def _check_save(self, save: Save) -> None:
        call = save.call
        shown = dotted(call.func) or save.target
        if save.is_hf and any(kw.arg == "is_main_process" for kw in call.keywords):
            guard: Guard | None = Guard(Kind.GLOBAL, call)
        else:
            guard = self.graph.guard(call)
        if guard is not None and guard.kind == Kind.SHARD:
            return  # one writer per model-parallel shard: deliberate
        if guard is None:
            edits = self._guard_edits(save)
            self._issue(
                "CKP001",
                call,
                f"`{shown}(...)` runs on every rank: all ranks write the same checkpoint"
                + ("" if edits else " (not rewritten automatically: guard the write by hand)"),
                edits,
            )
        elif guard.kind == Kind.LOCAL:
            self._issue(
                "CKP001",
                call,
                f"`{shown}(...)` is guarded by a local-rank test (line {getattr(guard.node, 'lineno', '?')}):"
                " one writer per node on shared storage; use the global rank",
            )
            return
        if save.is_torch_save and save.handle_with is None and not self._atomic_already(call):
            self._issue(
                "CKP005",
                call,
                f"`{shown}(...)` writes the final path in place: a crash or full disk leaves a truncated "
                "checkpoint; write a temp file and rename it",
                self._atomic_edits(save),
            )
        self._check_barrier_after(save, shown)

    def _guard_edits(self, save: Save) -> list[Edit]:
        call = save.call
        test, symbols = self._main_test()
        if save.is_hf:
            receiver = self.tree.text(call.func).lower()
            if not any(hint in receiver for hint in catalog.HF_NO_MAIN_KWARG_HINTS):
                value = test if self.runtime else f"({test})"
                return [
                    CallEdit(self.tree.span(call), add_keyword=("is_main_process", value), symbols=symbols)
                ]
        stmt: ast.stmt = save.handle_with or self.tree.statement(call)
        if save.handle_with is None and not (isinstance(stmt, ast.Expr) and stmt.value is call):
            return []
        if not self.tree.alone_on_line(stmt):
            return []
        obj = argument(call, save.obj)
        # The object may gather state collectively (FSDP state_dict): it keeps running on every rank.
        hoist = (
            save.handle_with is None
            and obj is not None
            and any(isinstance(n, ast.Call) for n in ast.walk(obj))
        )
        if self._collective_outside(stmt, obj if hoist else None):
            return []
        followers = self._success_followers(stmt)
        scope = self.tree.function(call) or self.tree.module
        if self.runtime:
            symbols |= {"report_save_failure"}
            handler = "{report_save_failure}(__path__, {exc})"
        else:
            symbols |= {"logging"}
            handler = (
                '{logging}.getLogger(__name__).exception("rank 0: failed to save checkpoint %s", __path__)'
            )
        return [
            WrapGuard(
                key=self.key(stmt),
                followers=followers,
                dest=save.dest
                if argument(call, save.dest) is not None and save.handle_with is None
                else None,
                obj=save.obj if hoist else None,
                hoist_name=self._fresh_local(scope, "checkpoint_state") if hoist else None,
                exc_name=self.names.fresh("exc") if self.runtime else None,
                test=test,
                handler=handler,
                symbols=symbols,
            )
        ]

    def _collective_outside(self, node: ast.AST, skip: ast.AST | None) -> bool:
        """A collective in `node` other than inside `skip` (the hoisted object argument)."""
        stack = [node]
        while stack:
            current = stack.pop()
            if current is skip:
                continue
            if isinstance(current, ast.Call) and collective_name(current, self.names, self.module_functions):
                return True
            stack.extend(ast.iter_child_nodes(current))
        return False

    def _success_followers(self, stmt: ast.stmt) -> int:
        block, index = self.tree.block_of(stmt)
        count = 0
        for follower in block[index + 1 :]:
            if not self.tree.alone_on_line(follower) or not self._success_only(follower):
                break
            count += 1
        return count

    def _success_only(self, stmt: ast.stmt) -> bool:
        if contains_collective(stmt, self.names, self.module_functions):
            return False
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            if self._is_rename(stmt.value):
                return True  # the temp-file-then-rename step of a hand-written atomic write
            if last_name(stmt.value.func) not in _LOG_CALLS:
                return False
            texts = [
                n.value
                for n in ast.walk(stmt.value)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
            ]
            return any(_SUCCESS_TEXT.search(text) for text in texts)
        if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
            if stmt.value is None or any(isinstance(n, ast.Call) for n in ast.walk(stmt.value)):
                return False
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            return any(_SUCCESS_TARGET.search(self.tree.text(t)) for t in targets)
        return False

    def _is_rename(self, call: ast.Call) -> bool:
        """os.replace / os.rename / shutil.move, or Path.replace/rename (one argument, unlike str's)."""
        if self.names.resolve(call.func) in {"os.replace", "os.rename", "shutil.move"}:
            return True
        return (
            isinstance(call.func, ast.Attribute)
            and call.func.attr in {"replace", "rename"}
            and len(call.args) == 1
            and not call.keywords
        )

    def _atomic_already(self, call: ast.Call) -> bool:
        scope = self.tree.function(call) or self.tree.module
        return any(isinstance(node, ast.Call) and self._is_rename(node) for node in walk_local(scope))

    def _atomic_edits(self, save: Save) -> list[Edit]:
        call = save.call
        if any(isinstance(a, ast.Starred) for a in call.args) or any(kw.arg is None for kw in call.keywords):
            return []
        obj, dest = argument(call, save.obj), argument(call, save.dest)
        if obj is None or dest is None or save.obj is None or save.dest is None:
            return []
        if self.runtime:
            return [
                CallEdit(
                    self.tree.span(call),
                    func="{atomic_save}",
                    positional=(save.obj, save.dest),
                    symbols=frozenset({"atomic_save"}),
                )
            ]
        stmt = self.tree.statement(call)
        if not (isinstance(stmt, ast.Expr) and stmt.value is call and self.tree.alone_on_line(stmt)):
            return []
        scope = self.tree.function(call) or self.tree.module
        simple = isinstance(dest, ast.Name | ast.Attribute) or (
            isinstance(dest, ast.Constant) and isinstance(dest.value, str)
        )
        return [
            InlineAtomic(
                key=self.key(stmt),
                dest=save.dest,
                path_name=None if simple else self._fresh_local(scope, "checkpoint_path"),
                tmp_name=self._fresh_local(scope, "tmp_path"),
                handle_name=self._fresh_local(scope, "checkpoint_file"),
            )
        ]

    # --- barrier placement -----------------------------------------------------------------------------
    def _check_barrier_after(self, save: Save, shown: str) -> None:
        anchors = self._anchors(save.call, frozenset())
        if anchors is not None:
            if all(self._barrier_follows(anchor, save.call) for anchor in anchors):
                return
        elif self._barrier_follows(self._anchor_statement(save.call), save.call):
            return
        edits: list[Edit] = []
        if anchors:
            template, symbols = self._barrier(self.options.barrier_timeout, final=False)
            for anchor in anchors:
                edits.append(Insert(self.key(anchor), True, template, symbols, group=self._group(anchor)))
        self._issue(
            "CKP002",
            save.call,
            f"no barrier after the checkpoint written by `{shown}(...)`: the other ranks run ahead and time "
            "out in the next collective while the main process writes"
            + ("" if edits else " (not rewritten automatically: add a barrier every rank reaches)"),
            edits,
        )

    def _group(self, anchor: ast.stmt) -> tuple[int, ...]:
        """Anchors in one block with no loop between them share one barrier."""
        block, index = self.tree.block_of(anchor)
        loops = sum(1 for stmt in block[:index] if _contains_loop(stmt))
        return (block[0].lineno, block[0].col_offset, loops)

    def _anchor_statement(self, node: ast.AST) -> ast.stmt:
        """The outermost statement around `node` inside its innermost loop body or function body: the
        barrier goes after it, outside every branch (ranks that took different branches still meet)."""
        result = self.tree.statement(node)
        for stmt in self.tree.enclosing_statements(node):
            result = stmt
            parent = self.tree.parent.get(id(stmt))
            if isinstance(parent, LOOPS) or (isinstance(parent, ast.If) and _is_main_block(parent)):
                break
        return result

    def _anchors(self, node: ast.AST, seen: frozenset[int]) -> list[ast.stmt] | None:
        """Statements after which every rank passes once the write at `node` is done; None when no
        such place can be found safely (early `continue`, recursion, unknown callers)."""
        local = self.guards.local_guard(self.tree, node)
        if local is not None and local.exit in {"continue", "break"}:
            return None
        for ancestor in self.tree.ancestors(node):
            if isinstance(ancestor, ast.Lambda):
                return None  # runs whenever the lambda is called: no statement to follow
            if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef):
                break
        escapes = local is not None and local.exit in {"return", "raise"}
        function = self.tree.function(node)
        if function is not None and (
            escapes
            or self.graph.function_guard(function) is not None
            or self.graph.has_guarded_site(function)
        ):
            sites = self.graph.sites[id(function)]
            if id(function) in seen or not sites or not all(isinstance(s, ast.Call) for s in sites):
                return None
            found: list[ast.stmt] = []
            for site in sites:
                sub = self._anchors(site, seen | {id(function)})
                if sub is None:
                    return None
                found.extend(a for a in sub if all(a is not b for b in found))
            return found
        if escapes:
            return None
        anchor = self._anchor_statement(node)
        if _exits_early(anchor) or not self.tree.alone_on_line(anchor):
            return None
        return [anchor]

    def _barrier_follows(self, anchor: ast.stmt, node: ast.AST, depth: int = 0) -> bool:
        start = (node.lineno, node.col_offset)  # type: ignore[attr-defined]
        for child in walk_local(anchor):
            if (
                isinstance(child, ast.Call)
                and (child.lineno, child.col_offset) > start
                and self._is_sync(child)
            ):
                return True
        block, index = self.tree.block_of(anchor)
        for sibling in block[index + 1 :]:
            for child in [sibling, *walk_local(sibling)]:
                if isinstance(child, ast.Call) and self._is_sync(child):
                    return True
        function = self.tree.function(anchor)
        if depth < 2 and function is not None and block is function.body:
            sites = self.graph.sites[id(function)]
            return bool(sites) and all(
                isinstance(site, ast.Call)
                and self._barrier_follows(self._anchor_statement(site), site, depth + 1)
                for site in sites
            )
        return False

    def _is_sync(self, call: ast.Call) -> bool:
        """A barrier every rank reaches (directly or through a module helper), not one under a guard."""
        if self.guards.local_guard(self.tree, call) is not None:
            return False
        if is_barrier_call(call, self.names):
            return True
        return any(
            self.graph.reaches(callee, lambda c: is_barrier_call(c, self.names)) is not None
            for callee in self.graph.targets(call)
        )

    # --- CKP003 / CKP007 -------------------------------------------------------------------------------
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
        if self.runtime:
            if timeout is not None and not numeric:
                return None
            if any(kw.arg not in {"timeout", "wait_all_ranks"} for kw in call.keywords):
                return None
            default = _fmt(self.options.barrier_timeout)
            return CallEdit(
                self.tree.span(call),
                func="{checkpoint_barrier}",
                keep_keywords=frozenset({"timeout"}),
                add_keyword=None if timeout is not None else ("timeout", default),
                symbols=frozenset({"checkpoint_barrier"}),
            )
        if timeout is None:
            value = f"{{datetime}}.timedelta(seconds={_fmt(self.options.barrier_timeout)})"
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

    def _check_barrier_timeout(self, call: ast.Call) -> None:
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
            if isinstance(n, ast.Call) and self.names.resolve(n.func) in catalog.BARRIERS
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
                and (stmt.value in barriers or last_name(stmt.value.func) in _LOG_CALLS)
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

    # --- CKP004 ----------------------------------------------------------------------------------------
    def _check_final_sync(self, has_checkpoints: bool) -> None:
        destroys: list[ast.Call] = []
        runtime_barriers = False
        for node in self.tree.calls:
            resolved = self.names.resolve(node.func)
            if resolved == catalog.DESTROY_PROCESS_GROUP and _destroys_world(node):
                destroys.append(node)
            elif resolved in catalog.RUNTIME_BARRIERS:
                runtime_barriers = True
            elif resolved == catalog.INIT_PROCESS_GROUP:
                self._check_init(node)
        if runtime_barriers:
            for key, call in self._init_missing:
                self._issue(
                    "CKP004",
                    call,
                    "ckptfix.runtime barriers are used but init_sync() does not follow init_process_group()",
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
            self._issue(
                "CKP004",
                call,
                "the process group is destroyed with no final sync: ranks still writing or waiting are torn "
                "down (the last checkpoint may be cut short)",
                [Insert(self.key(stmt), False, template, symbols)] if fixable else [],
            )
        if destroys:
            return
        for function in self._training_functions():
            last = function.body[-1]
            edit = Insert(self.key(last), not isinstance(last, ast.Return), template, symbols)
            self._issue(
                "CKP004",
                function,
                f"training function `{function.name}` ends with no final sync: ranks leave while the main "
                "process may still be writing the last checkpoint",
                [edit] if self.tree.alone_on_line(last) else [],
            )

    def _check_init(self, call: ast.Call) -> None:
        stmt = self.tree.statement(call)
        if not (isinstance(stmt, ast.Expr) and stmt.value is call and self.tree.alone_on_line(stmt)):
            return
        block, index = self.tree.block_of(stmt)
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
        finder = SaveFinder(self.tree, self.names, self.options.extra_save_functions)

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

    def _loop_reaches(self, loop: ast.AST, predicate: object) -> bool:
        for node in walk_local(loop):
            if isinstance(node, ast.Call):
                if predicate(node):  # type: ignore[operator]
                    return True
                if any(self.graph.reaches(c, predicate) is not None for c in self.graph.targets(node)):  # type: ignore[arg-type]
                    return True
        return False

    def _final_sync_present(self, function: FunctionNode) -> bool:
        last_loop = max((i for i, stmt in enumerate(function.body) if _contains_loop(stmt)), default=-1)
        for stmt in function.body[last_loop + 1 :]:
            for node in [stmt, *walk_local(stmt)]:
                if isinstance(node, ast.Call) and self._is_sync(node):
                    return True
        sites = self.graph.sites[id(function)]
        return bool(sites) and all(
            isinstance(site, ast.Call) and self._barrier_follows(self._anchor_statement(site), site)
            for site in sites
        )

    # --- CKP006 ----------------------------------------------------------------------------------------
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
        loop = _loop_of(self.tree, node)
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

    def _check_collective(self, call: ast.Call) -> None:
        name = collective_name(call, self.names, self.module_functions)
        if name is None:
            return
        guard = self.graph.guard(call)
        if guard is None or guard.kind == Kind.SHARD:
            return
        local = self.guards.local_guard(self.tree, call)
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


def _loop_of(tree: Tree, node: ast.AST) -> ast.AST | None:
    for ancestor in tree.ancestors(node):
        if isinstance(ancestor, LOOPS):
            return ancestor
        if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            return None
    return None


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


def _destroys_world(call: ast.Call) -> bool:
    """`destroy_process_group()` / `(None)` ends training; destroying a subgroup does not."""
    group = call.args[0] if call.args else next((kw.value for kw in call.keywords if kw.arg == "group"), None)
    if group is None or (isinstance(group, ast.Constant) and group.value is None):
        return True
    return (dotted(group) or "").endswith("group.WORLD")


def _contains_loop(stmt: ast.stmt) -> bool:
    return isinstance(stmt, LOOPS) or any(isinstance(n, LOOPS) for n in walk_local(stmt))


def _is_main_block(node: ast.If) -> bool:
    test = node.test
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _exits_early(stmt: ast.stmt) -> bool:
    """`stmt` contains a return, or a break/continue that leaves the loop around it."""

    def visit(node: ast.AST, in_loop: bool) -> bool:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                continue
            if isinstance(child, ast.Return):
                return True
            if isinstance(child, ast.Break | ast.Continue) and not in_loop:
                return True
            if visit(child, in_loop or isinstance(child, LOOPS)):
                return True
        return False

    return isinstance(stmt, ast.Return) or visit(stmt, isinstance(stmt, LOOPS))


def _is_broad(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(last_name(t) in _BROAD_EXCEPTIONS for t in types)
