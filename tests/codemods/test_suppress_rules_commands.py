"""Suppression comments, the rule registry, the libcst commands, and api error handling."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from libcst.codemod import CodemodContext, CodemodTest

from ckptfix.api import SourceError, check_source, fix_source, might_need_work
from ckptfix.options import Options
from ckptfix.rules import RULES
from codemods.atomic_save import AtomicSaveCommand
from codemods.guard_save import GuardSaveCommand
from codemods.save_failure import SaveFailureCommand
from tests.codemods.helpers import codes, rewrite, src


@pytest.mark.parametrize(
    "code",
    [
        "def f(m, p):\n    torch.save(m, p)  # ckptfix: ignore\n",
        "def f(m, p):\n    torch.save(m, p)  # ckptfix: ignore[CKP001, CKP002,CKP005]\n",
        "def f(m, p):\n    torch.save(m, p)  # noqa: CKP001,CKP002,CKP005\n",
        "def f(m, p):\n    torch.save(m, p)  # noqa\n",
        "def f(m, p):\n    # ckptfix: ignore\n    torch.save(m, p)\n",
        "def f(m, p):\n    torch.save(\n        m,\n        p,  # ckptfix: ignore\n    )\n",
    ],
)
def test_suppressed(code: str) -> None:
    source = src(code)
    assert codes(source) == []
    assert rewrite(source) == source


@pytest.mark.parametrize(
    "code",
    [
        "def f(m, p):\n    torch.save(m, p)  # noqa: E501\n",
        "def f(m, p):\n    torch.save(m, p)  # ckptfix: ignore[CKP003]\n",
        "def f(m, p):\n    x = 1  # ckptfix: ignore\n\n    torch.save(m, p)\n",
        "def f(m, p):\n    s = '# ckptfix: ignore'; torch.save(m, p)\n",
    ],
)
def test_not_suppressed(code: str) -> None:
    assert "CKP001" in codes(src(code))


def test_partial_suppression_fixes_the_rest() -> None:
    source = src("def f(m, p):\n    torch.save(m, p)  # ckptfix: ignore[CKP005]\n")
    assert codes(source) == ["CKP001", "CKP002"]
    after = rewrite(source)
    assert "torch.save(m, p)  # ckptfix: ignore[CKP005]" in after and "atomic_save" not in after


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_examples_show_the_rule(code: str) -> None:
    rule = RULES[code]
    assert rule.code == code and rule.name and rule.summary and rule.explanation
    before, after = src(rule.before), src(rule.after)
    assert codes(before, select=frozenset({code})), f"{code}'s `before` example has no {code} finding"
    assert code not in codes(after)
    # CKP008's try/except reports the failure to the barrier after it: its example comes with CKP002.
    select = frozenset({code, "CKP002"} if code == "CKP008" else {code})
    result = fix_source(before, options=Options(select=select))
    assert (result.new_source is not None) == rule.fixable


def test_syntax_error_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="syntax error at line 2"):
        check_source("import torch\ndef f(:\n")
    with pytest.raises(SourceError):
        fix_source("print 'python 2'\n")


def test_prefilter() -> None:
    assert might_need_work(b"import torch.distributed as dist\ntorch.save(m, p)\n")
    assert not might_need_work(b"import torch\ntorch.save(m, p)\n")
    assert not might_need_work(b"import torch.distributed as dist\nx = 1\n")
    assert might_need_work(b"import torch\ntorch.save(m, p)\n", Options(assume_distributed=True))
    assert might_need_work(
        b"import torch.distributed\nwrite_it(m)\n", Options(extra_save_functions=("lib.write_it",))
    )


def test_inline_style_adds_missing_imports_once() -> None:
    source = "import torch\nimport torch.distributed\ndef f(m, p):\n    torch.save(m, p)\nf(None, 'c.pt')\n"
    after = rewrite(source, style="inline")
    header = after.split("def f")[0]
    assert header == "import torch\nimport torch.distributed\nimport datetime\nimport logging\nimport os\n"
    assert "if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:" in after


def test_inline_style_uses_existing_alias_and_avoids_clashes() -> None:
    source = "import torch\nimport torch.distributed as tdist\ndist = 3\ndef f(m, p):\n    torch.save(m, p)\n"
    after = rewrite(source, style="inline", select=frozenset({"CKP001"}))
    assert "if not tdist.is_initialized() or tdist.get_rank() == 0:" in after
    assert "import torch.distributed as" not in after.replace("import torch.distributed as tdist", "")


class TestGuardSaveCommand(CodemodTest):
    TRANSFORM = GuardSaveCommand

    def test_runs_only_its_rule(self) -> None:
        before = textwrap.dedent(
            """
            import torch
            import torch.distributed as dist

            def f(m):
                torch.save(m, "c.pt")
            """
        )
        after = textwrap.dedent(
            """
            import torch
            import torch.distributed as dist
            from ckptfix.runtime import is_main_process, report_save_failure

            def f(m):
                if is_main_process():
                    try:
                        torch.save(m, "c.pt")
                    except Exception as exc:
                        report_save_failure("c.pt", exc)
                        raise
            """
        )
        self.assertCodemod(before, after)

    def test_inline_option_and_untouched_file(self) -> None:
        untouched = "import torch\n\ndef f(m, p):\n    torch.save(m, p)\n"
        self.assertCodemod(untouched, untouched, style="inline")


class TestSaveFailureCommand(CodemodTest):
    TRANSFORM = SaveFailureCommand

    def test_guarded_write_gains_try_except_only(self) -> None:
        # f's callers are unseen: no later checkpoint is known to make up for a failure, so it re-raises.
        before = textwrap.dedent(
            """
            import torch
            import torch.distributed as dist
            from ckptfix.runtime import checkpoint_barrier

            def f(m, p):
                if dist.get_rank() == 0:
                    torch.save(m, p)
                checkpoint_barrier(timeout=120)
            """
        )
        after = textwrap.dedent(
            """
            import torch
            import torch.distributed as dist
            from ckptfix.runtime import checkpoint_barrier
            from ckptfix.runtime import report_save_failure

            def f(m, p):
                if dist.get_rank() == 0:
                    try:
                        torch.save(m, p)
                    except Exception as exc:
                        report_save_failure(p, exc)
                        raise
                checkpoint_barrier(timeout=120)
            """
        )
        self.assertCodemod(before, after)


def test_atomic_command_warns_about_what_it_cannot_fix() -> None:
    context = CodemodContext(filename="x.py")
    command = AtomicSaveCommand(context)
    source = src("def f(m, p):\n    torch.save(m, *p)\n")
    import libcst as cst

    assert command.transform_module(cst.parse_module(source)).code == source
    assert any("CKP005" in warning for warning in context.warnings)


def test_libcst_tool_runs_the_commands(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent.parent
    target = tmp_path / "train.py"
    target.write_text(src("def f():\n    dist.barrier(timeout=120)\n"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "libcst.tool",
            "codemod",
            "--no-format",
            "barrier_timeout.BarrierTimeoutCommand",
            str(target),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "    checkpoint_barrier(timeout=120)\n" in target.read_text()
