"""CKP002 as a libcst codemod.

Run: `python -m libcst.tool codemod checkpoint_barrier.CheckpointBarrierCommand FILES`.
"""

from codemods._base import RuleCodemod


class CheckpointBarrierCommand(RuleCodemod):
    DESCRIPTION = "CKP002: Insert one barrier with a real timeout after each checkpoint event."
    CODE = "CKP002"
