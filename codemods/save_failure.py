"""CKP008 as a libcst codemod.

Run: `python -m libcst.tool codemod save_failure.SaveFailureCommand FILES`.
"""

from codemods._base import RuleCodemod


class SaveFailureCommand(RuleCodemod):
    DESCRIPTION = (
        "CKP008: Report a failed main-process checkpoint write instead of letting it stop the writer."
    )
    CODE = "CKP008"
