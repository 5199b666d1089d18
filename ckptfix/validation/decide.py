"""Which fixes `apply` writes: every plan passes the validator before it is written (issue 13).

The findings' fixes are grouped into units that only make sense together (the guard, the barrier and
the atomic write of one save; one barrier rewrite; one final sync). All of them are validated at once
first: usually they pass, and that is the whole cost. Otherwise units are added one by one, each
validated on top of those accepted before it; a unit that fails is tried again without its barrier
(the write then re-raises its failure instead of reporting it), and refused with the validator's
reason if that fails too. Guard changes (CKP006 lifts, opt-in local-rank guards) are all-or-nothing:
the rules run again on the lifted program, and the lift plus everything the rules then ask for must
validate together, or the lift is refused and the rest goes on without it.

`check` and `apply` decide alike: both validate the program `plan_ast` builds; `apply` then also
validates what libcst wrote, which must agree.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from ckptfix.analysis.checker import Analysis, Issue
from ckptfix.analysis.plan import FIRST_PASS, Edit, WrapGuard
from ckptfix.assemble import assemble
from ckptfix.options import Options
from ckptfix.validation.plan_ast import apply_plan_ast
from ckptfix.validation.validator import Program, Verdict, validate


@dataclass(frozen=True)
class Decision:
    """What becomes of one finding's fix. `fixed`: written; `reason`: why not (refused, or held back
    as unsafe); `unsafe`: the fix rests on an assumption (written only with --unsafe-fixes)."""

    fixed: bool = False
    reason: str | None = None
    unsafe: bool = False


@dataclass
class Outcome:
    decisions: list[Decision]
    edit_lists: list[list[Edit]]  # what to write, in one pass (no guard change)
    lifted: bool = False  # the guard changes are accepted: write them first, then the rules' fixes
    # The program the validator accepted for `edit_lists` (plan_ast's): libcst's output that parses to
    # the same `ast` is that program, validated already.
    validated: ast.Module | None = None


_LINES = re.compile(r" \(line \d+\)| at line \d+")
Reanalyze = Callable[[str], tuple[Analysis, list[Issue]]]


@dataclass(frozen=True)
class _Variant:
    """Some of a unit's fixes: the issues whose findings it fixes, and its edit lists."""

    issues: tuple[int, ...]
    edits: tuple[list[Edit], ...]


@dataclass
class _Unit:
    issues: list[int]
    variants: list[_Variant]  # the whole unit first, then fallbacks with fewer fixes


def _units(issues: list[Issue], candidates: list[int]) -> list[_Unit]:
    """One unit per save (its CKP001/002/005/008 fixes), and one per other fix; fixes that share an
    edit (CKP007's unwrap and CKP003's timeout on the barrier inside it) are one unit."""
    groups: dict[object, list[int]] = {}
    owner: dict[object, object] = {}
    for index in candidates:
        issue = issues[index]
        saves = issue.code in {"CKP001", "CKP002", "CKP005", "CKP008"} and isinstance(issue.node, ast.Call)
        group: object = ("save", id(issue.node)) if saves else ("fix", index)
        for edit in issue.edits:
            where = getattr(edit, "span", None) or getattr(edit, "key", None)
            if where in owner and owner[where] != group and owner[where] in groups:
                groups.setdefault(group, []).extend(groups.pop(owner[where]))
                for key, value in list(owner.items()):
                    if value not in groups:
                        owner[key] = group
            owner.setdefault(where, group)
        groups.setdefault(group, []).append(index)
    units = [_save_unit(issues, sorted(members)) for members in groups.values()]
    # The final syncs first (a save's reported failure may need one to reach the other ranks), then
    # the saves in the order of the file, then the barrier rewrites.
    rank = {"CKP004": 0, "CKP001": 1, "CKP002": 1, "CKP005": 1, "CKP008": 1, "CKP003": 2, "CKP007": 2}
    return sorted(units, key=lambda u: (min(rank.get(issues[i].code, 3) for i in u.issues), u.issues[0]))


def _save_unit(issues: list[Issue], members: list[int]) -> _Unit:
    """The unit of one save (or one other fix), with fallbacks: without the barrier (a guarded write
    then re-raises its failure, nothing would carry it; an already guarded one keeps no try/except of
    ours, it would only re-raise), and without the fixes that rest on an assumption."""

    def variant(chosen: list[int], reraise: bool = False) -> _Variant:
        edits = [
            [replace(e, reraise=True) if reraise and isinstance(e, WrapGuard) else e for e in issues[i].edits]
            for i in chosen
        ]
        return _Variant(tuple(chosen), tuple(edits))

    safe = [i for i in members if not issues[i].unsafe]
    no_barrier = [i for i in members if issues[i].code not in {"CKP002", "CKP008"}]
    candidates = [variant(members)]
    if len(no_barrier) < len(members):
        candidates.append(variant(no_barrier, reraise=True))
    if safe and len(safe) < len(members):
        candidates.append(variant(safe))
        safe_no_barrier = [i for i in safe if i in no_barrier]
        if safe_no_barrier and len(safe_no_barrier) < len(safe):
            candidates.append(variant(safe_no_barrier, reraise=True))
    return _Unit(members, candidates)


class _Validator:
    def __init__(self, source: str, analysis: Analysis, options: Options) -> None:
        self.source = source
        self.analysis = analysis
        self.options = options
        self.before = Program(source, analysis.tree.module, options, analysis.context)
        self.last: ast.Module | None = None  # the program the latest check built

    def check(
        self,
        edit_lists: list[list[Edit]],
        analysis: Analysis | None = None,
        source: str | None = None,
        moves_only: bool = False,
    ) -> Verdict:
        """Validate the program `edit_lists` make of `analysis`'s module (default: the original)."""
        analysis = analysis or self.analysis
        assembled = assemble(edit_lists, self.options, analysis)
        module = apply_plan_ast(analysis.tree, assembled.plan, assembled.symbols)
        after = Program(
            source or self.source,
            module,
            self.options,
            reuse=self.before if analysis is self.analysis else None,
            project=self.before.ctx.project,
        )
        self.last = module
        return validate(self.before, after, inline=self.options.style == "inline", moves_only=moves_only)


def decide(
    source: str, analysis: Analysis, issues: list[Issue], options: Options, reanalyze: Reanalyze
) -> Outcome:
    """Validate the fixes of `issues`; see the module docstring."""
    decisions = [Decision() for _ in issues]
    fixable = [i for i, issue in enumerate(issues) if issue.edits]
    if not fixable:
        return Outcome(decisions, [])
    validator = _Validator(source, analysis, options)
    if not options.unsafe_fixes:  # held back whatever the validator says: no need to validate them
        for i in fixable:
            if issues[i].unsafe:
                decisions[i] = Decision(reason=issues[i].unsafe, unsafe=True)
        fixable = [i for i in fixable if not issues[i].unsafe]
    first = [i for i in fixable if any(isinstance(e, FIRST_PASS) for e in issues[i].edits)]
    if first:
        verdict = _lift_verdict(validator, issues, fixable, reanalyze)
        unsafe = _unsafe(verdict, [issues[i] for i in fixable])
        if verdict.valid and (not unsafe or options.unsafe_fixes):
            for i in fixable:
                decisions[i] = Decision(True, unsafe or None, bool(unsafe))
            return Outcome(decisions, [], lifted=True)
        for i in first:
            decisions[i] = (
                Decision(reason=_reason(verdict))
                if not verdict.valid
                else Decision(reason=unsafe, unsafe=True)
            )
        fixable = [i for i in fixable if i not in first]
    units = _units(issues, fixable)
    everything = [edits for unit in units for edits in unit.variants[0].edits]
    if everything:
        verdict = validator.check(everything)
        if verdict.valid and not _unsafe(verdict, [issues[i] for i in fixable]):
            for i in fixable:
                decisions[i] = Decision(True)
            return Outcome(decisions, everything, validated=validator.last)
        # Usually a few fixes fail: drop the ones the verdict points at, and take the rest at once.
        implicated = _implicated(units, verdict.culprits, analysis)
        rest = [unit for unit in units if all(unit is not u for u in implicated)]
        if implicated and rest:
            rest_edits = [edits for unit in rest for edits in unit.variants[0].edits]
            rest_verdict = validator.check(rest_edits)
            if rest_verdict.valid and not _unsafe(rest_verdict, [issues[i] for u in rest for i in u.issues]):
                for unit in rest:
                    for i in unit.issues:
                        decisions[i] = Decision(True)
                return _one_by_one(
                    validator, issues, implicated, options, decisions, rest_edits, validator.last
                )
    return _one_by_one(validator, issues, units, options, decisions, [], None)


def _implicated(units: list[_Unit], culprits: set[int], analysis: Analysis) -> list[_Unit]:
    """The units with an edit on a line the verdict names (the statement an edit rewrites, or after
    which it inserts: inserted code carries that statement's line)."""
    if not culprits:
        return []
    spans: dict[tuple[int, int], tuple[int, int]] = {}
    for node in analysis.tree.nodes:
        if isinstance(node, ast.stmt):
            spans[analysis.tree.start(node)] = (node.lineno, node.end_lineno or node.lineno)

    def lines(edit: Edit) -> tuple[int, int]:
        span = getattr(edit, "span", None)
        return (span[0], span[2]) if span else spans.get(getattr(edit, "key", (0, 0)), (0, 0))

    def touched(unit: _Unit) -> bool:
        return any(
            first <= line <= last
            for edits in unit.variants[0].edits
            for first, last in map(lines, edits)
            for line in culprits
        )

    return [unit for unit in units if touched(unit)]


def _one_by_one(
    validator: _Validator,
    issues: list[Issue],
    units: list[_Unit],
    options: Options,
    decisions: list[Decision],
    accepted: list[list[Edit]],
    validated: ast.Module | None,
) -> Outcome:
    """Each unit in turn on top of those accepted before it, whole or by one of its fallbacks."""
    accepted = list(accepted)
    accepted_unsafe: set[str] = set()
    for unit in units:
        held: dict[int, str] = {}  # issue -> the assumption its fix rests on, where it was held back
        refused: str | None = None
        for candidate in unit.variants:
            verdict = validator.check([*accepted, *candidate.edits])
            if not verdict.valid:
                refused = refused or _reason(verdict)
                continue
            new = Verdict(unsafe=[r for r in verdict.unsafe if r not in accepted_unsafe])
            unsafe = _unsafe(new, [issues[i] for i in candidate.issues])
            if unsafe and not options.unsafe_fixes:
                for i in candidate.issues:
                    held.setdefault(i, unsafe)
                continue
            accepted_unsafe.update(verdict.unsafe)
            accepted.extend(candidate.edits)
            validated = validator.last
            for i in candidate.issues:
                decisions[i] = Decision(True, unsafe or None, bool(unsafe))
            break
        for i in unit.issues:
            if decisions[i].fixed:
                continue
            if i in held and (issues[i].unsafe or refused is None):
                decisions[i] = Decision(reason=held[i], unsafe=True)
            else:
                decisions[i] = Decision(reason=refused or held.get(i) or "the rewrite could not be validated")
    return Outcome(decisions, accepted, validated=validated)


def _unsafe(verdict: Verdict, issues: list[Issue]) -> str:
    """The assumptions a set of fixes rests on, in words ("" when none)."""
    reasons = [*verdict.unsafe, *(issue.unsafe for issue in issues if issue.unsafe)]
    return "; ".join(dict.fromkeys(r for r in reasons if r))


def _reason(verdict: Verdict) -> str:
    return verdict.reasons[0] if verdict.reasons else "the rewrite could not be validated"


def _lift_verdict(
    validator: _Validator, issues: list[Issue], fixable: list[int], reanalyze: Reanalyze
) -> Verdict:
    """The guard changes, and everything the rules then ask for on the lifted program, validated
    together against the original."""
    edits: list[list[Edit]] = [[e for e in issues[i].edits if isinstance(e, FIRST_PASS)] for i in fixable]
    edits = [e for e in edits if e]
    # Where the freed collectives go is the guard change's alone (the rules' second pass only adds
    # guards and barriers): refused there, no need to run the rules again on the lifted program.
    moved = validator.check(edits, moves_only=True)
    if not moved.valid:
        return moved
    assembled = assemble(edits, validator.options, validator.analysis)
    lifted_module = apply_plan_ast(validator.analysis.tree, assembled.plan, assembled.symbols)
    lifted_source = ast.unparse(lifted_module)
    lifted_analysis, lifted_issues = reanalyze(lifted_source)

    def manual(found: list[Issue], code: str) -> int:
        return sum(issue.code == code and not issue.edits for issue in found)

    if any(manual(lifted_issues, code) > manual(issues, code) for code in ("CKP001", "CKP006")):
        return Verdict(
            ["with the guard changed, a write could not be guarded or a collective would stay guarded"]
        )
    verdict = validator.check([i.edits for i in lifted_issues if i.edits], lifted_analysis, lifted_source)
    verdict.unsafe.extend(i.unsafe for i in lifted_issues if i.unsafe is not None)
    # Lines of the lifted program (re-printed from the `ast`) are not the file's: say what, not where.
    return Verdict([_LINES.sub("", r) for r in verdict.reasons], [_LINES.sub("", r) for r in verdict.unsafe])


def validate_edits(
    source: str, edit_lists: list[list[Edit]], options: Options, analysis: Analysis
) -> Verdict:
    """The validator's verdict on an edit plan for `source` (whoever made it): what `decide` asks of
    every plan, open to plans the planner would never make (the mutation tests feed it wrong ones)."""
    return _Validator(source, analysis, options).check(edit_lists)
