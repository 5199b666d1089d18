"""libcst codemod commands, one rule per module, runnable through `python -m libcst.tool codemod`."""
