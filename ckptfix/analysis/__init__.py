"""The analysis, on Python's `ast`: one walk per file, exact positions, no libcst, no torch.

Modules, one job each: `tree` (parents, positions, blocks), `names` (resolution through imports),
`catalog` (saves, barriers, collectives, guard idioms, as data), `guards` (main-process conditions),
`saves` (which calls write checkpoints), `collectives`, `callgraph` (helpers, guards at call sites),
`distributed` (is this training code), `plan` (position-keyed edits), `checker` (the rules).
"""
