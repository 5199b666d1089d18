"""Which calls are collectives: every rank of the group must make them, or the ones that did wait
forever (issue 4). Used by CKP006 and by CKP001's rewrite, which must never guard one."""

from __future__ import annotations

import ast

from ckptfix.analysis import catalog
from ckptfix.analysis.names import Names, dotted, last_name

# Method names that make a collective without resolving (the rest resolve to catalog.COLLECTIVES).
_METHOD_NAMES = catalog.COLLECTIVE_METHODS | frozenset(catalog.RECEIVER_COLLECTIVES)


def collective_name(call: ast.Call, names: Names, module_functions: set[str]) -> str | None:
    """The collective a call makes (its canonical or method name), or None.

    Method calls on objects of unknown type match by name only for the specific names in
    catalog.COLLECTIVE_METHODS, or for the common names of catalog.RECEIVER_COLLECTIVES on a receiver
    named for what it is, and never when the module defines a function of that name itself.
    """
    func = call.func
    if not (
        names.may_resolve_to(func, catalog.COLLECTIVES)
        or (type(func) is ast.Attribute and func.attr in _METHOD_NAMES)
    ):
        return None  # nearly every call: no need to resolve it
    resolved = names.resolve(func)
    if resolved is not None and resolved in catalog.COLLECTIVES:
        return resolved
    if isinstance(call.func, ast.Attribute) and call.func.attr not in module_functions:
        name = call.func.attr
        if name in catalog.COLLECTIVE_METHODS:
            return resolved if resolved is not None else name
        receiver = (last_name(call.func.value) or "").lower()
        if any(hint in receiver for hint in catalog.RECEIVER_COLLECTIVES.get(name, ())):
            return dotted(call.func) or name
    return None


def contains_collective(node: ast.AST, names: Names, module_functions: set[str]) -> bool:
    """True when evaluating `node` makes a collective call directly (not through helpers)."""
    return any(
        isinstance(child, ast.Call) and collective_name(child, names, module_functions) is not None
        for child in ast.walk(node)
    )


def is_barrier_call(call: ast.Call, names: Names) -> bool:
    """A call that makes every rank wait for the others (resolved, or by a barrier-like name)."""
    resolved = names.resolve(call.func)
    if resolved is not None and (resolved in catalog.BARRIERS or resolved in catalog.RUNTIME_BARRIERS):
        return True
    if resolved is not None and resolved in catalog.NOT_BARRIERS:
        return False
    name = last_name(call.func)
    # `dist_barrier()`, `_barrier()`: a function named for a barrier. Not `Barrier(2)`: a class (as
    # threading's) builds a barrier object, it does not wait; the byte prefilter relies on the spelling.
    return name is not None and (name in catalog.BARRIER_LIKE_NAMES or "barrier" in name)
