"""Options shared by the analysis, the codemods and the CLI (the CLI fills them from flags and config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Style = Literal["runtime", "inline"]


@dataclass(frozen=True)
class Options:
    """What a run may find and how it rewrites.

    `select` is the set of rule codes that are enabled (already expanded from prefixes and ALL).
    """

    select: frozenset[str] = frozenset(
        {"CKP001", "CKP002", "CKP003", "CKP004", "CKP005", "CKP006", "CKP007", "CKP008"}
    )
    style: Style = "runtime"
    barrier_timeout: float = 120.0
    final_timeout: float = 180.0
    assume_distributed: bool = False
    # Dotted names of user callables that write checkpoints (e.g. "mylib.io.save_ckpt").
    extra_save_functions: tuple[str, ...] = field(default_factory=tuple)
    # Dotted names of user predicates meaning "this is the main process" (e.g. "mylib.dist.is_chief").
    extra_main_predicates: tuple[str, ...] = field(default_factory=tuple)
    # Opt-in: turn a local-rank guard around a save (one writer per node) into the global main-process
    # test. Off by default: on node-local disks one writer per node is what people want.
    rewrite_local_rank_guards: bool = False
    # Write fixes that rest on an assumption the analysis cannot prove (ruff's unsafe fixes).
    unsafe_fixes: bool = False
