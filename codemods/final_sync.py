"""CKP004 as a libcst codemod.

Run: `python -m libcst.tool codemod final_sync.FinalSyncCommand FILES`.
"""

from codemods._base import RuleCodemod


class FinalSyncCommand(RuleCodemod):
    DESCRIPTION = "CKP004: Insert the final sync before destroy_process_group, init_sync after init."
    CODE = "CKP004"
