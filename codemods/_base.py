"""The one codemod command class every rule module specialises: it runs ckptfix's analysis with only
its own rule selected, so each rule can run alone through `python -m libcst.tool codemod`."""

from __future__ import annotations

import argparse
from typing import ClassVar

import libcst as cst
from libcst.codemod import CodemodCommand, CodemodContext

from ckptfix.api import fix_source
from ckptfix.options import Options


class RuleCodemod(CodemodCommand):
    """Apply the fix of rule `CODE`; findings it cannot fix become codemod warnings."""

    CODE: ClassVar[str] = ""

    @staticmethod
    def add_args(arg_parser: argparse.ArgumentParser) -> None:
        arg_parser.add_argument("--style", choices=("runtime", "inline"), default="runtime")
        arg_parser.add_argument("--barrier-timeout", type=float, default=120.0)
        arg_parser.add_argument("--final-timeout", type=float, default=180.0)
        arg_parser.add_argument("--assume-distributed", action="store_true")

    def __init__(
        self,
        context: CodemodContext,
        style: str = "runtime",
        barrier_timeout: float = 120.0,
        final_timeout: float = 180.0,
        assume_distributed: bool = False,
    ) -> None:
        super().__init__(context)
        self.options = Options(
            select=frozenset({self.CODE}),
            style="inline" if style == "inline" else "runtime",
            barrier_timeout=barrier_timeout,
            final_timeout=final_timeout,
            assume_distributed=assume_distributed,
        )

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        result = fix_source(tree.code, self.context.filename or "<string>", self.options)
        for finding in result.findings:
            if not finding.fixable:
                self.warn(f"{finding.line}:{finding.col}: {finding.code} {finding.message}")
        if result.new_source is None:
            return tree
        return cst.parse_module(result.new_source)
