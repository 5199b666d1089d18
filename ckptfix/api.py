"""The programmatic entry point the CLI and the codemods use: source text in, findings and new text out.

Analysis runs on `ast` (fast, exact positions); libcst is imported only when a file needs rewriting.
Nothing here imports torch.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, replace

from ckptfix import packages, prefilter, testfiles
from ckptfix.analysis import catalog
from ckptfix.analysis.checker import Analysis, Issue, analyze
from ckptfix.analysis.plan import FIRST_PASS, Edit
from ckptfix.analysis.tree import Tree
from ckptfix.assemble import assemble, from_import
from ckptfix.findings import Finding
from ckptfix.options import Options
from ckptfix.project.view import ProjectView
from ckptfix.suppress import Suppressions
from ckptfix.validation.decide import Decision, Outcome, decide
from ckptfix.validation.validator import Program, validate

_BOM = "\ufeff"


# Options are frozen, so one shared default is safe.
DEFAULT_OPTIONS = Options()


class SourceError(Exception):
    """The source cannot be analysed (undecodable or not valid Python); the message says why."""


@dataclass(frozen=True)
class FixResult:
    """Findings of the original source (`fixable`: fixed by this run) and the new text (None: unchanged)."""

    findings: list[Finding]
    new_source: str | None


def might_need_work(data: bytes, options: Options = DEFAULT_OPTIONS) -> bool:
    """Cheap byte prefilter: False means the file cannot have findings, so it need not be parsed
    (ckptfix.prefilter says how)."""
    return prefilter.might_need_work(data, options)


def _parse(source: str, path: str) -> ast.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not ours to report
            return ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise SourceError(f"syntax error at line {exc.lineno}: {exc.msg}") from exc
    except (ValueError, UnicodeError) as exc:
        raise SourceError(f"cannot parse: {exc}") from exc


def _analyze(
    source: str, path: str, options: Options, project: ProjectView | None = None
) -> tuple[Analysis, list[Issue]]:
    analysis = analyze(source, _parse(source, path), options, project)
    if not analysis.issues:
        return analysis, []
    suppressions = Suppressions(source)
    issues = [i for i in analysis.issues if not suppressions.suppressed(i.code, *i.lines)]
    if testfiles.is_test_file(path):
        issues = [replace(i, unsafe=i.unsafe or testfiles.REASON) if i.edits else i for i in issues]
    elif options.style == "runtime" and (package := packages.installable_package(path)) is not None:
        why = packages.reason(*package)
        issues = [replace(i, unsafe=i.unsafe or why) if i.edits else i for i in issues]
    if analysis.distributed_through:
        # Nothing in the file says it runs distributed; only another file's predicate does.
        reason = (
            f"the file is taken for distributed code only because it uses {analysis.distributed_through}, "
            "a main-process test of another file"
        )
        issues = [replace(i, unsafe=i.unsafe or reason) if i.edits else i for i in issues]
    return analysis, issues


def _findings(path: str, tree: Tree, issues: list[Issue], decisions: list[Decision]) -> list[Finding]:
    findings = set()
    for issue, decision in zip(issues, decisions, strict=True):
        line, col = tree.start(issue.node)
        message = issue.message
        if decision.reason and not decision.fixed:
            if decision.unsafe:
                message += f" (unsafe fix, written only with --unsafe-fixes: {decision.reason})"
            else:
                message += f" (not rewritten automatically: {decision.reason})"
        elif decision.fixed and decision.unsafe:
            message += f" (unsafe fix: {decision.reason})"
        findings.add(Finding(path, line, col + 1, issue.code, message, decision.fixed, decision.unsafe))
    return sorted(findings, key=lambda f: (f.line, f.col, f.code, f.message))


def _decide(
    source: str,
    path: str,
    options: Options,
    analysis: Analysis,
    issues: list[Issue],
    project: ProjectView | None = None,
) -> Outcome:
    return decide(source, analysis, issues, options, lambda text: _analyze(text, path, options, project))


def check_source(
    source: str,
    path: str = "<string>",
    options: Options = DEFAULT_OPTIONS,
    project: ProjectView | None = None,
) -> list[Finding]:
    """Findings for one file's text; `fixable` says whether `fix_source` would rewrite each.

    Fixability is the validator's (ckptfix.validation): the plan is applied to the `ast` and checked
    with the rank as a symbol, so `check` says which fixes `apply` refuses, and why, without libcst.
    `project`: what the other files of its project say (ckptfix.project); None: the file alone.
    """
    source = source.removeprefix(_BOM)
    analysis, issues = _analyze(source, path, options, project)
    outcome = _decide(source, path, options, analysis, issues, project)
    return _findings(path, analysis.tree, issues, outcome.decisions)


def fix_source(
    source: str,
    path: str = "<string>",
    options: Options = DEFAULT_OPTIONS,
    project: ProjectView | None = None,
) -> FixResult:
    """Rewrite every fixable, unsuppressed finding of one file's text whose fix the validator accepts.

    One pass, except where a fix changes a guard (CKP006 lifts main-process guards off collectives;
    CKP001 may make a local-rank guard global): those edits run first, and the rules run again on the
    result (a helper that now runs on every rank needs its writes guarded). What libcst wrote is
    validated once more against the original before it is handed back.
    """
    bom = _BOM if source.startswith(_BOM) else ""
    source = source.removeprefix(_BOM)
    analysis, issues = _analyze(source, path, options, project)
    outcome = _decide(source, path, options, analysis, issues, project)
    decisions = outcome.decisions
    if not any(decision.fixed for decision in decisions):
        return FixResult(_findings(path, analysis.tree, issues, decisions), None)
    if outcome.lifted:
        lifted = _lift(source, path, options, analysis, issues, project)
        if lifted is None:
            raise RuntimeError(f"ckptfix could not apply the guard changes it validated in {path}")
        lifted_source, lifted_analysis, lifted_issues = lifted
        edit_lists = [issue.edits for issue in lifted_issues if issue.edits]
        new_source, _ = _rewrite(lifted_source, path, options, lifted_analysis, edit_lists)
        new_source = _merge_runtime_imports(new_source)
    else:
        new_source, applied = _rewrite(source, path, options, analysis, outcome.edit_lists)
        if len(applied) != len(outcome.edit_lists):
            raise RuntimeError(f"ckptfix could not apply every edit it planned in {path}")
    written = _parse(new_source, path)
    if outcome.validated is None or ast.dump(outcome.validated) != ast.dump(written):
        # Not the program the validator accepted (a guard change was written in two passes, or the
        # two appliers disagree): validate what was written.
        verdict = validate(
            Program(source, analysis.tree.module, options, analysis.context),
            Program(new_source, written, options, project=project),
            inline=options.style == "inline",
        )
        if not verdict.valid:  # a bug of ours: the rewrite is not what was validated
            raise RuntimeError(f"ckptfix's rewrite of {path} failed its own validation: {verdict.reasons[0]}")
    findings = _findings(path, analysis.tree, issues, decisions)
    return FixResult(findings, bom + new_source if new_source != source else None)


def _lift(
    source: str,
    path: str,
    options: Options,
    analysis: Analysis,
    issues: list[Issue],
    project: ProjectView | None,
) -> tuple[str, Analysis, list[Issue]] | None:
    """Source with the guards changed (lifted off collectives, made global), and the rules' view of it."""
    edits: list[list[Edit]] = [[e for e in issue.edits if isinstance(e, FIRST_PASS)] for issue in issues]
    lifted_source, applied = _rewrite(source, path, options, analysis, [e for e in edits if e])
    if not applied:
        return None
    lifted_analysis, lifted_issues = _analyze(lifted_source, path, options, project)
    return lifted_source, lifted_analysis, lifted_issues


def _merge_runtime_imports(source: str) -> str:
    """One `from ckptfix.runtime import ...` where each pass added its own next to the other."""
    module = ast.parse(source)
    body = module.body
    for index, stmt in enumerate(body[:-1]):
        if not _is_runtime_import(stmt):
            continue
        run = [stmt]
        for follower in body[index + 1 :]:
            if not _is_runtime_import(follower) or follower.lineno != run[-1].end_lineno + 1:  # type: ignore[operator]
                break
            run.append(follower)
        if len(run) > 1:
            names = sorted({_alias_text(a) for s in run for a in s.names})  # type: ignore[attr-defined]
            lines = source.splitlines(keepends=True)
            newline = lines[stmt.lineno - 1][len(lines[stmt.lineno - 1].rstrip("\r\n")) :] or "\n"
            merged = from_import(catalog.RUNTIME_MODULE, names).replace("\n", newline) + newline
            return "".join([*lines[: stmt.lineno - 1], merged, *lines[run[-1].end_lineno or 0 :]])
    return source


def _is_runtime_import(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.ImportFrom) and stmt.module == catalog.RUNTIME_MODULE and stmt.level == 0


def _alias_text(alias: ast.alias) -> str:
    return alias.name if alias.asname is None else f"{alias.name} as {alias.asname}"


def _rewrite(
    source: str, path: str, options: Options, analysis: Analysis, edit_lists: list[list[Edit]]
) -> tuple[str, set[int]]:
    """Apply the edit lists with libcst; the new text and the indexes of the lists applied in full."""
    from libcst import ParserSyntaxError  # libcst only when something is rewritten

    from ckptfix.rewrite import apply_plan

    assembled = assemble(edit_lists, options, analysis)
    try:
        new_source, applied = apply_plan(source, assembled.plan, assembled.symbols)
    except ParserSyntaxError as exc:  # valid for `ast` but not for libcst's grammar
        raise SourceError(
            f"cannot rewrite, libcst does not parse it: {exc.message} (line {exc.raw_line})"
        ) from exc
    if assembled.import_key is not None and assembled.import_key not in applied:
        raise RuntimeError(f"ckptfix could not place its imports in {path}")
    try:
        _parse(new_source, path)
    except SourceError as exc:  # a bug of ours: never hand back broken code
        raise RuntimeError(f"ckptfix produced invalid code for {path}: {exc}") from exc
    return new_source, assembled.applied_lists(edit_lists, applied)
