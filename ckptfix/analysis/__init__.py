"""The analysis, on Python's `ast`: one walk per file, exact positions, no libcst, no torch.

Modules, one job each: `tree` (parents, positions, blocks), `names` (resolution through imports),
`catalog` (saves, barriers, collectives, guard idioms, as data), `guards` (main-process conditions),
`saves` (which calls write checkpoints), `collectives`, `callgraph` (helpers, guards at call sites),
`distributed` (is this training code), `plan` (position-keyed edits), `checker` (runs the rules of
`rules/`: save_rules CKP001/005, placement CKP002, barrier_rules CKP003/007, final_sync CKP004,
collective_rules CKP006).
"""
