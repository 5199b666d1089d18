"""One plan from the edits of several findings: what both the libcst rewrite and the validator's `ast`
application of it start from (so that what is validated is what is written).

Inserts of one group collapse into the last one (several saves, one barrier); the symbols the templates
use get the module's own names, or imports that bind new ones, placed after the module's imports.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from dataclasses import dataclass

from ckptfix.analysis import catalog
from ckptfix.analysis.checker import Analysis
from ckptfix.analysis.names import Names
from ckptfix.analysis.plan import MODULE_SYMBOLS, RUNTIME_SYMBOLS, CallEdit, Edit, Insert, Key, Plan
from ckptfix.analysis.tree import Tree
from ckptfix.options import Options


@dataclass
class Assembled:
    plan: Plan
    symbols: dict[str, str]  # template symbol -> the module's name for it
    merged: dict[tuple[object, str], Key]  # (group, template) -> the key of the insert that stays
    import_key: Key | None  # where the new imports go, None when there are none

    def applied_lists(self, edit_lists: list[list[Edit]], applied: Collection[object]) -> set[int]:
        """Indexes of the edit lists whose every edit the rewriter reports as applied."""
        return {
            n
            for n, edits in enumerate(edit_lists)
            if all(_edit_key(edit, self.merged) in applied for edit in edits)
        }


def assemble(edit_lists: list[list[Edit]], options: Options, analysis: Analysis) -> Assembled:
    plan, needed, merged = _plan(edit_lists, options, analysis)
    symbols, imports = _symbols(needed, analysis.names)
    import_key = None
    if imports:
        import_key, after = _import_anchor(analysis.tree, plan)
        plan.add(Insert(import_key, after, "\n".join(imports), frozenset()))
    return Assembled(plan, symbols, merged, import_key)


def _edit_key(edit: Edit, merged: dict[tuple[object, str], Key]) -> object:
    """Where an edit shows up in the rewriter's `applied` set (a merged insert: at the surviving one)."""
    if isinstance(edit, CallEdit):
        return edit.span
    if isinstance(edit, Insert) and edit.group is not None:
        return merged[(edit.group, edit.template)]
    return edit.key


def _plan(
    edit_lists: list[list[Edit]], options: Options, analysis: Analysis
) -> tuple[Plan, set[str], dict[tuple[object, str], Key]]:
    """Merge the edits of several findings: inserts of one group collapse into the last one."""
    edits = [edit for edits in edit_lists for edit in edits]
    last_in_group: dict[tuple[object, str], Key] = {}
    for edit in edits:
        if isinstance(edit, Insert) and edit.group is not None:
            slot = (edit.group, edit.template)
            last_in_group[slot] = max(last_in_group.get(slot, edit.key), edit.key)
    plan = Plan()
    needed: set[str] = set()
    for edit in edits:
        if (
            isinstance(edit, Insert)
            and edit.group is not None
            and last_in_group[(edit.group, edit.template)] != edit.key
        ):
            continue
        plan.add(edit)
        needed |= edit.symbols
    if options.style == "runtime" and needed & {"checkpoint_barrier", "final_sync"}:
        for key in analysis.init_keys:
            plan.add(Insert(key, True, "{init_sync}()", frozenset({"init_sync"})))
            needed.add("init_sync")
    return plan, needed, last_in_group


def _symbols(needed: set[str], names: Names) -> tuple[dict[str, str], list[str]]:
    """Local names for the symbols the templates use, and the import lines that bind new ones."""
    mapping: dict[str, str] = {}
    imports: list[str] = []
    for symbol in sorted(needed & MODULE_SYMBOLS.keys()):
        target = MODULE_SYMBOLS[symbol]
        local = names.local_for(target)
        if (
            local is None
            and target in names.imported
            and names.module_imports.get(target.split(".")[0]) == "torch"
        ):
            local = target  # `import torch.distributed` already made `torch.distributed` usable
        if local is None:
            local = names.fresh(symbol, reserved=mapping.values())
            if local == target:
                imports.append(f"import {target}")
            else:
                imports.append(f"import {target} as {local}")
        mapping[symbol] = local
    runtime_parts: list[str] = []
    for symbol in sorted(needed & RUNTIME_SYMBOLS):
        local = names.local_for(f"{catalog.RUNTIME_MODULE}.{symbol}")
        if local is None:
            local = names.fresh(symbol, reserved=mapping.values())
            runtime_parts.append(symbol if local == symbol else f"{symbol} as {local}")
        mapping[symbol] = local
    if runtime_parts:
        imports.append(from_import(catalog.RUNTIME_MODULE, runtime_parts))
    return mapping, imports


# Black's and ruff's default line length: a longer import is wrapped the way they would wrap it.
_IMPORT_LINE_LENGTH = 88


def from_import(module: str, names: list[str]) -> str:
    """`from module import a, b`, or one name per line in parentheses when that would be too long."""
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= _IMPORT_LINE_LENGTH:
        return line
    return f"from {module} import (\n" + "".join(f"    {name},\n" for name in names) + ")"


def _import_anchor(tree: Tree, plan: Plan) -> tuple[Key, bool]:
    """Where new imports go: after the last top-level import (also one inside a top-level try/if) that
    comes before any rewritten code running at import time; else after the docstring or at the top."""
    edit_lines = [key[0] for key in plan.statement_keys()] + [span[0] for span in plan.calls]
    body = tree.module.body
    first_module_level = min(
        (line for line in edit_lines if _runs_at_import(tree, line)),
        default=None,
    )
    last_import: ast.stmt | None = None
    for stmt in body:
        if first_module_level is not None and (stmt.end_lineno or stmt.lineno) >= first_module_level:
            break
        if isinstance(stmt, ast.Import | ast.ImportFrom) or (
            isinstance(stmt, ast.Try | ast.If)
            and any(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.walk(stmt))
            and not _is_main_guard(stmt)
        ):
            last_import = stmt
    if last_import is not None:
        return tree.start(tree.line_start(last_import)), True
    first = body[0]
    is_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    return tree.start(first), is_docstring


def _runs_at_import(tree: Tree, line: int) -> bool:
    for stmt in tree.module.body:
        if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno):
            return (
                not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                or line == stmt.lineno
            )
    return True


def _is_main_guard(stmt: ast.stmt) -> bool:
    test = getattr(stmt, "test", None)
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
