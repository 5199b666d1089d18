"""CKP003 as a libcst codemod.

Run: `python -m libcst.tool codemod barrier_timeout.BarrierTimeoutCommand FILES`.
"""

from codemods._base import RuleCodemod


class BarrierTimeoutCommand(RuleCodemod):
    DESCRIPTION = "CKP003: Turn barriers given a numeric timeout into barriers that really wait."
    CODE = "CKP003"
