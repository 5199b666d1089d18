"""CKP005 as a libcst codemod.

Run: `python -m libcst.tool codemod atomic_save.AtomicSaveCommand FILES`.
"""

from codemods._base import RuleCodemod


class AtomicSaveCommand(RuleCodemod):
    DESCRIPTION = "CKP005: Write checkpoints atomically: temp file, fsync, rename."
    CODE = "CKP005"
