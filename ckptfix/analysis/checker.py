"""The rules: walk one module's `ast`, produce issues (a finding plus the edits that fix it).

CKP001 unguarded save, CKP002 no barrier after a checkpoint, CKP003 numeric barrier timeout, CKP004 no
final sync, CKP005 non-atomic write, CKP006 collective only the main process reaches, CKP007 swallowed
barrier error, CKP008 main-process write with no error handling. The edits never put a collective
under a guard and never put a barrier inside one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ckptfix.analysis.distributed import is_distributed
from ckptfix.analysis.names import Names
from ckptfix.analysis.plan import Key
from ckptfix.analysis.rules.barrier_rules import BarrierRules
from ckptfix.analysis.rules.collective_rules import CollectiveRules
from ckptfix.analysis.rules.context import Issue, RuleContext
from ckptfix.analysis.rules.final_sync import FinalSyncRules
from ckptfix.analysis.rules.save_rules import SaveRules
from ckptfix.analysis.saves import SaveFinder
from ckptfix.analysis.tree import Tree
from ckptfix.options import Options
from ckptfix.project.view import ProjectView

__all__ = ["Analysis", "Issue", "analyze"]


@dataclass
class Analysis:
    tree: Tree
    names: Names
    issues: list[Issue]
    # init_process_group(...) statements with no init_sync() after them (runtime style needs one).
    init_keys: list[Key]
    # What the rules learned of the module (guards, call graph); None when it is not distributed code.
    context: RuleContext | None = None
    # Why the module is analysed although nothing in it says it is distributed code: it tests a
    # main-process predicate of another file of the project (its fixes are then unsafe).
    distributed_through: str | None = None


def analyze(
    source: str, module: ast.Module, options: Options, project: ProjectView | None = None
) -> Analysis:
    """Run every selected rule over one parsed module; `project`: what the other files of its project
    say about the names it imports and the callers of its functions (ckptfix.project)."""
    tree = Tree(source, module)
    names = Names(module, tree)
    distributed = options.assume_distributed or is_distributed(tree, names)
    through = None if distributed or project is None else project.distributed
    if not (distributed or through):
        return Analysis(tree, names, [], [])
    checker = _Checker(tree, names, options, project)
    checker.run()
    return Analysis(tree, names, checker.issues, checker.init_keys, checker, through)


def rule_context(
    tree: Tree, names: Names, options: Options, project: ProjectView | None = None
) -> RuleContext:
    """What the rules know of a module (guards, call graph, uniform tests), without running them:
    the validator reads the program a plan produces through it."""
    return _Checker(tree, names, options, project)


class _Checker(SaveRules, BarrierRules, FinalSyncRules, CollectiveRules):
    """All rules over one module."""

    def run(self) -> None:
        saves = [
            s
            for s in SaveFinder(self.tree, self.names, self.options.extra_save_functions, self.project).find()
        ]
        checkpoints = [s for s in saves if not s.per_rank and not s.in_memory]
        for save in checkpoints:
            self._check_save(save)
        # One pass in the order of the walk (the order of the issues); an exact type lookup, since
        # `ast.parse` builds no subclasses, passes over the other nodes at little cost.
        checks = {
            ast.Call: self._check_call,
            ast.Try: self._check_swallowed,
            ast.Break: self._check_divergent_exit,
            ast.Assign: self._check_divergent_exit,
        }
        for node in self.tree.nodes:
            check = checks.get(type(node))
            if check is not None:
                check(node)  # type: ignore[operator]
        self._check_final_sync(bool(checkpoints))

    def _check_call(self, call: ast.Call) -> None:
        self._check_barrier_timeout(call)
        self._check_collective(call)
