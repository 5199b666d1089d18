"""Translation validation of rewrites (issue 13): check the program a plan produces against the one it
was given, with the rank as a symbol, instead of trusting the planner.

`ranks` says which branch each kind of rank takes; `trace` runs one module's functions once per kind of
rank and records the barriers and collectives met (in order) and the side effects reached; `plan_ast`
applies an edit plan to the `ast` (for `check`, which never loads libcst); `validator` compares before
and after and says, in words, why a rewrite is refused.
"""
