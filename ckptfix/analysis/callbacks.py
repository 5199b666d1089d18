"""Callbacks held in a list and called in a loop over it: where a hook actually runs.

Why: `callbacks = [hooks.save_state]` ... `if rank == 0: for cb in callbacks: cb(state, path)` is
how a hook registered in one place runs under a guard in another. The reference in the list is not
where the hook runs; the call of the loop variable is. Only the plainest shape is followed, where the
list is one literal bound once in the scope of the loop (or at module level) and the loop variable is
called directly: anything else stays a reference, whose callers ckptfix cannot see.
"""

from __future__ import annotations

import ast

from ckptfix.analysis.tree import Tree, walk_local


def triggers(tree: Tree) -> dict[int, tuple[ast.Call, list[ast.expr]]]:
    """id(call) -> (the call of a loop variable, the callables of the list the loop runs over)."""
    found: dict[int, tuple[ast.Call, list[ast.expr]]] = {}
    loops: list[ast.For | ast.AsyncFor] = [*tree.of_type(ast.For), *tree.of_type(ast.AsyncFor)]
    for loop in loops:
        if not (isinstance(loop.target, ast.Name) and isinstance(loop.iter, ast.Name)):
            continue
        elements = _listed_callables(tree, loop, loop.iter.id)
        if elements is None:
            continue
        variable = loop.target.id
        for node in walk_local(loop):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == variable:
                found[id(node)] = (node, elements)
    return found


def triggered_references(tree: Tree) -> dict[int, list[ast.Call]]:
    """id(reference in a callback list) -> the calls that run it."""
    by_reference: dict[int, list[ast.Call]] = {}
    for call, elements in triggers(tree).values():
        for element in elements:
            by_reference.setdefault(id(element), []).append(call)
    return by_reference


def _listed_callables(tree: Tree, loop: ast.AST, name: str) -> list[ast.expr] | None:
    """The elements of the one list or tuple literal `name` is bound to, where the loop sees it: in
    the loop's function, else at module level. None when it is bound otherwise, or more than once."""
    function = tree.function(loop)
    for scope in ([function] if function is not None else []) + [tree.module]:
        bindings = [
            node
            for node in walk_local(scope)
            if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store | ast.Del)
        ]
        if not bindings:
            continue
        if len(bindings) != 1:
            return None
        assign = tree.parent.get(id(bindings[0]))
        if not (
            isinstance(assign, ast.Assign)
            and len(assign.targets) == 1
            and assign.targets[0] is bindings[0]
            and isinstance(assign.value, ast.List | ast.Tuple)
            and all(isinstance(e, ast.Name | ast.Attribute) for e in assign.value.elts)
        ):
            return None
        return list(assign.value.elts)
    return None
