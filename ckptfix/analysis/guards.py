"""Which expressions mean "this is the main process", and is a given node only reached there?

Recognises every idiom of DESIGN.md "Main-process idioms": rank comparisons however the rank is
obtained, predicates (`is_main_process()`, `accelerator.is_main_process`, `trainer.is_global_zero`, ...),
`and` clauses, `not dist.is_initialized() or ...`, ternaries, short-circuit `and`, early exits
(`if rank != 0: return`) and decorators (`@rank_zero_only`). Guards come in three kinds: GLOBAL (one
writer), LOCAL (one writer per node: reported, never accepted silently) and SHARD (one writer per
model-parallel shard: deliberate, left alone).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from enum import IntEnum

from ckptfix.analysis import catalog
from ckptfix.analysis.names import Names, dotted, last_name
from ckptfix.analysis.tree import Tree
from ckptfix.project.view import EMPTY, ProjectView


class Kind(IntEnum):
    """Ordered so that max() picks the guard that makes a write safest."""

    LOCAL = 1
    SHARD = 2
    GLOBAL = 3


@dataclass(frozen=True)
class Guard:
    """Why a node only runs on the main process: the guarding node, and the exit statement when the
    guard is an early `return`/`continue`/`break`/`raise` (the other ranks leave, so no barrier may go
    after the guarded code in that scope)."""

    kind: Kind
    node: ast.AST
    exit: str | None = None
    # "train.py:16": the guard is around the calls in another file of the project (node is then the
    # guarded function itself).
    where: str | None = None


class GuardRecognizer:
    """Classifies expressions; `extra` holds user predicates (Options.extra_main_predicates)."""

    def __init__(
        self, names: Names, extra_predicates: tuple[str, ...] = (), project: ProjectView = EMPTY
    ) -> None:
        self.names = names
        self.extra = {name.rsplit(".", 1)[-1] for name in extra_predicates}
        # Predicates, flags and decorators another file of the project defines (`comm.is_chief()`,
        # `cfg.IS_MAIN`, `@dist_utils.main_only`), by the dotted name they resolve to here.
        self.project = project
        # Objects that exist on the main process only (`learn_main_only_objects`): `x is not None`
        # and a truthy `x` test for them are guards.
        self.main_only: dict[str, Kind] = {}
        # Flags set on the main process only (`learn_main_flags`): a truthy `self.save_to_disk` test.
        self.main_flags: dict[str, Kind] = {}
        # Predicate-named parameters with a constant default (`learn_mode_parameters`): modes.
        self.modes: set[str] = set()

    def learn_main_only_objects(self, tree: Tree) -> None:
        """Names (or `self.x` attributes) built only on the main process and None elsewhere:
        `saver = Saver(p) if rank == 0 else None`, or `saver = None` and `if rank == 0: saver = Saver(p)`.
        Every other assignment of the name in the module must be None (DESIGN "Traps")."""
        assigns = tree.of_type(ast.Assign)
        # A ternary with a None branch says "None elsewhere" itself; only such names are candidates.
        candidates = {
            name
            for node in assigns
            if _is_const(node.value, None) or isinstance(node.value, ast.IfExp)
            for target in node.targets
            if (name := dotted(target)) is not None
        }
        if not candidates:
            return
        # A target spells its candidate's last identifier: a set lookup before spelling it out.
        last_names = {name.rsplit(".", 1)[-1] for name in candidates}
        kinds: dict[str, list[Kind | None]] = {}
        for node in assigns:
            if _is_const(node.value, None):
                continue
            for target in node.targets:
                if last_name(target) in last_names and (name := dotted(target)) in candidates:
                    kinds.setdefault(name, []).append(self._built_on_main(tree, node))
        for name, found in kinds.items():
            known = [k for k in found if k is not None and k != Kind.SHARD]
            if len(known) == len(found):
                self.main_only[name] = min(known)

    def learn_main_flags(self, tree: Tree) -> None:
        """Attributes a constructor stores from an argument that every construction in the module
        passes a main-process test for: with `self.save_to_disk = save_to_disk` in `Saver.__init__`
        and only `Saver(save_to_disk=dist.get_rank() == 0)` calls, `if self.save_to_disk:` is a guard
        (DESIGN "Traps": a constructor flag). An attribute assigned anywhere else, in any class, or a
        construction that passes something else (or nothing, or `*args`) proves nothing."""
        classes = tree.of_type(ast.ClassDef)
        if not classes:
            return
        stores: dict[str, int] = {}
        assignments: list[ast.Assign | ast.AugAssign | ast.AnnAssign] = [
            *tree.of_type(ast.Assign),
            *tree.of_type(ast.AugAssign),
            *tree.of_type(ast.AnnAssign),
        ]
        for node in assignments:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Attribute) and (name := dotted(target)) is not None:
                    stores[name] = stores.get(name, 0) + 1
        constructions: dict[str, list[ast.Call]] = {}
        for call in tree.calls:
            if isinstance(call.func, ast.Name):
                constructions.setdefault(call.func.id, []).append(call)
        for cls in classes:
            for attribute, parameter, position in _constructor_flags(cls):
                name = f"self.{attribute}"
                calls = constructions.get(cls.name, [])
                if stores.get(name) != 1 or not calls:
                    continue
                kinds = [self._flag_kind(call, parameter, position) for call in calls]
                known = [k for k in kinds if k is not None and k != Kind.SHARD]
                if len(known) == len(kinds):
                    self.main_flags[name] = min(known)

    def learn_guard_names(self, tree: Tree) -> None:
        """Names and attributes bound only to a main-process test (`master = dist.get_rank() == 0`,
        `args.save_logs = args.logs and is_master(args)`; every binding of the name in the module is
        such an assignment): `if master:` is a guard, not a second one to add (DESIGN: never
        double-guard)."""
        values: dict[str, list[ast.expr]] = {}
        for node in tree.of_type(ast.Assign):
            target = node.targets[0]
            name = dotted(target) if isinstance(target, ast.Name | ast.Attribute) else None
            if len(node.targets) == 1 and name is not None:
                values.setdefault(name, []).append(node.value)
        if not values:
            return
        stores: dict[str, int] = {}
        bound: list[ast.Name | ast.Attribute] = [*tree.of_type(ast.Name), *tree.of_type(ast.Attribute)]
        for used in bound:
            if isinstance(used.ctx, ast.Store | ast.Del) and (name := dotted(used)) is not None:
                stores[name] = stores.get(name, 0) + 1
        parameters = {arg.arg for arg in tree.of_type(ast.arg)}
        for name, assigned in values.items():
            if name in parameters or stores.get(name) != len(assigned) or name in self.main_flags:
                continue
            kinds = [self.classify(value) for value in assigned]
            known = [k for k in kinds if k is not None and k != Kind.SHARD]
            if len(known) == len(kinds):
                self.main_flags[name] = min(known)

    def _flag_kind(self, call: ast.Call, parameter: str, position: int | None) -> Kind | None:
        """The kind of main-process test a construction passes for the flag's parameter."""
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            return None
        passed = [k.value for k in call.keywords if k.arg == parameter]
        if not passed and position is not None and position < len(call.args):
            passed = [call.args[position]]
        return self.classify(passed[0]) if passed else None

    def _built_on_main(self, tree: Tree, node: ast.Assign) -> Kind | None:
        """The kind of main-process test under which this assignment builds its object, if any."""
        value = node.value
        if isinstance(value, ast.IfExp):
            if _is_const(value.orelse, None):
                return self.classify(value.test)
            if _is_const(value.body, None):
                return self.classify_negated(value.test)
            return None
        child: ast.AST = node
        for ancestor in tree.ancestors(node):
            if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                return None
            if isinstance(ancestor, ast.If) and _contains(ancestor.body, child):
                kind = self.classify(ancestor.test)
                if kind is not None:
                    return kind
            child = ancestor
        return None

    # --- rank expressions ------------------------------------------------------------------------------
    def rank_kind(self, expr: ast.expr) -> Kind | None:
        """Kind of rank an expression evaluates to (`dist.get_rank()`, `args.local_rank`, env RANK)."""
        if isinstance(expr, ast.Call):
            name = last_name(expr.func)
            if name in {"int", "str"} and expr.args:
                return self.rank_kind(expr.args[0])
            if name in {"get", "getenv"} and expr.args:
                return _env_kind(expr.args[0])
            if name in catalog.LOCAL_RANK_CALLS:
                return Kind.LOCAL
            if _group_rank(expr):
                return Kind.SHARD  # a rank within a group: one writer per group
            return _identifier_kind(name) if name else None
        if isinstance(expr, ast.Subscript):
            return _env_kind(expr.slice)
        name = last_name(expr)
        return _identifier_kind(name) if name else None

    def _rank_kind_checked(self, expr: ast.expr) -> Kind | None:
        """rank_kind, except for predicates that merely mention a rank (`is_rank_zero`)."""
        return None if self.predicate_kind(expr) is not None else self.rank_kind(expr)

    def learn_mode_parameters(self, tree: Tree) -> None:
        """Parameters named like a predicate but defaulting to a constant (`def load(path, rank0=False)`):
        a mode the callers switch, on every rank alike, not a rank test. Their name is not a guard in
        the module."""
        for arguments in tree.of_type(ast.arguments):
            positional = [*arguments.posonlyargs, *arguments.args]
            with_default = positional[len(positional) - len(arguments.defaults) :]
            keyword_only = zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
            defaults = [
                *zip(with_default, arguments.defaults, strict=True),
                *((a, d) for a, d in keyword_only if d is not None),
            ]
            for arg, default in defaults:
                if isinstance(default, ast.Constant) and isinstance(default.value, bool):
                    self.modes.add(arg.arg)

    def predicate_kind(self, expr: ast.expr) -> Kind | None:
        """Kind of a truthy main-process predicate (`master_process`, `is_main_process()`)."""
        name = last_name(expr)
        if name is None:
            return None
        if isinstance(expr, ast.Name) and expr.id in self.modes:
            return None
        # An imported alias (`from ckptfix.runtime import is_main_process as main_only`) counts by
        # the name it was imported under.
        resolved = self.names.resolve(expr.func if isinstance(expr, ast.Call) else expr)
        if resolved is not None:
            fact = self.project.fact(resolved)
            if fact is not None and fact.predicate:
                return Kind(fact.predicate)
            name = resolved.rsplit(".", 1)[-1]
        if name in catalog.LOCAL_MAIN_PREDICATES:
            return Kind.LOCAL
        if name in catalog.MAIN_PREDICATES or name in self.extra:
            return Kind.GLOBAL
        if name in catalog.OTHER_WRITER_PREDICATES:
            return Kind.SHARD  # one writer that is not rank 0 (the last rank): deliberate
        return None

    def other_writer(self, test: ast.expr) -> bool:
        """A test that holds on one rank other than 0 (`is_last_rank()`, `rank == world_size - 1`,
        `rank == 3`): the code under it has its own single writer, which rank 0 never is."""
        if isinstance(test, ast.Call | ast.Name | ast.Attribute):
            return (last_name(test) or "") in catalog.OTHER_WRITER_PREDICATES
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
            return False
        for rank, other in ((test.left, test.comparators[0]), (test.comparators[0], test.left)):
            kind = self._rank_kind_checked(rank)
            if kind is None:
                continue
            # `rank == self.logger_rank`, `get_rank(pg) == self.logger_ranks[0]`: one designated
            # writer, which may not be rank 0 (the last pipeline stage); a rank-0 guard nested in it
            # could leave nothing written.
            if isinstance(other, ast.Name | ast.Attribute | ast.Subscript | ast.Call):
                return True
            if kind != Kind.GLOBAL:
                continue
            last_of_world = (
                isinstance(other, ast.BinOp)
                and isinstance(other.op, ast.Sub)
                and _world_size(other.left)
                and _is_const(other.right, 1)
            )
            constant = isinstance(other, ast.Constant) and type(other.value) is int and other.value > 0
            if last_of_world or constant:
                return True
        return False

    # --- conditions ------------------------------------------------------------------------------------
    def classify(self, test: ast.expr) -> Kind | None:
        """Kind of guard when `test` is true only on the main process, else None."""
        if isinstance(test, ast.BoolOp):
            kinds = [self.classify(value) for value in test.values]
            if isinstance(test.op, ast.And):
                found = [k for k in kinds if k is not None]
                return max(found) if found else None
            # `or`: every alternative must be a guard or "not distributed at all".
            guards = [k for k in kinds if k is not None]
            if guards and all(
                k is not None or _not_distributed(v) for k, v in zip(kinds, test.values, strict=True)
            ):
                return min(guards)
            return None
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            operand = test.operand
            return self._rank_kind_checked(operand) or self.classify_negated(operand)
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            if self.other_writer(test):
                return Kind.SHARD
            return self._compare(test.left, test.ops[0], test.comparators[0], negated=False)
        if self.main_only and (name := dotted(test)) in self.main_only:
            return self.main_only[name]  # `if saver:`
        if self.main_flags and (name := dotted(test)) in self.main_flags:
            return self.main_flags[name]  # `if self.save_to_disk:`
        return self.predicate_kind(test)

    def classify_negated(self, test: ast.expr) -> Kind | None:
        """Kind of guard when `test` is true on every process except the main one (`rank != 0`)."""
        if isinstance(test, ast.BoolOp):
            kinds = [self.classify_negated(value) for value in test.values]
            found = [k for k in kinds if k is not None]
            if isinstance(test.op, ast.Or):
                return max(found) if found else None
            if found and all(
                k is not None or _distributed(v) for k, v in zip(kinds, test.values, strict=True)
            ):
                return min(found)
            return None
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return self.classify(test.operand)
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            return self._compare(test.left, test.ops[0], test.comparators[0], negated=True)
        return None

    def _compare(self, left: ast.expr, op: ast.cmpop, right: ast.expr, negated: bool) -> Kind | None:
        if isinstance(op, ast.Is | ast.IsNot) and _is_const(right, None):
            # `saver is not None` is true on the main process only; `saver is None` everywhere else.
            kind = self.main_only.get(dotted(left) or "")
            return kind if kind is not None and isinstance(op, ast.IsNot) != negated else None
        if _is_zero(left) and isinstance(op, ast.Eq | ast.NotEq):
            left, right = right, left
        if isinstance(op, ast.In | ast.NotIn):
            values = _constants(right)
            if values is None or 0 not in values or not values <= {0, -1}:
                return None
            zero_test = isinstance(op, ast.In)
        elif _is_zero(right) and isinstance(op, ast.Eq | ast.LtE):
            zero_test = True
        elif _is_zero(right) and isinstance(op, ast.NotEq | ast.Gt):
            zero_test = False
        elif _is_const(right, 1) and isinstance(op, ast.Lt):
            zero_test = True
        elif _is_const(right, 1) and isinstance(op, ast.GtE):
            zero_test = False
        elif isinstance(op, ast.Is | ast.Eq) and _is_const(right, True):
            return self.predicate_kind(left) if not negated else None
        else:
            return None
        if zero_test == negated:
            return None
        return self._rank_kind_checked(left)

    # --- where a node runs -----------------------------------------------------------------------------
    def decorator_kind(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> Kind | None:
        for decorator in function.decorator_list:
            name = last_name(decorator)
            called = decorator.func if isinstance(decorator, ast.Call) else decorator
            fact = self.project.fact(self.names.resolve(called)) if self.project else None
            if fact is not None and fact.decorator:
                return Kind(fact.decorator)
            if name in catalog.MAIN_ONLY_DECORATORS:
                return Kind.GLOBAL
            if name in catalog.LOCAL_ONLY_DECORATORS:
                return Kind.LOCAL
        return None

    def local_guard(self, tree: Tree, node: ast.AST, stop: ast.AST | None = None) -> Guard | None:
        """The strongest guard between `node` and its function (or module) boundary, or `stop`."""
        found: list[Guard] = []
        child: ast.AST = node
        for ancestor in tree.ancestors(node):
            if ancestor is stop or isinstance(
                ancestor, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
            ):
                break
            kind: Kind | None = None
            if isinstance(ancestor, ast.If | ast.IfExp):
                if _contains(ancestor.body, child):
                    kind = self.classify(ancestor.test)
                elif _contains(ancestor.orelse, child):
                    kind = self.classify_negated(ancestor.test)
            elif isinstance(ancestor, ast.BoolOp) and child in ancestor.values:
                before = ancestor.values[: ancestor.values.index(child)]
                classify = self.classify if isinstance(ancestor.op, ast.And) else self.classify_negated
                kinds = [k for k in map(classify, before) if k is not None]
                kind = max(kinds) if kinds else None
            if kind is not None:
                found.append(Guard(kind, ancestor))
            if isinstance(child, ast.stmt):
                exit_guard = self._early_exit(tree, child)
                if exit_guard is not None:
                    found.append(exit_guard)
            child = ancestor
        if isinstance(child, ast.stmt):
            exit_guard = self._early_exit(tree, child)
            if exit_guard is not None:
                found.append(exit_guard)
        return max(found, key=lambda guard: guard.kind) if found else None

    def _early_exit(self, tree: Tree, stmt: ast.stmt) -> Guard | None:
        """`if rank != 0: return` (or continue/break/raise/sys.exit) before `stmt` in its block."""
        block, index = tree.block_of(stmt)
        for previous in block[:index]:
            if not isinstance(previous, ast.If) or previous.orelse or not previous.body:
                continue
            exit_kind = _exit_kind(previous.body[-1])
            if exit_kind is None:
                continue
            kind = self.classify_negated(previous.test)
            if kind is not None:
                return Guard(kind, previous, exit_kind)
        return None


def _constructor_flags(cls: ast.ClassDef) -> list[tuple[str, str, int | None]]:
    """(attribute, parameter, position among the call's arguments) for each `self.x = parameter`
    statement of the class's `__init__` body (position None for keyword-only parameters)."""
    init = next(
        (f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"),
        None,
    )
    if init is None:
        return []
    positional = [a.arg for a in (*init.args.posonlyargs, *init.args.args)][1:]  # less `self`
    keyword_only = {a.arg for a in init.args.kwonlyargs}
    flags: list[tuple[str, str, int | None]] = []
    for stmt in init.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(target := stmt.targets[0], ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
            and isinstance(stmt.value, ast.Name)
        ):
            parameter = stmt.value.id
            if parameter in positional:
                flags.append((target.attr, parameter, positional.index(parameter)))
            elif parameter in keyword_only:
                flags.append((target.attr, parameter, None))
    return flags


def _contains(block: ast.AST | list[ast.stmt], node: ast.AST) -> bool:
    if isinstance(block, list):
        return any(item is node for item in block)
    return block is node


def _exit_kind(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, ast.Return):
        return "return"
    if isinstance(stmt, ast.Continue):
        return "continue"
    if isinstance(stmt, ast.Break):
        return "break"
    if isinstance(stmt, ast.Raise):
        return "raise"
    if (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and dotted(stmt.value.func) in {"sys.exit", "exit", "quit", "os._exit"}
    ):
        return "raise"
    return None


def _identifier_kind(name: str) -> Kind | None:
    lowered = name.lower()
    if lowered.endswith("ranks"):
        return None  # a count or list of ranks (`num_ranks`, `failed_ranks == 0`), not a rank
    if lowered.lstrip("_").startswith(("is_", "has_", "should_", "can_", "same_")):
        return None  # a yes/no question about ranks (`_is_same_rank(...)`), not a rank number
    if any(hint in lowered for hint in catalog.SHARD_RANK_HINTS) or "data_parallel" in lowered:
        return Kind.SHARD
    if lowered in catalog.LOCAL_RANK_NAMES or any(hint in lowered for hint in catalog.LOCAL_RANK_HINTS):
        return Kind.LOCAL
    if "rank" in lowered or lowered in catalog.GLOBAL_RANK_NAMES:
        return Kind.GLOBAL
    return None


def _env_kind(key: ast.expr) -> Kind | None:
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        if key.value in catalog.GLOBAL_RANK_ENV:
            return Kind.GLOBAL
        if key.value in catalog.LOCAL_RANK_ENV:
            return Kind.LOCAL
    return None


def _is_const(expr: ast.expr, value: object) -> bool:
    return isinstance(expr, ast.Constant) and type(expr.value) is type(value) and expr.value == value


def _is_zero(expr: ast.expr) -> bool:
    return _is_const(expr, 0) or (isinstance(expr, ast.Constant) and expr.value == "0")


def _constants(expr: ast.expr) -> set[object] | None:
    if not isinstance(expr, ast.Tuple | ast.List | ast.Set):
        return None
    values: set[object] = set()
    for element in expr.elts:
        if isinstance(element, ast.Constant):
            values.add(element.value)
        elif isinstance(element, ast.UnaryOp) and isinstance(element.op, ast.USub):
            if not isinstance(element.operand, ast.Constant):
                return None
            values.add(-element.operand.value)  # type: ignore[operator]
        else:
            return None
    return values


def _mentions_distribution(expr: ast.expr) -> bool:
    name = (last_name(expr) or "").lower()
    return name in {
        "is_initialized",
        "is_available",
        "is_dist_avail_and_initialized",
        "ddp",
        "use_ddp",
    } or any(hint in name for hint in ("distributed", "is_dist", "multi_gpu", "multiprocessing"))


def _world_size(expr: ast.expr) -> bool:
    name = (last_name(expr) or "").lower()
    return "world_size" in name or name in {"num_processes", "num_replicas"}


def _group_rank(call: ast.Call) -> bool:
    """`self.dp_group.rank()`, `dist.get_rank(group)`, `dist.get_rank(group=g)`: the rank within a
    process group (a data-parallel or model-parallel one), not the global rank."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "rank":
        return True  # a ProcessGroup's rank() (the default group's is dist.get_rank())
    if last_name(func) == "get_rank":
        return bool(call.args) or any(k.arg == "group" for k in call.keywords)
    return False


def _not_distributed(expr: ast.expr) -> bool:
    """True only when there is a single process (`not dist.is_initialized()`, `world_size == 1`, the
    `local_rank == -1` of argparse-style scripts launched without a launcher)."""
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not):
        return _mentions_distribution(expr.operand)
    if (
        isinstance(expr, ast.Compare)
        and len(expr.ops) == 1
        and isinstance(expr.ops[0], ast.Eq)
        and isinstance(right := expr.comparators[0], ast.UnaryOp)
        and isinstance(right.op, ast.USub)
        and _is_const(right.operand, 1)
        and "local_rank" in (last_name(expr.left) or "").lower()
    ):
        return True
    if isinstance(expr, ast.Compare) and len(expr.ops) == 1 and _world_size(expr.left):
        op, right = expr.ops[0], expr.comparators[0]
        return (isinstance(op, ast.Eq | ast.LtE) and _is_const(right, 1)) or (
            isinstance(op, ast.Lt) and _is_const(right, 2)
        )
    return False


def _distributed(expr: ast.expr) -> bool:
    """True only when there are several processes (`dist.is_initialized()`, `world_size > 1`)."""
    if isinstance(expr, ast.Compare) and len(expr.ops) == 1 and _world_size(expr.left):
        op, right = expr.ops[0], expr.comparators[0]
        return (isinstance(op, ast.Gt | ast.NotEq) and _is_const(right, 1)) or (
            isinstance(op, ast.GtE) and _is_const(right, 2)
        )
    return _mentions_distribution(expr)


def is_distributed_test(expr: ast.expr) -> bool:
    """True in every run of several processes, whatever the launcher: `dist.is_initialized()`,
    `is_dist_avail_and_initialized()`, `world_size > 1`. A setting (`args.distributed`) is not: what
    it holds depends on how the job was started."""
    if isinstance(expr, ast.Call):
        name = (last_name(expr.func) or "").lower()
        return name in {"is_initialized", "is_available", "is_distributed"} or (
            "dist" in name and ("init" in name or "avail" in name)
        )
    return _distributed(expr) and isinstance(expr, ast.Compare)


def is_single_process_test(expr: ast.expr) -> bool:
    """True only when there is one process (`world_size == 1`, `get_world_size() < 2`)."""
    return isinstance(expr, ast.Compare) and _not_distributed(expr)


def is_job_wide_test(expr: ast.expr) -> bool:
    """A test of how the whole job runs (`ddp`, `args.distributed`, `dist.is_initialized()`,
    `world_size > 1`): whatever its value, every rank of one job gets the same."""
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not):
        return is_job_wide_test(expr.operand)
    return _distributed(expr) or _not_distributed(expr)
