"""Name resolution through imports: what dotted name does an expression refer to?

`dist.barrier` means `torch.distributed.barrier` only when `dist` was imported as torch.distributed;
spelling alone decides nothing (DESIGN "Traps").
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from ckptfix.analysis.tree import Tree

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


class Names:
    """Bindings of one module: imports (any scope), simple aliases (`save_fn = torch.save`), and every
    identifier in use, so that inserted names never clash."""

    def __init__(self, module: ast.Module, tree: Tree | None = None) -> None:
        self.imports: dict[str, str] = {}  # local name -> dotted target, any scope
        self.module_imports: dict[str, str] = {}  # only top-level (module scope) imports
        self.bound: set[str] = set()  # every identifier bound or used anywhere
        self.imported: set[str] = set()  # every module (and `module.name`) imported anywhere
        self._conflicting: set[str] = set()
        self._resolved: dict[int, tuple[ast.expr, str | None]] = {}
        self._last_parts: dict[frozenset[str], frozenset[str]] = {}
        self._aliases: dict[frozenset[str], frozenset[str]] = {}
        self._collect(module, tree if tree is not None else Tree("", module))

    def _bind(self, local: str, target: str, top: bool) -> None:
        previous = self.imports.get(local)
        if previous is not None and previous != target:
            self._conflicting.add(local)
        self.imports[local] = target
        if top:
            self.module_imports[local] = target

    def _collect(self, module: ast.Module, tree: Tree) -> None:
        top_level = {id(node) for node in _top_level_statements(module.body)}
        of_type = tree.of_type
        self.bound.update(node.id for node in of_type(ast.Name))
        self.bound.update(node.arg for node in of_type(ast.arg))
        self.bound.update(node.name for node in tree.functions)
        self.bound.update(node.name for node in of_type(ast.ClassDef))
        for declared in of_type(ast.Global):
            self.bound.update(declared.names)
        for nonlocal_ in of_type(ast.Nonlocal):
            self.bound.update(nonlocal_.names)
        # In the order of the walk: `local_for` takes the first.
        for imported in tree.imports:
            if isinstance(imported, ast.Import):
                self._import(imported, id(imported) in top_level)
            else:
                self._import_from(imported, id(imported) in top_level)
        assigns = of_type(ast.Assign)
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
        # A name also bound another way (a parameter, a nested def, a loop target) is not an alias:
        # `save_function(...)` may call what the caller passed or the local def.
        other_bindings = {node.arg for node in of_type(ast.arg)} | {node.name for node in tree.functions}
        loops: list[ast.For | ast.comprehension] = [*of_type(ast.For), *of_type(ast.comprehension)]
        other_bindings |= {
            node.id for loop in loops for node in ast.walk(loop.target) if isinstance(node, ast.Name)
        }
        for name, target in aliases.items():
            if target is not None and name not in self.imports and name not in other_bindings:
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

    def may_resolve_to(self, expr: ast.expr, targets: frozenset[str]) -> bool:
        """False when `resolve(expr)` cannot be one of `targets`: a set lookup that spares resolving
        nearly every call. A resolved attribute chain ends with the chain's own last identifier
        (`canonical` keeps it), and a plain name resolves to what it was imported or aliased as."""
        if type(expr) is ast.Attribute:
            lasts = self._last_parts.get(targets)
            if lasts is None:
                lasts = self._last_parts[targets] = frozenset(t.rsplit(".", 1)[-1] for t in targets)
            return expr.attr in lasts
        if type(expr) is ast.Name:
            aliases = self._aliases.get(targets)
            if aliases is None:
                aliases = self._aliases[targets] = frozenset(
                    local for local, target in self.imports.items() if canonical(target) in targets
                )
            return expr.id in aliases
        return False

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
