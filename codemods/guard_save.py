"""CKP001 as a libcst codemod.

Run: `python -m libcst.tool codemod guard_save.GuardSaveCommand FILES`.
"""

from codemods._base import RuleCodemod


class GuardSaveCommand(RuleCodemod):
    DESCRIPTION = "CKP001: Guard checkpoint writes on the main process, in try/except reporting failures."
    CODE = "CKP001"
