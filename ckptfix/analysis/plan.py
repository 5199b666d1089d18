"""Edit plans: what the analysis asks the libcst rewriter to do, keyed by source position.

Positions are (line, character column) of a statement's first token, or the full span of a call, as
libcst's PositionProvider reports them. Code templates name the symbols they need in braces
(`{is_main_process}`, `{dist}`); the rewriter fills in the module's own names for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ckptfix.analysis.saves import ArgRef

Key = tuple[int, int]
Span = tuple[int, int, int, int]

# Symbols a template may use, and what each one is.
RUNTIME_SYMBOLS = frozenset(
    {"is_main_process", "init_sync", "checkpoint_barrier", "final_sync", "atomic_save", "report_save_failure"}
)
MODULE_SYMBOLS = {"dist": "torch.distributed", "os": "os", "datetime": "datetime", "logging": "logging"}


@dataclass(frozen=True)
class WrapGuard:
    """CKP001: put the statement at `key` (plus `followers` success-only statements after it) under
    the main-process guard, in a try/except that reports the failure (CKP008, already guarded: only
    the try/except). `hoist` moves the object
    argument (which may gather state collectively) into `hoist_name` before the guard."""

    key: Key
    followers: int
    dest: ArgRef | None
    obj: ArgRef | None
    hoist_name: str | None
    preceders: int  # statements just before `key` that move under the guard with it (they build
    # state that only the main process may read, like a consolidated ZeroRedundancyOptimizer's)
    exc_name: str | None  # None: the handler does not need the exception (logging.exception)
    test: str | None  # template of the guard's condition; None: already guarded, only the try/except
    handler: str  # template of the except body; `__path__` stands for the destination
    symbols: frozenset[str]
    # Re-raise after reporting: no barrier follows on every path to carry the failure to the other
    # ranks, so swallowing it would let the job (or a one-shot script) go on without its checkpoint.
    reraise: bool = False


@dataclass(frozen=True)
class InlineAtomic:
    """CKP005, inline style: write to a temp file in the same directory, fsync, os.replace."""

    key: Key
    dest: ArgRef
    path_name: str | None  # set when the destination must be evaluated once into a variable
    tmp_name: str
    handle_name: str
    symbols: frozenset[str] = frozenset({"os"})


@dataclass(frozen=True)
class UnwrapTry:
    """CKP007: replace a try/except that swallows a barrier's error by the try's body."""

    key: Key
    symbols: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SplitGuard:
    """CKP006: the first `lifted` statements of the main-process `if` at `key` reach collectives; they
    move out from under the main-process test. `test` is what remains of the condition (the other
    `and` clauses; None: nothing, the statements move into the enclosing block); the rest of the body
    stays under `main_test`. The rewrite runs in a first pass, and the analysis then runs again on its
    result, so that the writes inside a helper that now runs on every rank get CKP001's guard."""

    key: Key
    lifted: int
    test: str | None
    main_test: str
    symbols: frozenset[str] = frozenset()


@dataclass(frozen=True)
class GuardTest:
    """CKP001 with `rewrite_local_rank_guards`: the test of the `if` at `key` becomes `test` (its
    local-rank clause replaced by the main-process test). Applied in the first pass, like SplitGuard:
    the rules then see a global guard and add what a guarded write needs."""

    key: Key
    test: str
    symbols: frozenset[str]


@dataclass(frozen=True)
class Insert:
    """Insert template code before or after the statement at `key`. Inserts sharing a `group` and a
    template collapse into the last one (several saves, one barrier)."""

    key: Key
    after: bool
    template: str
    symbols: frozenset[str]
    group: tuple[int, ...] | None = None


@dataclass(frozen=True)
class CallEdit:
    """Rewrite the call spanning `span`: new callee, arguments moved to positions, keywords kept or
    added, a timeout wrapped in timedelta."""

    span: Span
    func: str | None = None  # template of the new callee
    positional: tuple[ArgRef, ...] = ()  # arguments that must become the first positional ones
    keep_keywords: frozenset[str] | None = None  # None keeps all keywords
    add_keyword: tuple[str, str] | None = None  # (name, value template) appended when absent
    wrap_timeout: str | None = None  # template with `__value__` wrapping the timeout's value
    symbols: frozenset[str] = frozenset()


Edit = WrapGuard | InlineAtomic | UnwrapTry | SplitGuard | GuardTest | Insert | CallEdit
# Edits applied in a first pass, before the rules run again on the result.
FIRST_PASS = (SplitGuard, GuardTest)


@dataclass
class Plan:
    """All edits of one rewrite."""

    wraps: dict[Key, WrapGuard] = field(default_factory=dict)
    atomics: dict[Key, InlineAtomic] = field(default_factory=dict)
    unwraps: dict[Key, UnwrapTry] = field(default_factory=dict)
    splits: dict[Key, SplitGuard] = field(default_factory=dict)
    tests: dict[Key, GuardTest] = field(default_factory=dict)
    before: dict[Key, list[Insert]] = field(default_factory=dict)
    after: dict[Key, list[Insert]] = field(default_factory=dict)
    calls: dict[Span, CallEdit] = field(default_factory=dict)

    def add(self, edit: Edit) -> None:
        if isinstance(edit, WrapGuard):
            self.wraps[edit.key] = edit
        elif isinstance(edit, InlineAtomic):
            self.atomics[edit.key] = edit
        elif isinstance(edit, UnwrapTry):
            self.unwraps[edit.key] = edit
        elif isinstance(edit, SplitGuard):
            self.splits[edit.key] = edit
        elif isinstance(edit, GuardTest):
            self.tests[edit.key] = edit
        elif isinstance(edit, Insert):
            table = self.after if edit.after else self.before
            inserts = table.setdefault(edit.key, [])
            if all(existing.template != edit.template for existing in inserts):
                inserts.append(edit)
        else:
            self.calls[edit.span] = edit

    def statement_keys(self) -> set[Key]:
        return (
            set(self.wraps)
            | set(self.atomics)
            | set(self.unwraps)
            | set(self.splits)
            | set(self.tests)
            | set(self.before)
            | set(self.after)
        )
