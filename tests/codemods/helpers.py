"""Shared checks: every rewrite must compile and be a fixed point (apply twice == apply once)."""

from __future__ import annotations

import ast
import textwrap

from ckptfix.api import check_source, fix_source
from ckptfix.options import Options

HEADER = "import torch\nimport torch.distributed as dist\n"


def src(code: str, header: str = HEADER, entry: bool = True) -> str:
    """A snippet as a script: with `entry`, a `__main__` block calls what nothing in the snippet calls
    (its top-level functions, a class's methods), as a training script runs its code on every rank.
    ckptfix places a barrier inside a function only when it sees who calls it."""
    body = header + textwrap.dedent(code).lstrip("\n")
    calls = _entry_calls(body) if entry else []
    if not calls:
        return body
    return body + '\n\nif __name__ == "__main__":\n' + "".join(f"    {call}\n" for call in calls)


def _entry_calls(source: str) -> list[str]:
    module = ast.parse(source)
    calls = [n for n in ast.walk(module) if isinstance(n, ast.Call)]
    called = {n.func.id for n in calls if isinstance(n.func, ast.Name)} | {
        n.func.attr
        for n in calls
        if isinstance(n.func, ast.Attribute) and ast.unparse(n.func.value) == "self"
    }
    calls: list[str] = []
    for stmt in module.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name not in called:
            calls.append(f"{stmt.name}(*ARGS)")
        elif isinstance(stmt, ast.ClassDef) and stmt.name not in called:  # one the snippet builds runs there
            methods = [
                f.name
                for f in stmt.body
                if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                and not f.name.startswith("__")
                and f.name not in called
                and not f.decorator_list
            ]
            if methods:
                name = f"{stmt.name.lower()}_instance"
                calls.append(f"{name} = {stmt.name}(*ARGS)")
                calls.extend(f"{name}.{method}(*ARGS)" for method in methods)
    return calls


# Most snippets are helpers with no caller in the snippet (`def f(m, p): torch.save(m, p)`): whether
# their path is shared is the unseen callers' business, so guarding the write is an unsafe fix. These
# tests are about what a fix writes: they take unsafe fixes unless a test says otherwise.
UNSAFE = {"unsafe_fixes": True}


def rewrite(source: str, **options: object) -> str:
    """Apply once; assert the result compiles and that applying again changes nothing."""
    opts = Options(**{**UNSAFE, **options})  # type: ignore[arg-type]
    result = fix_source(source, options=opts)
    new = source if result.new_source is None else result.new_source
    compile(new, "<rewritten>", "exec")
    again = fix_source(new, options=opts)
    assert again.new_source is None, f"not idempotent, second pass gave:\n{again.new_source}"
    return new


def codes(source: str, **options: object) -> list[str]:
    return [f.code for f in check_source(source, options=Options(**{**UNSAFE, **options}))]  # type: ignore[arg-type]


def findings(source: str, **options: object) -> list[tuple[int, str, bool]]:
    found = check_source(source, options=Options(**{**UNSAFE, **options}))  # type: ignore[arg-type]
    return [(f.line, f.code, f.fixable) for f in found]


def guarded_calls(
    source: str, guard_words: tuple[str, ...] = ("is_main_process", "get_rank() == 0")
) -> set[str]:
    """Names of calls that sit under an `if` whose test mentions a main-process guard."""
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and any(w in ast.unparse(node.test) for w in guard_words):
            for inner in node.body:
                for call in ast.walk(inner):
                    if isinstance(call, ast.Call):
                        names.add(ast.unparse(call.func))
    return names
