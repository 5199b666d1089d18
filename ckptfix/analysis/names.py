"""Name resolution through imports: what dotted name does an expression refer to?

`dist.barrier` means `torch.distributed.barrier` only when `dist` was imported as torch.distributed;
spelling alone decides nothing (DESIGN "Traps").
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

# Spellings torch re-exports under a shorter public name.
_CANONICAL_PREFIXES = (
    ("torch.serialization.save", "torch.save"),
    ("torch.distributed.distributed_c10d.", "torch.distributed."),
    ("torch.distributed.checkpoint.state_dict_saver.", "torch.distributed.checkpoint."),
    ("torch.distributed.checkpoint.state_dict_loader.", "torch.distributed.checkpoint."),
    ("torch.distributed.fsdp.fully_sharded_data_parallel.", "torch.distributed.fsdp."),
    ("torch.distributed.fsdp.FSDP.", "torch.distributed.fsdp.FullyShardedDataParallel."),
)


def canonical(qualname: str) -> str:
    """Map a re-exported spelling onto the catalogue's canonical one."""
    for prefix, replacement in _CANONICAL_PREFIXES:
        if qualname == prefix or qualname.startswith(prefix):
            return replacement + qualname[len(prefix) :]
    return qualname


def last_name(expr: ast.expr) -> str | None:
    """The last identifier of a name, attribute chain or call of one (`a.b.c()` -> `c`)."""
    if isinstance(expr, ast.Call):
        expr = expr.func
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


def dotted(expr: ast.expr) -> str | None:
    """The literal dotted spelling of a Name/Attribute chain (`self.args.rank`), unresolved."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    return ".".join(reversed(parts))


# The node types `Names` reads; `ast.parse` builds no subclasses, so an exact type lookup skips the rest.
_BINDING_TYPES = frozenset(
    {ast.Name, ast.Assign, ast.arg, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef}
    | {ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal}
)


class Names:
    """Bindings of one module: imports (any scope), simple aliases (`save_fn = torch.save`), and every
    identifier in use, so that inserted names never clash."""

    def __init__(self, tree: ast.Module, nodes: list[ast.AST] | None = None) -> None:
        self.imports: dict[str, str] = {}  # local name -> dotted target, any scope
        self.module_imports: dict[str, str] = {}  # only top-level (module scope) imports
        self.bound: set[str] = set()  # every identifier bound or used anywhere
        self.imported: set[str] = set()  # every module (and `module.name`) imported anywhere
        self._conflicting: set[str] = set()
        self._resolved: dict[int, tuple[ast.expr, str | None]] = {}
        self._collect(tree, nodes if nodes is not None else list(ast.walk(tree)))

    def _bind(self, local: str, target: str, top: bool) -> None:
        previous = self.imports.get(local)
        if previous is not None and previous != target:
            self._conflicting.add(local)
        self.imports[local] = target
        if top:
            self.module_imports[local] = target

    def _collect(self, tree: ast.Module, nodes: list[ast.AST]) -> None:
        top_level = {id(node) for node in _top_level_statements(tree.body)}
        assigns: list[ast.Assign] = []
        for node in nodes:
            if type(node) not in _BINDING_TYPES:  # most nodes: one set lookup
                continue
            if isinstance(node, ast.Name):
                self.bound.add(node.id)
            elif isinstance(node, ast.Assign):
                assigns.append(node)
            elif isinstance(node, ast.arg):
                self.bound.add(node.arg)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.bound.add(node.name)
            elif isinstance(node, ast.Import):
                self._import(node, id(node) in top_level)
            elif isinstance(node, ast.ImportFrom):
                self._import_from(node, id(node) in top_level)
            elif isinstance(node, ast.Global | ast.Nonlocal):
                self.bound.update(node.names)
        # Simple aliases of imported callables (`save_fn = torch.save`); names assigned twice with
        # different values are dropped: we cannot tell which one a call sees.
        aliases: dict[str, str | None] = {}
        for node in assigns:
            if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
                continue
            name = node.targets[0].id
            target = self._resolve(node.value) if isinstance(node.value, ast.Name | ast.Attribute) else None
            if name in aliases and aliases[name] != target:
                aliases[name] = None
            else:
                aliases[name] = target
        for name, target in aliases.items():
            if target is not None and name not in self.imports:
                self.imports[name] = target
        for name in self._conflicting:
            self.imports.pop(name, None)
            self.module_imports.pop(name, None)

    def _import(self, node: ast.Import, top: bool) -> None:
        self.imported.update(alias.name for alias in node.names)
        for alias in node.names:
            if alias.asname:
                self._bind(alias.asname, alias.name, top)
                self.bound.add(alias.asname)
            else:
                head = alias.name.split(".")[0]
                self._bind(head, head, top)
                self.bound.add(head)

    def _import_from(self, node: ast.ImportFrom, top: bool) -> None:
        module = "." * node.level + (node.module or "")
        self.imported.add(module)
        self.imported.update(f"{module}.{alias.name}" for alias in node.names)
        for alias in node.names:
            if alias.name == "*":
                continue
            local = alias.asname or alias.name
            self._bind(local, f"{module}.{alias.name}", top)
            self.bound.add(local)

    def resolve(self, expr: ast.expr) -> str | None:
        """Canonical dotted name an expression refers to, or None when it is not an imported name.

        Rules ask this of the same call many times; the answer is kept with the node itself, so that
        an id is never mistaken for a later node's."""
        cached = self._resolved.get(id(expr))
        if cached is not None and cached[0] is expr:
            return cached[1]
        result = self._resolve(expr)
        self._resolved[id(expr)] = (expr, result)
        return result

    def _resolve(self, expr: ast.expr) -> str | None:
        spelled = dotted(expr)
        if spelled is None:
            return None
        head, _, rest = spelled.partition(".")
        root = self.imports.get(head)
        if root is None:
            return None
        return canonical(f"{root}.{rest}" if rest else root)

    def local_for(self, target: str) -> str | None:
        """A module-level name already bound to `target` (e.g. `dist` for torch.distributed)."""
        for local, bound_to in self.module_imports.items():
            if canonical(bound_to) == target:
                return local
        return None

    def fresh(self, wanted: str, reserved: Iterable[str] = ()) -> str:
        """`wanted`, or `ckptfix_<wanted>`, `..._2`, ... whichever is not in use in the module."""
        taken = self.bound | set(reserved)
        if wanted not in taken:
            return wanted
        candidate = f"ckptfix_{wanted}"
        counter = 2
        while candidate in taken:
            candidate = f"ckptfix_{wanted}_{counter}"
            counter += 1
        return candidate


def _top_level_statements(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """Statements that run at module scope: the body and the blocks of top-level if/try/with."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If | ast.Try | ast.With):
            for block in _blocks(stmt):
                yield from _top_level_statements(block)


def _blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    blocks: list[list[ast.stmt]] = [getattr(stmt, "body", [])]
    blocks.append(getattr(stmt, "orelse", []))
    blocks.append(getattr(stmt, "finalbody", []))
    blocks.extend(handler.body for handler in getattr(stmt, "handlers", []))
    return blocks
