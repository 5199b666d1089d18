"""One file's summary: what its functions do and where it calls other functions, in a few hundred bytes.

Why a summary and not the analysis: linking facts across a project must not cost an analysis of every
file, nor keep their trees in memory. A summary is computed once per file content (on `ast`, with the
same recognisers the rules use, so that a guard means the same here and there), stored as plain JSON
(`store`), and linked with the others (`link`). It records:

- per module-level function and method: where it writes a checkpoint, makes a collective or meets a
  barrier (directly; `link` follows the calls), whether a decorator runs it on the main process only,
  whether it returns a main-process test (a predicate) or a rank (a per-rank name), whether it is a
  decorator that calls its argument under a guard, whether a framework calls it (a hook);
- module-level flags bound to a main-process test (`IS_MAIN = int(os.environ["RANK"]) == 0`);
- module-level import bindings (re-exports through a package's `__init__`);
- every call of (or reference to) a module function of its own and of a name it imports from a
  module that may be the project's: the guard around it in its function, the imported names tested
  around it that only `link` can classify, the function it is in, and which arguments carry a rank.
  An imported callable put in a callback list is recorded where the loop over the list calls it
  (ckptfix.analysis.callbacks).
"""

from __future__ import annotations

import ast
import sys
from typing import Any

from ckptfix.analysis.callbacks import triggered_references
from ckptfix.analysis.callgraph import CallGraph
from ckptfix.analysis.collectives import collective_name, is_barrier_call
from ckptfix.analysis.guards import GuardRecognizer, Kind
from ckptfix.analysis.names import Names, dotted, last_name
from ckptfix.analysis.rules.context import and_clauses
from ckptfix.analysis.saves import SaveFinder, argument, is_rank_name
from ckptfix.analysis.tree import FunctionNode, Tree, walk_local
from ckptfix.project.layout import VERSION, Summary

Target = tuple[int, str]  # (level of a relative import, dotted name after the dots)

# Top-level modules that are never a project's own: calls into them are not recorded.
_EXTERNAL = frozenset(sys.stdlib_module_names) | {
    "torch",
    "numpy",
    "np",
    "transformers",
    "accelerate",
    "deepspeed",
    "lightning",
    "pytorch_lightning",
    "safetensors",
    "ckptfix",
    "tqdm",
    "wandb",
    "yaml",
    "scipy",
    "pandas",
    "PIL",
    "torchvision",
    "timm",
    "hydra",
    "omegaconf",
}


class _Imports:
    """Each imported local name -> (level, dotted target), as `import` and `from ... import` bind it."""

    def __init__(self, tree: Tree) -> None:
        self.bound: dict[str, Target] = {}
        self.top: dict[str, Target] = {}
        top_level = {id(s) for s in tree.module.body}
        for node in tree.imports:
            for alias in node.names:
                if alias.name == "*":
                    continue
                if isinstance(node, ast.Import):
                    local = alias.asname or alias.name.split(".")[0]
                    target: Target = (0, alias.name if alias.asname else local)
                else:
                    base = node.module or ""
                    local = alias.asname or alias.name
                    target = (node.level, f"{base}.{alias.name}" if base else alias.name)
                self.bound[local] = target
                if id(node) in top_level:
                    self.top[local] = target

    def target(self, expr: ast.expr) -> Target | None:
        """The (level, dotted) an expression names through an import, if it may be a project's."""
        spelled = dotted(expr)
        if spelled is None:
            return None
        head, _, rest = spelled.partition(".")
        found = self.bound.get(head)
        if found is None:
            return None
        level, base = found
        if level == 0 and base.split(".")[0] in _EXTERNAL:
            return None
        return level, f"{base}.{rest}" if rest else base


def summarize(source: str, module: ast.Module) -> Summary:
    """The summary of one parsed file (see the module docstring)."""
    tree = Tree(source, module)
    names = Names(module, tree)
    guards = GuardRecognizer(names)
    guards.learn_main_only_objects(tree)
    guards.learn_main_flags(tree)
    guards.learn_guard_names(tree)
    guards.learn_mode_parameters(tree)
    graph = CallGraph(tree, guards)
    imports = _Imports(tree)
    saves = SaveFinder(tree, names)
    functions = {id(f): qual for f in tree.functions if (qual := graph.qualname(f)) is not None}
    module_functions = {f.name for f in tree.functions}
    summary: Summary = {
        "v": VERSION,
        "main": _has_main_block(module),
        "functions": {},
        "flags": _module_flags(tree, guards),
        "exports": {
            local: list(target)
            for local, target in imports.top.items()
            if target[0] or target[1].split(".")[0] not in _EXTERNAL
        },
        "sites": [],
    }
    for function in tree.functions:
        qual = functions.get(id(function))
        if qual is not None:
            summary["functions"][qual] = _function(
                function, tree, names, guards, graph, imports, saves, module_functions
            )
    sites: list[dict[str, Any]] = summary["sites"]
    # A callable of another module put in a callback list runs where the loop over the list calls it.
    triggered = triggered_references(tree)
    for function in tree.functions:
        qual = functions.get(id(function))
        if qual is None:
            continue
        for site in graph.sites[id(function)]:
            sites.append(_site(site, {"local": qual}, tree, guards, graph, imports, functions))
    for node in tree.nodes:
        if type(node) is ast.Call:
            target = imports.target(node.func)
            if target is not None:
                spelled = names.resolve(node.func) or ""
                to = {"level": target[0], "name": target[1], "spelled": spelled}
                sites.append(_site(node, to, tree, guards, graph, imports, functions))
        elif type(node) in (ast.Name, ast.Attribute) and isinstance(node.ctx, ast.Load):  # type: ignore[attr-defined]
            parent = tree.parent.get(id(node))
            if isinstance(parent, ast.Attribute) or (isinstance(parent, ast.Call) and parent.func is node):
                continue  # part of a longer name, or the called name (recorded as the call)
            target = imports.target(node)  # type: ignore[arg-type]
            if target is not None and target[1].count(".") >= (0 if target[0] else 1):
                to = {"level": target[0], "name": target[1], "spelled": names.resolve(node) or ""}  # type: ignore[arg-type]
                for where in triggered.get(id(node), [node]):
                    sites.append(_site(where, to, tree, guards, graph, imports, functions))
    return summary


def _has_main_block(module: ast.Module) -> bool:
    return any(isinstance(stmt, ast.If) and _is_main_test(stmt.test) for stmt in module.body)


def _module_flags(tree: Tree, guards: GuardRecognizer) -> dict[str, int]:
    """Module-level names bound once, to a main-process test (`IS_MAIN = dist.get_rank() == 0`)."""
    stores: dict[str, int] = {}
    for used in tree.of_type(ast.Name):
        if isinstance(used.ctx, ast.Store | ast.Del):
            stores[used.id] = stores.get(used.id, 0) + 1
    flags: dict[str, int] = {}
    for stmt in tree.module.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            kind = guards.classify(stmt.value)
            if stores.get(name) == 1 and kind is not None and kind != Kind.SHARD:
                flags[name] = int(kind)
    return flags


def _function(
    function: FunctionNode,
    tree: Tree,
    names: Names,
    guards: GuardRecognizer,
    graph: CallGraph,
    imports: _Imports,
    saves: SaveFinder,
    module_functions: set[str],
) -> dict[str, Any]:
    save_line = collective_line = barrier_line = 0
    dest: list[str] = []
    collective = ""
    returns: list[ast.expr] = []
    for node in walk_local(function):
        if isinstance(node, ast.Call):
            if not save_line:
                save = saves.save(node)
                if save is not None and not save.per_rank and not save.in_memory:
                    save_line = node.lineno
                    dest = _dest_parameters(function, argument(node, save.dest))
            if not collective and imports.target(node.func) is None:
                # A name imported from a module that may be the project's is `link`'s to judge.
                name = collective_name(node, names, module_functions)
                if name is not None:
                    collective, collective_line = name, node.lineno
            if not barrier_line and is_barrier_call(node, names) and guards.local_guard(tree, node) is None:
                barrier_line = node.lineno
        elif isinstance(node, ast.Return) and node.value is not None:
            returns.append(node.value)
    decorators = [
        list(t)
        for d in function.decorator_list
        if (t := imports.target(d.func if isinstance(d, ast.Call) else d))
    ]
    decorated = guards.decorator_kind(function)
    return {
        "line": function.lineno,
        "save": save_line,
        "dest": dest,
        "collective": [collective, collective_line] if collective else None,
        "barrier": barrier_line,
        "decorated": int(decorated) if decorated is not None else 0,
        "decorators": decorators,
        "predicate": _predicate(returns, guards),
        "rank": int(_rank_valued(returns, guards)),
        "wraps": _wraps_main(function, tree, guards),
        "hook": graph.framework_hook(function) is not None,
    }


def _dest_parameters(function: FunctionNode, dest: ast.expr | None) -> list[str]:
    """How a caller passes the path the function writes: the keys (position, and name) of the
    parameters the destination is spelled with (`def save(state, path): torch.save(state, path)`:
    `1`, `path`); empty when it is built otherwise or unknown."""
    if dest is None:
        return []
    positional = [a.arg for a in (*function.args.posonlyargs, *function.args.args)]
    if positional and positional[0] in {"self", "cls"}:
        positional = positional[1:]
    used = {n.id for n in ast.walk(dest) if isinstance(n, ast.Name)}
    keys: list[str] = []
    for index, name in enumerate(positional):
        if name in used:
            keys += [str(index), name]
    keys += [a.arg for a in function.args.kwonlyargs if a.arg in used]
    return keys


def _predicate(returns: list[ast.expr], guards: GuardRecognizer) -> int:
    """The kind of main-process test every `return` gives (`return dist.get_rank() == 0`), else 0."""
    kinds = [guards.classify(value) for value in returns]
    if not kinds or any(k is None or k == Kind.SHARD for k in kinds):
        return 0
    return int(min(k for k in kinds if k is not None))


def _rank_valued(returns: list[ast.expr], guards: GuardRecognizer) -> bool:
    """Every `return` gives a rank or a text built from one (`return f"rank{dist.get_rank()}"`): a
    name built from its result is per rank."""
    if not returns or _predicate(returns, guards):
        return False
    return all(
        guards.rank_kind(value) is not None
        or any(
            isinstance(n, ast.Name | ast.Attribute | ast.Call) and is_rank_name(last_name(n) or "")
            for n in ast.walk(value)
        )
        for value in returns
    )


def _wraps_main(function: FunctionNode, tree: Tree, guards: GuardRecognizer) -> int:
    """A decorator that runs the function it is given only under a main-process guard:
    `def master_only(fn): def wrapper(*a, **k): if is_main(): return fn(*a, **k); return wrapper`."""
    params = [a.arg for a in (*function.args.posonlyargs, *function.args.args)]
    if not params:
        return 0
    wrapped = params[0]
    inner = [n for n in function.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    returned = {
        n.value.id for n in function.body if isinstance(n, ast.Return) and isinstance(n.value, ast.Name)
    }
    kinds: list[Kind] = []
    for wrapper in inner:
        if wrapper.name not in returned:
            continue
        for node in ast.walk(wrapper):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == wrapped:
                guard = guards.local_guard(tree, node)
                if guard is None or guard.kind == Kind.SHARD:
                    return 0
                kinds.append(guard.kind)
    return int(min(kinds)) if kinds else 0


def _site(
    node: ast.AST,
    to: dict[str, Any],
    tree: Tree,
    guards: GuardRecognizer,
    graph: CallGraph,
    imports: _Imports,
    functions: dict[int, str],
) -> dict[str, Any]:
    guard = guards.local_guard(tree, node)
    caller = tree.function(node)
    site: dict[str, Any] = {
        "to": to,
        "line": getattr(node, "lineno", 0),
        "guard": int(guard.kind) if guard is not None else 0,
        "cand": [list(t) for t in _candidate_tests(node, tree, imports)],
        # "?": inside a nested function or lambda, which may run anywhere.
        "in": "" if caller is None else functions.get(id(caller), "?"),
        "call": isinstance(node, ast.Call) or graph.launched(node),
    }
    if any(isinstance(a, ast.Lambda) for a in tree.ancestors(node)):
        site["in"] = "?"
    if isinstance(node, ast.Call):
        site["rank"], site["param"] = _argument_kinds(node, caller)
    site["plain"] = _plain(node, tree)
    return site


def _plain(node: ast.AST, tree: Tree) -> bool:
    """Every run of its function (or module) reaches `node` once: no branch, loop, handler or
    short-circuit around it there, except the `__main__` test of a script. (Stricter than the
    validator's uniform conditions, which need the whole file: across files only this is proved.)"""
    child: ast.AST = node
    for ancestor in tree.ancestors(node):
        if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return True
        if isinstance(ancestor, ast.If):
            if child is not ancestor.test and not _is_main_test(ancestor.test):
                return False
        elif isinstance(ancestor, ast.For | ast.AsyncFor):
            if child is not ancestor.iter:
                return False
        elif isinstance(
            ancestor,
            ast.While
            | ast.ExceptHandler
            | ast.Match
            | ast.IfExp
            | ast.BoolOp
            | ast.Lambda
            | ast.comprehension,
        ):
            return False
        child = ancestor
    return True


def _is_main_test(test: ast.expr) -> bool:
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"


def _candidate_tests(node: ast.AST, tree: Tree, imports: _Imports) -> list[Target]:
    """Imported names tested around `node` in its function that the file alone cannot classify:
    `if comm.is_chief_worker():` (an `and` clause of an `if` around it), `if not cfg.MAIN: return`
    (an early exit before it). `link` knows whether they are main-process tests."""
    found: list[Target] = []

    def add(test: ast.expr) -> None:
        expr = test.func if isinstance(test, ast.Call) else test
        target = imports.target(expr) if isinstance(expr, ast.Name | ast.Attribute) else None
        if target is not None and target not in found:
            found.append(target)

    child: ast.AST = node
    for ancestor in tree.ancestors(node):
        if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            break
        if isinstance(ancestor, ast.If) and any(s is child for s in ancestor.body):
            for clause in and_clauses(ancestor.test):
                add(clause)
        if isinstance(child, ast.stmt):
            block, index = tree.block_of(child)
            for previous in block[:index]:
                if (
                    isinstance(previous, ast.If)
                    and not previous.orelse
                    and previous.body
                    and isinstance(previous.body[-1], ast.Return | ast.Continue | ast.Break | ast.Raise)
                    and isinstance(previous.test, ast.UnaryOp)
                    and isinstance(previous.test.op, ast.Not)
                ):
                    add(previous.test.operand)
        child = ancestor
    return found


def _argument_kinds(call: ast.Call, caller: FunctionNode | None) -> tuple[list[str], list[str]]:
    """Which arguments (position, or keyword name) carry a rank, and which come from a parameter of
    the calling function (then its own callers decide what they hold)."""
    parameters = (
        {a.arg for a in ast.walk(caller.args) if isinstance(a, ast.arg)} - {"self", "cls"}
        if caller is not None
        else set()
    )
    ranked: list[str] = []
    passed: list[str] = []
    arguments = [(str(i), a) for i, a in enumerate(call.args) if not isinstance(a, ast.Starred)]
    arguments += [(k.arg, k.value) for k in call.keywords if k.arg is not None]
    for key, value in arguments:
        nodes = list(ast.walk(value))
        if any(
            isinstance(n, ast.Name | ast.Attribute | ast.Call) and is_rank_name(last_name(n) or "")
            for n in nodes
        ):
            ranked.append(key)
        elif any(isinstance(n, ast.Name) and n.id in parameters for n in nodes):
            passed.append(key)
    return ranked, passed
