"""Where a write's path comes from, when it comes from the callers: guarding a write narrows it to rank
0, which is right only if every rank writes the same path.

A path built in the function from settings, constants and loop counters is taken as shared. A path
that arrives as a parameter (`def save(state, path)`, a stream handed down) is as shared as what the
callers pass: a caller that passes a rank-valued name (`f"shard_{rank}.pt"`, `rankstr()`) makes it a
per-rank write (never guarded); callers that cannot all be seen (none in the module, the function
passed around as a value, a framework's hook) make the guard an assumption: an unsafe fix.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ckptfix.analysis.rules.context import RuleContext
from ckptfix.analysis.saves import Save, argument, is_rank_name
from ckptfix.analysis.tree import FunctionNode, walk_local

_MAX_DEPTH = 3


@dataclass(frozen=True)
class PathSource:
    """`per_rank`: a caller passes a per-rank path (line of that call); `unseen`: why the path's
    callers cannot all be seen (the guard is then an unsafe fix); `handle`: a caller passes an open
    file, not a path (there is no path to write atomically)."""

    per_rank: int | None = None
    unseen: str | None = None
    handle: bool = False


class Destinations(RuleContext):
    _bindings_cache: dict[int, dict[str, list[ast.expr]]]

    def _bindings_of(self, function: FunctionNode | ast.Module) -> dict[str, list[ast.expr]]:
        """`_bindings(function)`, one walk per function."""
        if not hasattr(self, "_bindings_cache"):
            self._bindings_cache = {}
        found = self._bindings_cache.get(id(function))
        if found is None:
            found = self._bindings_cache[id(function)] = _bindings(function)
        return found

    def _assigned_values(self, function: FunctionNode | ast.Module, name: str) -> list[ast.expr]:
        return self._bindings_of(function).get(name, [])

    def _path_source(self, save: Save) -> PathSource:
        dest = argument(save.call, save.dest)
        if save.handle_with is not None:  # `with open(p, "wb") as f: torch.save(x, f)`: the path is p's
            opened = next(
                (i.context_expr for i in save.handle_with.items if isinstance(i.context_expr, ast.Call)), None
            )
            if opened is not None and _last(opened) in _IN_MEMORY and dest is not None:
                # `with BytesIO() as f: torch.save(x, f); backend.put(f.getvalue(), path)`: path's
                dest = _handed_on(save.handle_with, save.call, dest) or opened
            elif opened is not None:
                dest = opened
        function = self.tree.function(save.call)
        if dest is None:
            return PathSource()
        loop = self._work_item_loop(function or self.tree.module, dest)
        if loop is not None:
            return PathSource(
                unseen=f"the path comes from the items of the loop at line {loop.lineno}, which ckptfix "
                "cannot prove are the same on every rank (a per-rank work list writes one file per item)"
            )
        if function is None:
            return PathSource()
        return self._parameters_passed(function, self._bare_parameters(function, dest), 0)

    def _work_item_loop(
        self, function: FunctionNode | ast.Module, dest: ast.expr
    ) -> ast.For | ast.AsyncFor | None:
        """The loop whose target the path is built from, when that loop is not proved to run alike on
        every rank (`for path in my_files:`; not `for epoch in range(args.epochs)`, nor a loop over
        batches that meets the other ranks in DDP's backward every iteration)."""
        targets: dict[str, ast.For | ast.AsyncFor] = {}
        for node in walk_local(function):
            if isinstance(node, ast.For | ast.AsyncFor):
                for bound in ast.walk(node.target):
                    if isinstance(bound, ast.Name):
                        targets[bound.id] = node
        if not targets:
            return None
        seen: set[str] = set()
        pending = [n.id for n in ast.walk(dest) if isinstance(n, ast.Name)]
        while pending:
            name = pending.pop()
            if name in seen or len(seen) > 20:
                continue
            seen.add(name)
            loop = targets.get(name)
            if loop is not None and not self.uniform._counts_alike(loop):
                return loop
            for value in self._assigned_values(function, name):
                if not isinstance(value, ast.Call) or _last(value) not in {"open"}:
                    pending += [n.id for n in ast.walk(value) if isinstance(n, ast.Name)]
        return None

    def _bare_parameters(self, function: FunctionNode, expr: ast.expr) -> list[str]:
        """Parameters the expression is built from, through the function's own assignments. A setting
        read from a parameter (`args.output_dir`) is a setting, not the parameter itself."""
        parameters = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)} - {"self", "cls"}
        found: list[str] = []
        seen: set[str] = set()

        def visit(node: ast.AST, depth: int) -> None:
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                # `output_dir.joinpath("x")`: a method of the value is the value's
                visit(node.func.value, depth)
                for child in (*node.args, *node.keywords):
                    visit(child, depth)
                return
            if isinstance(node, ast.Attribute):
                if not isinstance(node.value, ast.Name):
                    visit(node.value, depth)
                return  # `args.output_dir`, `self.path`: settings and state, not a caller's value
            if isinstance(node, ast.Name):
                if node.id in parameters and node.id not in found:
                    found.append(node.id)
                elif depth < _MAX_DEPTH and node.id not in seen:
                    seen.add(node.id)
                    for value in self._assigned_values(function, node.id):
                        visit(value, depth + 1)
                return
            for child in ast.iter_child_nodes(node):
                visit(child, depth)

        visit(expr, 0)
        return found

    def _parameters_passed(self, function: FunctionNode, parameters: list[str], depth: int) -> PathSource:
        if not parameters:
            return PathSource()
        sites = self.graph.sites[id(function)]
        names = ", ".join(f"`{p}`" for p in parameters)
        external = self._external_source(function, parameters)
        if external is not None:
            return external
        if not sites and not self.graph.external_sites(function):
            return PathSource(
                unseen=f"the path comes from {names}, a parameter of `{function.name}`, whose callers "
                "ckptfix cannot see: if they pass a per-rank path, guarding the write loses the other "
                "ranks' files"
            )
        if not all(isinstance(site, ast.Call) for site in sites):
            return PathSource(
                unseen=f"`{function.name}` is passed around as a value: the path it writes may be per-rank"
            )
        positions = _positions(function)
        for site in sites:
            assert isinstance(site, ast.Call)
            for parameter in parameters:
                passed = _passed(site, parameter, positions)
                if passed is None:
                    continue
                if any(
                    isinstance(n, ast.Name | ast.Attribute | ast.Call) and is_rank_name(_last(n))
                    for n in ast.walk(passed)
                ):
                    return PathSource(per_rank=site.lineno)
                caller = self.tree.function(site)
                if caller is not None and _opened(self._bindings_of(caller), passed):
                    return PathSource(handle=True)
                if caller is not None and depth < _MAX_DEPTH:
                    found = self._parameters_passed(caller, self._bare_parameters(caller, passed), depth + 1)
                    if found.per_rank is not None or found.unseen is not None:
                        return found
        return PathSource()

    def _external_source(self, function: FunctionNode, parameters: list[str]) -> PathSource | None:
        """What the calls from the project's other files pass for the path's parameters: a per-rank
        value, or one they take from their own callers (which this file cannot follow); None when
        they pass shared values (or there are no such calls)."""
        if self.graph.library_public(function):
            return PathSource(
                unseen=f"`{function.name}` is a public function of a library module: callers outside the "
                "project may pass a per-rank path"
            )
        external = self.graph.external_sites(function)
        if not external:
            return None
        positions = _positions(function)
        keys = {p: {p, str(positions[p])} if p in positions else {p} for p in parameters}
        for site in external:
            if not site.call:
                return PathSource(
                    unseen=f"`{function.name}` is passed around as a value at {site.where}: the path it "
                    "writes may be per-rank"
                )
            for parameter, spelled in keys.items():
                if spelled & set(site.rank_args):
                    return PathSource(per_rank=0)  # the call at site.where passes a per-rank path
                if spelled & set(site.param_args):
                    return PathSource(
                        unseen=f"the path comes from `{parameter}`, which the call at {site.where} passes "
                        "on from its own caller's arguments: if they are per-rank, guarding the write "
                        "loses the other ranks' files"
                    )
        return None


_IN_MEMORY = frozenset({"BytesIO", "StringIO"})


def _handed_on(block: ast.With, save: ast.Call, handle: ast.expr) -> ast.expr | None:
    """The destination of bytes serialised into an in-memory handle and handed on in the same block:
    the other arguments of the call that takes the handle (`backend.put(f.getvalue(), path)`)."""
    if not isinstance(handle, ast.Name):
        return None
    for statement in block.body:
        for node in ast.walk(statement):
            if not isinstance(node, ast.Call) or node is save:
                continue
            values = [*node.args, *(k.value for k in node.keywords)]
            mentions = [
                any(isinstance(n, ast.Name) and n.id == handle.id for n in ast.walk(v)) for v in values
            ]
            if any(mentions) and not all(mentions):
                others = [v for v, m in zip(values, mentions, strict=True) if not m]
                return ast.Tuple(elts=others, ctx=ast.Load())
    return None


def _opened(bindings: dict[str, list[ast.expr]], passed: ast.expr) -> bool:
    """`passed` is a file object: `open(...)`, or a name bound to one (`with open(p, "wb") as f`)."""
    values = [passed]
    if isinstance(passed, ast.Name):
        values += bindings.get(passed.id, [])
    return any(isinstance(v, ast.Call) and _last(v) in {"open", "fdopen", "BytesIO"} for v in values)


def _last(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def _bindings(function: FunctionNode | ast.Module) -> dict[str, list[ast.expr]]:
    """What each name is bound to in the function: an assignment's value (the whole of it for an
    unpacking, `a, b = f(x)`), a `with`'s context expression, a `for` loop's iterable."""
    found: dict[str, list[ast.expr]] = {}

    def bind(target: ast.AST | None, value: ast.expr) -> None:
        if target is None:
            return
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                found.setdefault(node.id, []).append(value)

    for node in walk_local(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                bind(target, node.value)
        elif isinstance(node, ast.withitem):
            bind(node.optional_vars, node.context_expr)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            bind(node.target, node.iter)
    return found


def _positions(function: FunctionNode) -> dict[str, int]:
    """Parameter -> its position in a call (methods: `self` is not passed)."""
    positional = [a.arg for a in (*function.args.posonlyargs, *function.args.args)]
    if positional and positional[0] in {"self", "cls"}:
        positional = positional[1:]
    return {name: index for index, name in enumerate(positional)}


def _passed(call: ast.Call, parameter: str, positions: dict[str, int]) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == parameter:
            return keyword.value
    index = positions.get(parameter)
    args = [a for a in call.args if not isinstance(a, ast.Starred)]
    if index is not None and index < len(args) and len(args) == len(call.args):
        return args[index]
    return None
