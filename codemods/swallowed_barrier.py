"""CKP007 as a libcst codemod.

Run: `python -m libcst.tool codemod swallowed_barrier.SwallowedBarrierCommand FILES`.
"""

from codemods._base import RuleCodemod


class SwallowedBarrierCommand(RuleCodemod):
    DESCRIPTION = "CKP007: Let barrier errors raise instead of being swallowed by try/except."
    CODE = "CKP007"
