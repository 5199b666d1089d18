"""Shared checks: every rewrite must compile and be a fixed point (apply twice == apply once)."""

from __future__ import annotations

import ast
import textwrap

from ckptfix.api import check_source, fix_source
from ckptfix.options import Options

HEADER = "import torch\nimport torch.distributed as dist\n"


def src(code: str, header: str = HEADER) -> str:
    return header + textwrap.dedent(code).lstrip("\n")


def rewrite(source: str, **options: object) -> str:
    """Apply once; assert the result compiles and that applying again changes nothing."""
    opts = Options(**options)  # type: ignore[arg-type]
    result = fix_source(source, options=opts)
    new = source if result.new_source is None else result.new_source
    compile(new, "<rewritten>", "exec")
    again = fix_source(new, options=opts)
    assert again.new_source is None, f"not idempotent, second pass gave:\n{again.new_source}"
    return new


def codes(source: str, **options: object) -> list[str]:
    return [f.code for f in check_source(source, options=Options(**options))]  # type: ignore[arg-type]


def findings(source: str, **options: object) -> list[tuple[int, str, bool]]:
    return [(f.line, f.code, f.fixable) for f in check_source(source, options=Options(**options))]  # type: ignore[arg-type]


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
