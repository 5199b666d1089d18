"""Run ckptfix over a folder of real repositories the way a new user would, and tabulate what it did.

Why: the fixtures are written by us and pass; real training code has shapes they do not (issue 13:
on 43 public repositories about 4 in 10 rewrites would have broken the job). This script is the
measuring half of that review: for each repository it runs `ckptfix check --output-format json` and
`ckptfix apply --diff` as subprocesses, with the repository as the working directory and the path,
so the project's own pyproject.toml and .gitignore apply exactly as in a user's run, and prints per
repository:

  py       Python files in the tree (*.py, *.pyi; before ckptfix's own excludes)
  CKP001.. files with at least one finding of each rule
  rewr     files `apply --diff` would change
  refused  findings `check` marks not fixable (their reasons are grouped in summary.md)
  unsafe   fixable findings marked unsafe, held back without `--unsafe-fixes` (0 until ckptfix
           marks them; `"unsafe": true` in the JSON, or an "N unsafe fixes" line on stderr)
  errors   files ckptfix reported it could not read or parse (exit 2 by design)
  crash    internal errors, tracebacks, exit codes other than 0/1/2, or exit 2 with no file named:
           must be 0; each is listed, and the traceback captured with `-v` under --out
  secs     wall time of both commands

Reading the diffs is the other half, and cannot be automated: the per-repository diff and findings
are written under --out (default /work/review/out/<repo>/) for that.

    python bench/review.py FOLDER [--out DIR] [-j N] [--repo NAME ...] [--unsafe-fixes] [--recheck]
                           [--installed]

By default the ckptfix of the checkout this script lives in runs (PYTHONPATH), not an installed one;
the report names it and its commit.

`--recheck` also feeds every rewritten file back through `apply -` (apply twice = apply once) and
`check -` (ckptfix must not report its own insertions), one file at a time.
Extra JSON fields (e.g. "unsafe", "reason") are used when present and never required.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RULES = tuple(f"CKP00{n}" for n in range(1, 9))
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".ckptfix_cache"}
CKPTFIX = [sys.executable, "-m", "ckptfix"]
ERROR_LINE = re.compile(r"^error: (?P<path>.+?): (?P<message>.*)$", re.MULTILINE)
UNSAFE_LINE = re.compile(r"(\d+) (?:unsafe|hidden) fix", re.IGNORECASE)
CODE_SPAN = re.compile(r"`[^`]*`")
NUMBER = re.compile(r"\b\d+\b")


@dataclass
class RepoResult:
    name: str
    py_files: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)  # rule -> files with a finding of it
    findings: int = 0
    rewritten: list[str] = field(default_factory=list)
    refused: int = 0
    refused_reasons: dict[str, int] = field(default_factory=dict)
    unsafe_held: int = 0
    file_errors: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    recheck_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def count_py(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.suffix in (".py", ".pyi") and path.is_file() and not SKIP_DIRS & set(path.parts):
            total += 1
    return total


ENV = dict(os.environ)


def run(argv: list[str], cwd: Path, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, check=False, env=ENV)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def reason_of(finding: dict[str, Any]) -> str:
    """The reason a finding is not fixed, with code and numbers blanked so alike reasons group."""
    text = str(finding.get("reason") or finding.get("message", ""))
    return f"{finding.get('code', '?')}: " + NUMBER.sub("N", CODE_SPAN.sub("`…`", text))


def classify_stderr(rc: int, stderr: str, what: str, result: RepoResult) -> bool:
    """Record file errors and crashes of one command; True when a crash was seen."""
    crashed = False
    for match in ERROR_LINE.finditer(stderr):
        entry = f"{what}: {match['path']}: {match['message']}"
        if "internal error" in match["message"]:
            result.crashes.append(entry)
            crashed = True
        elif entry.split(": ", 1)[1] not in {e.split(": ", 1)[1] for e in result.file_errors}:
            result.file_errors.append(entry)
    named = {m["path"] for m in ERROR_LINE.finditer(stderr)}
    unexplained = rc not in (0, 1, 2) or (rc == 2 and not named)
    if (
        "Traceback (most recent call last)" in stderr
        or unexplained
        or ("internal error" in stderr and not crashed)
    ):
        tail = stderr.strip().splitlines()[-3:]
        result.crashes.append(f"{what}: exit {rc}: " + " | ".join(tail))
        crashed = True
    return crashed


def diff_files(diff: str) -> list[str]:
    return [line[len("+++ b/") :] for line in diff.splitlines() if line.startswith("+++ b/")]


def recheck(repo: Path, rel: str, result: RepoResult) -> None:
    """Apply once through stdin, then apply again and check the output: both must be quiet.

    Source read from stdin is analysed alone (no facts of the project's other files), so what may
    stay is what `check -` of the original, also alone, marked not fixable (reason_of keys). Keys
    blank code spans and numbers: a finding kept after the rewrite names `atomic_save(...)` where it
    named `torch.save(...)`, at another line.
    """
    source = (repo / rel).read_bytes()
    flags = ["--no-cache", "--stdin-filename", rel]
    rc, out, _ = run([*CKPTFIX, "check", "-", *flags, "--output-format", "json", "-q"], repo, source)
    try:
        unfixed = Counter(reason_of(f) for f in json.loads(out or "[]") if not f.get("fixable", True))
    except json.JSONDecodeError:
        result.recheck_problems.append(f"{rel}: check - printed no JSON (exit {rc})")
        return
    rc, once, err = run([*CKPTFIX, "apply", "-", *flags], repo, source)
    if rc == 2:
        result.recheck_problems.append(f"{rel}: apply - exit 2: {err.strip()[-200:]}")
        return
    rc, twice, _ = run([*CKPTFIX, "apply", "-", *flags, "-q"], repo, once.encode())
    if twice != once:
        result.recheck_problems.append(f"{rel}: apply is not idempotent")
    rc, out, _ = run([*CKPTFIX, "check", "-", *flags, "--output-format", "json", "-q"], repo, once.encode())
    try:
        left = json.loads(out or "[]")
    except json.JSONDecodeError:
        result.recheck_problems.append(f"{rel}: check - printed no JSON (exit {rc})")
        return
    for f in left:
        key = reason_of(f)
        if unfixed[key]:
            unfixed[key] -= 1
            continue
        result.recheck_problems.append(f"{rel}:{f['line']}: after apply: {f['code']} {f['message'][:90]}")


def review_repo(repo: Path, out: Path, args: argparse.Namespace, unsafe_flag: bool) -> RepoResult:
    result = RepoResult(repo.name, py_files=count_py(repo))
    out.mkdir(parents=True, exist_ok=True)
    common = ["--no-cache", "-j", str(args.jobs), "."]
    started = time.perf_counter()

    rc, stdout, stderr = run([*CKPTFIX, "check", "--output-format", "json", *common], repo)
    (out / "check.json").write_text(stdout)
    (out / "check.stderr").write_text(stderr)
    check_crashed = classify_stderr(rc, stderr, "check", result)
    try:
        findings: list[dict[str, Any]] = json.loads(stdout) if stdout.strip() else []
    except json.JSONDecodeError:
        findings = []
        if not check_crashed:
            result.crashes.append(f"check: exit {rc}: stdout is not JSON")
    result.findings = len(findings)
    files_by_rule: dict[str, set[str]] = {}
    for f in findings:
        files_by_rule.setdefault(f["code"], set()).add(f["path"])
    result.by_rule = {code: len(paths) for code, paths in sorted(files_by_rule.items())}
    not_fixable = [f for f in findings if not f.get("fixable", True)]
    result.refused = len(not_fixable)
    result.refused_reasons = dict(Counter(reason_of(f) for f in not_fixable).most_common())
    result.unsafe_held = sum(1 for f in findings if f.get("unsafe") and f.get("fixable", True))

    apply_argv = [*CKPTFIX, "apply", "--diff", *common]
    if unsafe_flag:
        apply_argv.insert(4, "--unsafe-fixes")
    rc, diff, stderr = run(apply_argv, repo)
    (out / "apply.diff").write_text(diff)
    (out / "apply.stderr").write_text(stderr)
    classify_stderr(rc, stderr, "apply --diff", result)
    result.rewritten = diff_files(diff)
    if not result.unsafe_held and (match := UNSAFE_LINE.search(stderr)):
        result.unsafe_held = int(match[1])
    result.seconds = time.perf_counter() - started

    for entry in result.crashes:  # the traceback, for the report
        path = entry.split(": ")[1] if entry.count(": ") >= 2 else "."
        if (repo / path).is_file():
            _, _, err = run([*CKPTFIX, "check", "-v", "--no-cache", path], repo)
            with (out / "crash_tracebacks.txt").open("a") as fh:
                fh.write(f"== {path}\n{err}\n")
    if args.recheck:
        for rel in result.rewritten:
            recheck(repo, rel, result)
    (out / "summary.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def table(results: list[RepoResult], unsafe_shown: bool) -> str:
    head = ["repo", "py", *RULES, "rewr", "refused", "errors", "crash", "secs"]
    if unsafe_shown:
        head.insert(head.index("refused") + 1, "unsafe")
    rows: list[list[Any]] = []
    for r in results:
        row = [r.name, r.py_files, *(r.by_rule.get(c, 0) for c in RULES), len(r.rewritten), r.refused]
        if unsafe_shown:
            row.append(r.unsafe_held)
        rows.append([*row, len(r.file_errors), len(r.crashes), f"{r.seconds:.1f}"])
    totals: list[Any] = ["TOTAL"]
    for i in range(1, len(head) - 1):
        totals.append(sum(int(row[i]) for row in rows))
    totals.append(f"{sum(r.seconds for r in results):.1f}")
    rows.append(totals)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def details(results: list[RepoResult]) -> str:
    parts = []
    reasons: Counter[str] = Counter()
    for r in results:
        reasons.update(r.refused_reasons)
    if reasons:
        parts.append("\n## Not fixable, by reason (all repositories)\n")
        parts += [f"- {n} x {reason}" for reason, n in reasons.most_common()]
    sections = (("Crashes", "crashes"), ("File errors", "file_errors"), ("Recheck", "recheck_problems"))
    for title, attr in sections:
        entries = [f"- {r.name}: {e}" for r in results for e in getattr(r, attr)]
        if entries:
            parts.append(f"\n## {title}\n")
            parts += entries
    return "\n".join(parts) + "\n"


def describe_tool() -> str:
    """Which ckptfix ran: its files and, for a git checkout, the commit and whether it was modified."""
    _, where, _ = run([sys.executable, "-c", "import ckptfix; print(ckptfix.__file__)"], Path.cwd())
    source = Path(where.strip()).parent.parent
    _, commit, _ = run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], Path.cwd())
    _, dirty, _ = run(["git", "-C", str(source), "status", "--porcelain", "--", "ckptfix"], Path.cwd())
    state = f"{commit.strip() or 'not a git checkout'}{' (modified)' if dirty.strip() else ''}"
    return f"ckptfix from {source} at {state}\n\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="one repository per subdirectory")
    parser.add_argument("--out", type=Path, default=Path("/work/review/out"))
    parser.add_argument("-j", "--jobs", type=int, default=1, help="ckptfix worker processes")
    parser.add_argument("--repo", action="append", default=[], help="only these subdirectories")
    parser.add_argument("--unsafe-fixes", action="store_true", help="pass --unsafe-fixes when ckptfix has it")
    parser.add_argument("--recheck", action="store_true", help="apply twice and check each rewritten file")
    parser.add_argument(
        "--installed", action="store_true", help="run the installed ckptfix, not this checkout's"
    )
    args = parser.parse_args()
    if not args.installed:  # this checkout's code: an editable install elsewhere may be mid-edit
        ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

    repos = sorted(p for p in args.folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if args.repo:
        repos = [p for p in repos if p.name in args.repo]
    _, help_text, _ = run([*CKPTFIX, "apply", "--help"], Path.cwd())
    has_unsafe = "--unsafe-fixes" in help_text
    results = []
    for repo in repos:
        result = review_repo(repo, args.out / repo.name, args, args.unsafe_fixes and has_unsafe)
        results.append(result)
        print(
            f"{repo.name}: {len(result.rewritten)} rewritten, {result.findings} findings, "
            f"{len(result.crashes)} crashes, {result.seconds:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    shown = has_unsafe or any(r.unsafe_held for r in results)
    report = describe_tool() + table(results, shown) + details(results)
    if len(repos) > 1 or not args.repo:
        (args.out / "summary.md").write_text(report)
    print(report, end="")
    return 1 if any(r.crashes for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
