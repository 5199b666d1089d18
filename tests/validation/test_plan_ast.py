"""`check` validates the program `plan_ast` builds; `apply` writes what libcst builds. The two must be
the same program, or `check` would promise fixes `apply` refuses (and the other way round)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ckptfix.api import _analyze, _decide, _rewrite
from ckptfix.assemble import assemble
from ckptfix.options import Options
from ckptfix.validation.plan_ast import apply_plan_ast
from tests.codemods.helpers import src

FIXTURES = sorted(Path(__file__).resolve().parents[2].joinpath("fixtures").glob("*/before.py"))
SNIPPETS = [
    # hoisted state, success followers, a copy of the written file, a uniform barrier condition
    """
    def train(model, loader, out, master_process):
        for step, batch in enumerate(loader):
            model(batch).backward()
            if step % 100 == 0 and master_process:
                state = {"model": model.state_dict(), "step": step}
                torch.save(state, os.path.join(out, "ckpt.pt"))
                shutil.copyfile(os.path.join(out, "ckpt.pt"), os.path.join(out, "best.pt"))
                print("checkpoint saved")
    """,
    # keywords moved to positions, a one-line body, a numeric barrier timeout in a try
    """
    def save(state, d, step):
        if step % 2 == 0: torch.save(obj=state, f=os.path.join(d, "s.pt"))
        try:
            dist.barrier(timeout=60)
        except Exception:
            print("barrier failed")
    """,
    # a save through a with-handle, and the final sync before the group goes away
    """
    def main(model, path):
        with open(path, "wb") as fh:
            torch.save(model.state_dict(), fh)
        dist.destroy_process_group()
    """,
]
HEADER = "import os\nimport shutil\nimport torch\nimport torch.distributed as dist\n"


def _same_program(source: str, options: Options) -> None:
    analysis, issues = _analyze(source, "t.py", options)
    outcome = _decide(source, "t.py", options, analysis, issues)
    if outcome.lifted or not outcome.edit_lists:
        pytest.skip("no single-pass rewrite to compare")
    assembled = assemble(outcome.edit_lists, options, analysis)
    planned = apply_plan_ast(analysis.tree, assembled.plan, assembled.symbols)
    written, _ = _rewrite(source, "t.py", options, analysis, outcome.edit_lists)
    assert ast.dump(planned) == ast.dump(ast.parse(written)), ast.unparse(planned) + "\n----\n" + written


@pytest.mark.parametrize("style", ["runtime", "inline"])
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.parent.name)
def test_fixtures(path: Path, style: str) -> None:
    _same_program(path.read_text(), Options(style=style, unsafe_fixes=True))  # type: ignore[arg-type]


@pytest.mark.parametrize("style", ["runtime", "inline"])
@pytest.mark.parametrize("code", SNIPPETS)
def test_snippets(code: str, style: str) -> None:
    _same_program(src(code, HEADER), Options(style=style, unsafe_fixes=True))  # type: ignore[arg-type]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.parent.name)
def test_validation_leaves_the_original_tree_alone(path: Path) -> None:
    """The programs the validator builds share the original's untouched statements: none of them may
    move (findings are reported at the original's positions; a moved one was reported at the guard)."""
    source = path.read_text()
    options = Options(unsafe_fixes=True)
    analysis, issues = _analyze(source, "t.py", options)
    before = ast.dump(analysis.tree.module, include_attributes=True)
    _decide(source, "t.py", options, analysis, issues)
    assert ast.dump(analysis.tree.module, include_attributes=True) == before
