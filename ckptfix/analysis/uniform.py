"""Branch conditions every rank evaluates alike (`if step % save_every == 0:`).

The barrier after a checkpoint must be reached by every rank, so by default it goes after the outermost
branch around the save (DESIGN "The rewrite"). Inside a training loop that means a barrier on every
step, which on NCCL also stalls the GPU pipeline each step. When the branch's test is the same on every
rank, all ranks take the branch together and the barrier can go inside it: once per checkpoint event.

"The same on every rank" is proved, never guessed; anything unproved counts as rank-dependent, which
keeps the old placement (correct, only slower). Proved uniform:
- constants, and arithmetic, comparisons and boolean logic over uniform operands;
- a loop counter: the target of `for i in range(...)` when the start and step are uniform (the stop
  does not matter: at the k-th iteration every rank holds start + k * step), or the index of
  `for i, x in enumerate(...)` with a uniform start;
- a local or module name whose every binding assigns a uniform value at code every rank runs equally
  often: only uniform `if`s and loops that meet the other ranks every iteration (a collective, DDP's
  backward) or count a uniform `range` around it, no `try`, `with` or loop `else`, and nothing before
  it that may leave on a rank-dependent condition (a `global_step += 1` inside `if rank == 0:`, or
  after `if batch is None: continue`, diverges);
- a setting on a configuration object (`args.save_every`, `cfg.train.ckpt_interval`): attributes of
  the conventional names in CONFIG_ROOTS bound to a parameter or to `parser.parse_args()`, unless a
  part of the name suggests it differs per process (`args.local_rank`, `training_args.should_log`) or
  the code changes it (`args.x = ...`, `setattr(args, ...)`, `vars(args)`, `a = args`);
- `int`, `min`, `max`, `abs`, `round`, `bool`, `float` of uniform arguments;
- accelerate's `accelerator.sync_gradients` (gradient accumulation steps alike on every rank).
Module names are never proved where `globals()` or `exec` can rebind them. What is left unchecked: a
function that receives `args` and changes a setting on some ranks only.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from ckptfix.analysis.guards import GuardRecognizer, is_job_wide_test
from ckptfix.analysis.names import dotted, last_name
from ckptfix.analysis.tree import FunctionNode, Tree, exits, walk_local

CONFIG_ROOTS = frozenset(
    {"args", "cfg", "config", "conf", "opt", "opts", "hparams", "flags", "FLAGS", "training_args"}
)
# Parts of a setting's name that suggest a per-process value.
PER_PROCESS_HINTS = (
    *("rank", "local", "gpu", "device", "node", "host", "master", "main", "worker"),
    *("procid", "proc_id", "process_id", "process_index"),
    *("should", "chief", "primary", "leader", "zero", "is_"),
)
PURE_BUILTINS = frozenset({"int", "float", "bool", "min", "max", "abs", "round"})

Scope = FunctionNode | ast.Module
# A binding of a name: the statement (a scope node for bindings inside expressions) and the value it
# assigns: an expression, the counter's own Name for a `for` loop, None for anything unproved
# (parameters, imports, with-targets, unpacking, walrus).
Binding = tuple[ast.stmt | Scope, ast.expr | None]


class RankUniform:
    """Answers "is this test the same on every rank?" for one module."""

    def __init__(self, tree: Tree, guards: GuardRecognizer, syncs: Callable[[ast.AST], bool]) -> None:
        self.tree = tree
        self.guards = guards
        self.syncs = syncs  # the loop meets the other ranks in a collective every iteration
        self._bindings: dict[int, dict[str, list[Binding]]] = {}
        self._names: dict[tuple[int, str], bool] = {}
        self._visiting: set[tuple[int, str]] = set()
        # Names some function declares global or nonlocal: written from elsewhere, never proved. And
        # settings the code itself assigns (`args.should_save = rank == 0`): no longer plain settings.
        self._written_elsewhere: set[str] = set()
        self._assigned_settings: set[str] = set()
        declarations: list[ast.Global | ast.Nonlocal] = [
            *tree.of_type(ast.Global),
            *tree.of_type(ast.Nonlocal),
        ]
        for declared in declarations:
            self._written_elsewhere.update(declared.names)
        assignments: list[ast.Assign | ast.AugAssign | ast.AnnAssign] = [
            *tree.of_type(ast.Assign),
            *tree.of_type(ast.AugAssign),
            *tree.of_type(ast.AnnAssign),
        ]
        for node in assignments:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for part in ast.walk(target):
                    if isinstance(part, ast.Attribute):
                        self._assigned_settings.add(dotted(part) or "")
        # Configuration objects changed other than by `args.x = ...`, or kept under another name
        # (`setattr(args, ...)`, `vars(args)`, `args.__dict__`, `a = args`, `self.config = config`).
        self._mutated_roots: set[str] = set()
        # `globals()[...] = ...`, `exec(...)`: module names change out of sight.
        self._dynamic_globals = False
        for call in tree.calls:
            if isinstance(call.func, ast.Name) and call.func.id in {"setattr", "vars", "delattr"}:
                self._mutated_roots.update(a.id for a in call.args[:1] if isinstance(a, ast.Name))
            elif isinstance(call.func, ast.Name) and call.func.id in {"globals", "exec"}:
                self._dynamic_globals = True
        for attribute in tree.of_type(ast.Attribute):
            if attribute.attr == "__dict__" and isinstance(attribute.value, ast.Name):
                self._mutated_roots.add(attribute.value.id)
        for node in assignments:
            if isinstance(node.value, ast.Name) and node.value.id in CONFIG_ROOTS:
                self._mutated_roots.add(node.value.id)

    def test(self, test: ast.expr) -> bool:
        """The branch on `test` is taken by every rank or by none."""
        if self.guards.classify(test) is not None or self.guards.classify_negated(test) is not None:
            return False
        if is_job_wide_test(test):
            return True  # `dist.is_initialized()`, `world_size > 1`, `ddp`: one answer for the whole job
        return self._expr(test, self._scope(test))

    def _reached_alike(self, stmt: ast.stmt) -> bool:
        """Every rank runs `stmt` equally often (as far as its own function goes): the only
        statements around it are uniform `if`s and loops whose iterations meet the other ranks in a
        collective (or count alike), and nothing before it in those blocks leaves early on a
        condition ranks may disagree on. A `try`, a `with` (it may suppress an exception on one
        rank) or a loop's `else` (it depends on `break`) proves nothing."""
        child: ast.AST = stmt
        for owner in self.tree.ancestors(stmt):
            if isinstance(child, ast.stmt) and not self._no_divergent_exit_before(child):
                return False
            if isinstance(owner, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                return True
            if isinstance(owner, ast.If):
                if child is owner.test or not self.test(owner.test):
                    return False
            elif isinstance(owner, ast.For | ast.AsyncFor | ast.While):
                if not any(item is child for item in owner.body) or not self._counts_alike(owner):
                    return False
            else:
                return False
            child = owner
        return True

    def _counts_alike(self, loop: ast.For | ast.AsyncFor | ast.While) -> bool:
        """Every rank runs the loop's body equally often: it syncs every iteration, or it counts a
        `range` of uniform bounds, or it tests a uniform condition."""
        if self.syncs(loop):
            return True
        if isinstance(loop, ast.While):
            return self.test(loop.test)
        call = loop.iter
        scope = self._scope(loop)
        return (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "range"
            and not call.keywords
            and not self._shadowed("range", scope)
            and all(self._expr(a, scope) for a in call.args)
        )

    def _no_divergent_exit_before(self, stmt: ast.stmt) -> bool:
        """No statement before `stmt` in its block may leave it (`break`, `continue`, `return`,
        `raise`) on a condition ranks may disagree on."""
        block, index = self.tree.block_of(stmt)
        return all(self._exits_alike(previous) for previous in block[: max(index, 0)])

    def _exits_alike(self, stmt: ast.stmt, failures: bool = True) -> bool:
        """No exit from `stmt` depends on a condition ranks may disagree on. `failures=False`: a
        `raise` does not count (a rank that raises fails the job; the others' barriers time out)."""
        for node in exits(stmt):
            if not failures and isinstance(node, ast.Raise):
                continue
            current: ast.AST = node
            while current is not stmt:
                owner = self.tree.parent.get(id(current))
                if owner is None:
                    break
                if isinstance(owner, ast.If):
                    if not self.test(owner.test):
                        return False
                elif not isinstance(owner, ast.For | ast.AsyncFor | ast.While):
                    return False  # an exit inside a try, a with, a handler: not proved alike
                current = owner
        return True

    # --- expressions -----------------------------------------------------------------------------------
    def _expr(self, expr: ast.expr, scope: Scope) -> bool:
        if isinstance(expr, ast.Constant):
            return True
        if isinstance(expr, ast.Name):
            return self._name(expr.id, scope)
        if isinstance(expr, ast.Attribute):
            return _accelerate_step_state(expr) or (
                _is_setting(expr)
                and dotted(expr) not in self._assigned_settings
                and self._root_is_settings(expr, scope)
            )
        if isinstance(expr, ast.BinOp):
            return self._expr(expr.left, scope) and self._expr(expr.right, scope)
        if isinstance(expr, ast.UnaryOp):
            return self._expr(expr.operand, scope)
        if isinstance(expr, ast.BoolOp):
            return all(self._expr(value, scope) for value in expr.values)
        if isinstance(expr, ast.Compare):
            return self._expr(expr.left, scope) and all(self._expr(c, scope) for c in expr.comparators)
        if isinstance(expr, ast.Call):
            return (
                isinstance(expr.func, ast.Name)
                and expr.func.id in PURE_BUILTINS
                and not self._shadowed(expr.func.id, scope)
                and all(self._expr(a, scope) for a in expr.args)
                and all(k.arg is not None and self._expr(k.value, scope) for k in expr.keywords)
            )
        return False

    def _name(self, name: str, scope: Scope) -> bool:
        if name == "__name__":
            return True  # `if __name__ == "__main__":` is taken alike by every rank
        if name in self._written_elsewhere:
            return False
        bindings = self._bindings_of(scope).get(name)
        if isinstance(scope, ast.Module) and self._dynamic_globals:
            return False
        if bindings is None:
            if isinstance(scope, ast.Module):
                return False  # never bound here: a builtin, a star import, a name from elsewhere
            return self._name(name, self._outer_scope(scope))
        key = (id(scope), name)
        known = self._names.get(key)
        if known is not None:
            return known
        if key in self._visiting:
            return True  # `step = step + 1`: uniform if its other bindings are
        self._visiting.add(key)
        try:
            result = all(self._binding(stmt, value, scope) for stmt, value in bindings)
        finally:
            self._visiting.discard(key)
        self._names[key] = result
        return result

    def _binding(self, stmt: ast.stmt | Scope, value: ast.expr | None, scope: Scope) -> bool:
        if value is None or not isinstance(stmt, ast.stmt) or not self._reached_alike(stmt):
            return False
        if isinstance(stmt, ast.For | ast.AsyncFor):
            return self._counter(stmt, value, scope)
        return self._expr(value, scope)

    def _counter(self, loop: ast.For | ast.AsyncFor, counter: ast.expr, scope: Scope) -> bool:
        """`for i in range(start, stop, step)` / `for i, x in enumerate(it, start)`: at the k-th
        iteration i is the same on every rank when start and step are."""
        call = loop.iter
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            return False
        if self._shadowed(call.func.id, scope) or any(k.arg != "start" for k in call.keywords):
            return False
        args = call.args
        if call.func.id == "range" and counter is loop.target and 1 <= len(args) <= 3 and not call.keywords:
            fixed = args[2:] + (args[:1] if len(args) >= 2 else [])
            return all(self._expr(a, scope) for a in fixed)
        if call.func.id == "enumerate" and isinstance(loop.target, ast.Tuple) and len(args) in {1, 2}:
            return all(self._expr(a, scope) for a in [*args[1:], *(k.value for k in call.keywords)])
        return False

    def _root_is_settings(self, expr: ast.Attribute, scope: Scope) -> bool:
        """The chain's root (`args`) is a parameter or parsed settings, the same object on every rank
        and never changed or stored elsewhere (`cfg = configs[rank]` is not)."""
        root: ast.expr = expr
        while isinstance(root, ast.Attribute):
            root = root.value
        if not isinstance(root, ast.Name) or root.id in self._mutated_roots:
            return False
        while True:
            bindings = self._bindings_of(scope).get(root.id)
            if bindings is not None:
                return all(_settings_binding(binding, value) for binding, value in bindings)
            if isinstance(scope, ast.Module):
                return False
            scope = self._outer_scope(scope)

    # --- scopes ----------------------------------------------------------------------------------------
    def _scope(self, node: ast.AST) -> Scope:
        function = self.tree.function(node)
        return function if function is not None else self.tree.module

    def _outer_scope(self, function: FunctionNode) -> Scope:
        return self._scope(function)

    def _shadowed(self, name: str, scope: Scope) -> bool:
        """`name` is bound in `scope`, an enclosing function or the module: not the builtin."""
        while not isinstance(scope, ast.Module):
            if name in self._bindings_of(scope):
                return True
            scope = self._outer_scope(scope)
        return name in self._bindings_of(scope)

    def _bindings_of(self, scope: Scope) -> dict[str, list[Binding]]:
        found = self._bindings.get(id(scope))
        if found is None:
            found = self._bindings[id(scope)] = _collect_bindings(scope)
        return found


def _collect_bindings(scope: Scope) -> dict[str, list[Binding]]:
    """Every binding of every name in `scope` (not in nested functions or classes)."""
    bindings: dict[str, list[Binding]] = {}

    def bind(name: str, stmt: ast.stmt | Scope, value: ast.expr | None) -> None:
        bindings.setdefault(name, []).append((stmt, value))

    def bind_target(target: ast.expr, stmt: ast.stmt | Scope, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            bind(target.id, stmt, value)
        elif isinstance(target, ast.Starred):
            bind_target(target.value, stmt, None)
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                bind_target(element, stmt, None)  # unpacking: unproved

    if not isinstance(scope, ast.Module):
        for arg in ast.walk(scope.args):
            if isinstance(arg, ast.arg):
                bind(arg.arg, scope, None)
    for node in walk_local(scope):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                bind_target(target, node, node.value)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign) and isinstance(node.target, ast.Name):
            value = node.value
            if isinstance(node, ast.AugAssign):
                value = ast.BinOp(left=node.target, op=node.op, right=node.value)
            if value is not None:
                bind(node.target.id, node, value)
        elif isinstance(node, ast.For | ast.AsyncFor):
            # The counter is bound to the loop itself (judged by RankUniform._counter).
            target = node.target
            elements = target.elts if isinstance(target, ast.Tuple) else [target]
            if elements and isinstance(elements[0], ast.Name):
                bind(elements[0].id, node, elements[0])
                elements = elements[1:]
            for element in elements:
                bind_target(element, node, None)
        elif isinstance(node, ast.NamedExpr):
            bind(node.target.id, scope, None)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bind(node.name, node, None)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bind((alias.asname or alias.name).split(".")[0], node, None)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bind(node.name, scope, None)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            bind_target(node.optional_vars, scope, None)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            bind(node.name, scope, None)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                bind_target(target, node, None)
    return bindings


def _is_setting(expr: ast.Attribute) -> bool:
    """`args.save_every`: an attribute chain on a configuration object, none of whose parts suggests a
    per-process value."""
    parts: list[str] = []
    current: ast.expr = expr
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name) or current.id not in CONFIG_ROOTS:
        return False
    return not any(hint in part.lower() for part in parts for hint in PER_PROCESS_HINTS)


def _settings_binding(binding: ast.AST, value: ast.expr | None) -> bool:
    """A function parameter (bound to the function itself, no value), or `parser.parse_args()`."""
    if value is None:
        return isinstance(binding, ast.FunctionDef | ast.AsyncFunctionDef)
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr in {"parse_args", "parse_args_into_dataclasses"}
    )


def _accelerate_step_state(expr: ast.Attribute) -> bool:
    """`accelerator.sync_gradients`: accelerate's gradient-accumulation state, which every rank steps
    alike (it counts micro-batches, and `even_batches` gives every rank as many)."""
    return expr.attr == "sync_gradients" and "accelerator" in (last_name(expr.value) or "").lower()
