"""The programmatic entry point the CLI and the codemods use: source text in, findings and new text out.

Analysis runs on `ast` (fast, exact positions); libcst is imported only when a file needs rewriting.
Nothing here imports torch.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, replace

from ckptfix import prefilter
from ckptfix.analysis import catalog
from ckptfix.analysis.checker import Analysis, Issue, analyze
from ckptfix.analysis.names import Names
from ckptfix.analysis.plan import (
    FIRST_PASS,
    MODULE_SYMBOLS,
    RUNTIME_SYMBOLS,
    CallEdit,
    Edit,
    Insert,
    Key,
    Plan,
)
from ckptfix.analysis.tree import Tree
from ckptfix.findings import Finding
from ckptfix.options import Options
from ckptfix.suppress import Suppressions

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


def _analyze(source: str, path: str, options: Options) -> tuple[Analysis, list[Issue]]:
    analysis = analyze(source, _parse(source, path), options)
    if not analysis.issues:
        return analysis, []
    suppressions = Suppressions(source)
    issues = [i for i in analysis.issues if not suppressions.suppressed(i.code, *i.lines)]
    return analysis, issues


def _findings(path: str, tree: Tree, issues: list[Issue], fixed: set[int]) -> list[Finding]:
    findings = set()
    for index, issue in enumerate(issues):
        line, col = tree.start(issue.node)
        findings.add(Finding(path, line, col + 1, issue.code, issue.message, index in fixed))
    return sorted(findings, key=lambda f: (f.line, f.col, f.code, f.message))


def check_source(source: str, path: str = "<string>", options: Options = DEFAULT_OPTIONS) -> list[Finding]:
    """Findings for one file's text; `fixable` says whether `fix_source` would rewrite each.

    A guard change (CKP006, opt-in CKP001) counts as fixable from the analysis alone: `check` never
    loads libcst. In the rare case where `apply`'s second look refuses it (a write behind the lifted
    guard could not be guarded), `apply` leaves it and says why.
    """
    source = source.removeprefix(_BOM)
    analysis, issues = _analyze(source, path, options)
    return _findings(path, analysis.tree, issues, {i for i, issue in enumerate(issues) if issue.edits})


def fix_source(source: str, path: str = "<string>", options: Options = DEFAULT_OPTIONS) -> FixResult:
    """Rewrite every fixable, unsuppressed finding of one file's text.

    One pass, except where a fix changes a guard (CKP006 lifts main-process guards off collectives;
    CKP001 may make a local-rank guard global): those edits run first, and the rules run again on the
    result (a helper that now runs on every rank needs its writes guarded).
    """
    bom = _BOM if source.startswith(_BOM) else ""
    source = source.removeprefix(_BOM)
    analysis, issues = _analyze(source, path, options)
    fixable = {i for i, issue in enumerate(issues) if issue.edits}
    if not fixable:
        return FixResult(_findings(path, analysis.tree, issues, set()), None)
    first = _first_pass(issues, fixable)
    lifted = _lift(source, path, options, analysis, issues) if first else None
    if lifted is not None:
        lifted_source, lifted_analysis, lifted_issues = lifted
        new_source, _ = _rewrite(lifted_source, path, options, lifted_analysis, lifted_issues)
        new_source = _merge_runtime_imports(new_source)
    else:
        fixable -= first
        issues = [_unliftable(issue) if i in first else issue for i, issue in enumerate(issues)]
        new_source, fixed = _rewrite(source, path, options, analysis, [issues[i] for i in sorted(fixable)])
        fixable = {i for n, i in enumerate(sorted(fixable)) if n in fixed}
    findings = _findings(path, analysis.tree, issues, fixable)
    return FixResult(findings, bom + new_source if new_source != source else None)


def _first_pass(issues: list[Issue], fixable: set[int]) -> set[int]:
    """The fixable issues whose fix changes a guard (CKP006 lifts one, CKP001 makes a local one global):
    those edits run first, and the rules run again on their result."""
    return {i for i in fixable if any(isinstance(edit, FIRST_PASS) for edit in issues[i].edits)}


def _unliftable(issue: Issue) -> Issue:
    """A finding whose guard change `_lift` refused: report only, and why."""
    reason = (
        " (not rewritten automatically: with the guard changed, a write could not be guarded or a"
        " collective would stay guarded; move the guard inward to the write by hand)"
    )
    return replace(issue, message=issue.message + reason, edits=[])


def _lift(
    source: str, path: str, options: Options, analysis: Analysis, issues: list[Issue]
) -> tuple[str, Analysis, list[Issue]] | None:
    """Source with the guards changed (lifted off collectives, made global), and the rules' view of
    it; None when that would leave a write the rules cannot guard or a collective they cannot lift
    (report only, then)."""
    edits: list[list[Edit]] = [[e for e in issue.edits if isinstance(e, FIRST_PASS)] for issue in issues]
    lifted_source, applied = _rewrite(source, path, options, analysis, [], [e for e in edits if e])
    if not applied:
        return None
    lifted_analysis, lifted_issues = _analyze(lifted_source, path, options)

    def manual(found: list[Issue], code: str) -> int:
        return sum(issue.code == code and not issue.edits for issue in found)

    if any(manual(lifted_issues, code) > manual(issues, code) for code in ("CKP001", "CKP006")):
        return None
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
            merged = _from_import(catalog.RUNTIME_MODULE, names).replace("\n", newline) + newline
            return "".join([*lines[: stmt.lineno - 1], merged, *lines[run[-1].end_lineno or 0 :]])
    return source


def _is_runtime_import(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.ImportFrom) and stmt.module == catalog.RUNTIME_MODULE and stmt.level == 0


def _alias_text(alias: ast.alias) -> str:
    return alias.name if alias.asname is None else f"{alias.name} as {alias.asname}"


def _rewrite(
    source: str,
    path: str,
    options: Options,
    analysis: Analysis,
    issues: list[Issue],
    edit_lists: list[list[Edit]] | None = None,
) -> tuple[str, set[int]]:
    """Apply the edits of the fixable `issues` (or the given edit lists); the new text and the
    indexes of the edit lists applied in full."""
    from libcst import ParserSyntaxError  # libcst only when something is rewritten

    from ckptfix.rewrite import apply_plan

    if edit_lists is None:
        edit_lists = [issue.edits for issue in issues if issue.edits]
    plan, needed, merged = _plan(edit_lists, options, analysis)
    symbols, imports = _symbols(needed, analysis.names)
    import_key = None
    if imports:
        import_key, after = _import_anchor(analysis.tree, plan)
        plan.add(Insert(import_key, after, "\n".join(imports), frozenset()))
    try:
        new_source, applied = apply_plan(source, plan, symbols)
    except ParserSyntaxError as exc:  # valid for `ast` but not for libcst's grammar
        raise SourceError(
            f"cannot rewrite, libcst does not parse it: {exc.message} (line {exc.raw_line})"
        ) from exc
    if import_key is not None and import_key not in applied:
        raise RuntimeError(f"ckptfix could not place its imports in {path}")
    try:
        _parse(new_source, path)
    except SourceError as exc:  # a bug of ours: never hand back broken code
        raise RuntimeError(f"ckptfix produced invalid code for {path}: {exc}") from exc
    return new_source, {
        n for n, edits in enumerate(edit_lists) if all(_edit_key(edit, merged) in applied for edit in edits)
    }


def _edit_key(edit: Edit, merged: dict[tuple[object, str], Key]) -> object:
    """Where an edit shows up in the rewriter's `applied` set (a merged insert: at the surviving one)."""
    if isinstance(edit, CallEdit):
        return edit.span
    if isinstance(edit, Insert) and edit.group is not None:
        return merged[(edit.group, edit.template)]
    return edit.key


def _plan(
    edit_lists: list[list[Edit]], options: Options, analysis: Analysis
) -> tuple[Plan, set[str], dict[tuple[object, str], Key]]:
    """Merge the edits of several findings: inserts of one group collapse into the last one."""
    edits = [edit for edits in edit_lists for edit in edits]
    last_in_group: dict[tuple[object, str], Key] = {}
    for edit in edits:
        if isinstance(edit, Insert) and edit.group is not None:
            slot = (edit.group, edit.template)
            last_in_group[slot] = max(last_in_group.get(slot, edit.key), edit.key)
    plan = Plan()
    needed: set[str] = set()
    for edit in edits:
        if (
            isinstance(edit, Insert)
            and edit.group is not None
            and last_in_group[(edit.group, edit.template)] != edit.key
        ):
            continue
        plan.add(edit)
        needed |= edit.symbols
    if options.style == "runtime" and needed & {"checkpoint_barrier", "final_sync"}:
        for key in analysis.init_keys:
            plan.add(Insert(key, True, "{init_sync}()", frozenset({"init_sync"})))
            needed.add("init_sync")
    return plan, needed, last_in_group


def _symbols(needed: set[str], names: Names) -> tuple[dict[str, str], list[str]]:
    """Local names for the symbols the templates use, and the import lines that bind new ones."""
    mapping: dict[str, str] = {}
    imports: list[str] = []
    for symbol in sorted(needed & MODULE_SYMBOLS.keys()):
        target = MODULE_SYMBOLS[symbol]
        local = names.local_for(target)
        if (
            local is None
            and target in names.imported
            and names.module_imports.get(target.split(".")[0]) == "torch"
        ):
            local = target  # `import torch.distributed` already made `torch.distributed` usable
        if local is None:
            local = names.fresh(symbol, reserved=mapping.values())
            if local == target:
                imports.append(f"import {target}")
            else:
                imports.append(f"import {target} as {local}")
        mapping[symbol] = local
    runtime_parts: list[str] = []
    for symbol in sorted(needed & RUNTIME_SYMBOLS):
        local = names.local_for(f"{catalog.RUNTIME_MODULE}.{symbol}")
        if local is None:
            local = names.fresh(symbol, reserved=mapping.values())
            runtime_parts.append(symbol if local == symbol else f"{symbol} as {local}")
        mapping[symbol] = local
    if runtime_parts:
        imports.append(_from_import(catalog.RUNTIME_MODULE, runtime_parts))
    return mapping, imports


# Black's and ruff's default line length: a longer import is wrapped the way they would wrap it.
_IMPORT_LINE_LENGTH = 88


def _from_import(module: str, names: list[str]) -> str:
    """`from module import a, b`, or one name per line in parentheses when that would be too long."""
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= _IMPORT_LINE_LENGTH:
        return line
    return f"from {module} import (\n" + "".join(f"    {name},\n" for name in names) + ")"


def _import_anchor(tree: Tree, plan: Plan) -> tuple[Key, bool]:
    """Where new imports go: after the last top-level import (also one inside a top-level try/if) that
    comes before any rewritten code running at import time; else after the docstring or at the top."""
    edit_lines = [key[0] for key in plan.statement_keys()] + [span[0] for span in plan.calls]
    body = tree.module.body
    first_module_level = min(
        (line for line in edit_lines if _runs_at_import(tree, line)),
        default=None,
    )
    last_import: ast.stmt | None = None
    for stmt in body:
        if first_module_level is not None and (stmt.end_lineno or stmt.lineno) >= first_module_level:
            break
        if isinstance(stmt, ast.Import | ast.ImportFrom) or (
            isinstance(stmt, ast.Try | ast.If)
            and any(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.walk(stmt))
            and not _is_main_guard(stmt)
        ):
            last_import = stmt
    if last_import is not None:
        return tree.start(tree.line_start(last_import)), True
    first = body[0]
    is_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    return tree.start(first), is_docstring


def _runs_at_import(tree: Tree, line: int) -> bool:
    for stmt in tree.module.body:
        if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno):
            return (
                not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                or line == stmt.lineno
            )
    return True


def _is_main_guard(stmt: ast.stmt) -> bool:
    test = getattr(stmt, "test", None)
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
