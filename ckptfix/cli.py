"""Command-line entry point: parses options, hands work to the engine, picks the exit code.

Exit codes follow ruff: 0 nothing to report, 1 findings (or a diff, or with --exit-non-zero-on-fix a
rewrite), 2 usage/config/internal error or a file that could not be read or parsed. Data (findings,
diffs, rewritten stdin) goes to stdout; people's messages (summary, errors, progress) to stderr.
Never imports torch; libcst only arrives with the first file that needs parsing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ckptfix import __version__
from ckptfix.config import CliFlags, ConfigError, Settings, config_start, find_config, load_config, resolve
from ckptfix.report import FORMATS

if TYPE_CHECKING:
    from ckptfix.engine import FileResult, Mode
    from ckptfix.findings import Finding
    from ckptfix.sourcefile import SourceFile

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2

F = TypeVar("F", bound=Callable[..., Any])


class UsageProblem(click.ClickException):
    """A problem with what the user asked for (config, flags): exit 2, like click's usage errors."""

    exit_code = EXIT_ERROR


class _Group(click.Group):
    """Turns an unexpected exception into a one-line error and exit 2 instead of a bare traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # The reader went away (`ckptfix apply --diff | head`): not our error. Point stdout at
            # /dev/null so the interpreter's final flush does not raise again, as the Python docs advise.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(EXIT_FINDINGS)
        except Exception as exc:
            if os.environ.get("CKPTFIX_DEBUG"):
                raise
            click.echo(f"ckptfix: internal error: {type(exc).__name__}: {exc}", err=True)
            click.echo("ckptfix: set CKPTFIX_DEBUG=1 for the traceback and please report it", err=True)
            ctx.exit(EXIT_ERROR)


def _comma_list(
    _ctx: click.Context, _param: click.Parameter, values: Sequence[str]
) -> tuple[str, ...] | None:
    """`--select CKP001,CKP002 --select CKP005`: both spellings, as ruff takes them."""
    if not values:
        return None
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def _shared_options(func: F) -> F:
    decorators = [
        click.argument("paths", nargs=-1, type=click.Path(path_type=str)),
        click.option(
            "--select",
            multiple=True,
            callback=_comma_list,
            help="Rules to enable: codes, prefixes (CKP00) or ALL; replaces the config's choice.",
        ),
        click.option("--ignore", multiple=True, callback=_comma_list, help="Rules to disable."),
        click.option(
            "--extend-select",
            multiple=True,
            callback=_comma_list,
            help="Rules to enable on top of the selection.",
        ),
        click.option(
            "--exclude",
            multiple=True,
            callback=_comma_list,
            help="Gitignore-style patterns to skip, replacing the default list.",
        ),
        click.option(
            "--extend-exclude",
            multiple=True,
            callback=_comma_list,
            help="Patterns to skip on top of the default list.",
        ),
        click.option(
            "--force-exclude/--no-force-exclude",
            default=False,
            help="Apply excludes to paths named on the command line too (for pre-commit).",
        ),
        click.option(
            "--respect-gitignore/--no-respect-gitignore",
            default=True,
            show_default=True,
            help="Skip files that .gitignore files ignore.",
        ),
        click.option(
            "-j",
            "--jobs",
            type=click.IntRange(min=1),
            default=None,
            help="Worker processes [default: all cores].",
        ),
        click.option(
            "--style",
            type=click.Choice(["runtime", "inline"]),
            default=None,
            help=(
                "Rewrite style: import ckptfix.runtime (barriers wait while a write progresses), or plain "
                "torch.distributed code (fixed barrier deadlines; see `ckptfix explain CKP002`)."
            ),
        ),
        click.option(
            "--barrier-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            metavar="SECONDS",
            help="Timeout of inserted checkpoint barriers [default: 120].",
        ),
        click.option(
            "--final-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            metavar="SECONDS",
            help="Timeout of the inserted final sync [default: 180].",
        ),
        click.option(
            "--unsafe-fixes/--no-unsafe-fixes",
            default=None,
            help="Also write fixes that rest on an assumption ckptfix cannot prove (each says which).",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=str),
            default=None,
            help="Use this pyproject.toml ([tool.ckptfix]) or ckptfix.toml instead of searching.",
        ),
        click.option(
            "--stdin-filename",
            default=None,
            metavar="PATH",
            help="The name to report (and exclude by) for source read from `-`.",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(path_type=str),
            envvar="CKPTFIX_CACHE_DIR",
            default=None,
            metavar="DIR",
            help="Where to keep the findings cache (env CKPTFIX_CACHE_DIR) [default: .ckptfix_cache in "
            "the directory of the config file, else the working directory].",
        ),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the findings cache."),
        click.option(
            "--project/--no-project",
            "use_project",
            default=True,
            show_default=True,
            help="Read the other files of the project (under the nearest pyproject.toml, setup.cfg, "
            "setup.py or .git) for facts that cross files; --no-project analyses each file alone.",
        ),
        click.option("--output-format", type=click.Choice(FORMATS), default="text", show_default=True),
        click.option("-q", "--quiet", is_flag=True, help="Print data only: no summary, no progress."),
        click.option("-v", "--verbose", is_flag=True, help="Report every file and the time taken."),
        click.option("--color/--no-color", default=None, help="Colored output [default: on a terminal]."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


@dataclass
class _Run:
    """The parsed shared options of one invocation."""

    paths: tuple[str, ...]
    settings: Settings
    force_exclude: bool
    respect_gitignore: bool
    jobs: int | None
    stdin_filename: str | None
    output_format: str
    quiet: bool
    verbose: bool
    color: bool
    cache_dir: str | None  # None: no findings cache
    use_project: bool = True  # facts of the other files of the project (ckptfix.project)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message), in the order met

    def say(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)

    def error(self, path: str, message: str) -> None:
        """Report a path that could not be processed, on stderr, at once; the run goes on."""
        self.errors.append((path, message))
        label = click.style("error", fg="red", bold=True) if self.color else "error"
        click.echo(f"{label}: {path}: {message}", err=True, color=self.color)


def _setup(params: dict[str, Any]) -> _Run:
    stdin_filename = params["stdin_filename"]
    paths = tuple(params["paths"]) or (("-",) if stdin_filename else (".",))  # as ruff reads it
    if "-" in paths and len(paths) > 1:
        raise click.UsageError("`-` (read stdin) cannot be combined with other paths")
    if stdin_filename and paths != ("-",):
        raise click.UsageError("--stdin-filename names source read from `-`, not files")
    flags = CliFlags(
        select=params["select"],
        ignore=params["ignore"] or (),
        extend_select=params["extend_select"] or (),
        exclude=params["exclude"],
        extend_exclude=params["extend_exclude"] or (),
        style=params["style"],
        barrier_timeout=params["barrier_timeout"],
        final_timeout=params["final_timeout"],
        unsafe_fixes=params["unsafe_fixes"],
    )
    try:
        config_file = params["config_file"]
        if config_file is not None:
            path: Path | None = Path(config_file)
        else:
            path = find_config(config_start(paths, params["stdin_filename"]))
        settings = resolve(load_config(path), flags)
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from None
    cache_dir = None
    if settings.cache and not params["no_cache"]:
        cache_dir = params["cache_dir"] or os.path.join(settings.root, ".ckptfix_cache")
    color = params["color"]
    if color is None:
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return _Run(
        paths=paths,
        settings=settings,
        force_exclude=params["force_exclude"],
        respect_gitignore=params["respect_gitignore"],
        jobs=params["jobs"],
        stdin_filename=params["stdin_filename"],
        output_format=params["output_format"],
        quiet=params["quiet"],
        verbose=params["verbose"] and not params["quiet"],
        color=color,
        cache_dir=cache_dir,
        use_project=params["use_project"],
    )


@dataclass
class _Outcome:
    """What processing produced: per-file results, and stdin's own details."""

    results: list[FileResult]
    stdin_data: bytes | None = None  # the source read from `-`
    stdin_source: SourceFile | None = None  # its decoded form, when it was decoded
    stdin_excluded: bool = False


def _process(run: _Run, mode: Mode) -> _Outcome:
    """Discover and process files (or stdin); per-file errors are printed as they are met."""
    from ckptfix import engine
    from ckptfix.discovery import discover
    from ckptfix.progress import Progress

    if run.paths == ("-",):
        return _process_stdin(run, mode)

    started = time.perf_counter()
    found = discover(
        run.paths, run.settings.exclude, run.settings.root, run.force_exclude, run.respect_gitignore
    )
    for problem in found.errors:
        run.error(problem.path, problem.message)
    jobs = run.jobs or engine.default_jobs()
    cache = None
    if run.cache_dir is not None and found.files:
        from ckptfix.cache import open_cache

        cache = open_cache(run.cache_dir, run.settings.options, lambda m: run.say(f"ckptfix: warning: {m}"))
    views = None
    if run.use_project and found.files:
        from ckptfix.project.build import load_project

        project = load_project(
            run.paths,
            run.settings.exclude,
            run.respect_gitignore,
            cache.directory if cache is not None else None,
            lambda m: run.say(f"ckptfix: warning: {m}"),
        )
        views = project.view
        if run.verbose:
            click.echo(
                project.note
                or f"project {project.root}: {len(project.summaries)} of {len(project.index.files)} files "
                f"summarised in {time.perf_counter() - started:.2f} s",
                err=True,
            )
    progress = Progress(len(found.files), sys.stderr, enabled=not run.quiet and not run.verbose)

    def on_result(result: engine.FileResult) -> None:
        progress.advance()
        if result.new_text is not None and mode == "fix" and not result.error and not run.quiet:
            progress.echo(f"Rewrote {result.path} ({_plural(result.fixed, 'fix', 'fixes')})")
        elif run.verbose and not result.error:
            state = (
                f"{_plural(len(result.findings), 'finding')}" if result.parsed else "skipped by the prefilter"
            )
            if result.cached:
                state += " (cached)"
            click.echo(f"{result.path}: {state}", err=True)

    results = engine.run(found.files, run.settings.options, mode, jobs, on_result, cache, views)
    progress.close()
    for result in results:
        if result.error:
            run.error(result.path, result.error)
            if run.verbose and result.traceback:
                click.echo(result.traceback, err=True)
    if run.verbose:
        elapsed = time.perf_counter() - started
        click.echo(
            f"{len(found.files)} files in {elapsed:.2f} s on {min(jobs, len(found.files))} process(es)",
            err=True,
        )
    return _Outcome(results)


def _process_stdin(run: _Run, mode: Mode) -> _Outcome:
    from ckptfix import engine
    from ckptfix.discovery import is_excluded
    from ckptfix.prefilter import might_need_work
    from ckptfix.sourcefile import FileError, decode

    name = run.stdin_filename or "-"
    data = sys.stdin.buffer.read()
    if (
        run.force_exclude
        and run.stdin_filename
        and is_excluded(run.stdin_filename, run.settings.exclude, run.settings.root, run.respect_gitignore)
    ):
        return _Outcome([], data, stdin_excluded=True)
    if not might_need_work(data, run.settings.options):
        return _Outcome([engine.FileResult(name)], data)
    try:
        source = decode(name, data)
    except FileError as exc:
        run.error(name, str(exc))
        return _Outcome([engine.FileResult(name, error=str(exc))], data)
    result = engine.process_source(source, run.settings.options, mode)
    if result.error:
        run.error(name, result.error)
    return _Outcome([result], data, source)


def _stdin_output(run: _Run, outcome: _Outcome) -> bytes:
    """What `apply -` prints: the rewrite in the input's own encoding and newlines, else the input."""
    from ckptfix.sourcefile import FileError, encode

    result = outcome.results[0]
    if result.new_text is None or outcome.stdin_source is None:
        return outcome.stdin_data or b""
    try:
        return encode(outcome.stdin_source, result.new_text)
    except FileError as exc:
        run.error(result.path, str(exc))
        return outcome.stdin_data or b""


def _emit(text: str, run: _Run) -> None:
    if text:
        click.echo(text, nl=False, color=run.color)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="ckptfix", message="%(prog)s %(version)s")
def main() -> None:
    """Find and rewrite PyTorch checkpoint saves that hang or corrupt distributed training."""


@main.command(short_help="Report checkpoint saves that can hang or corrupt training.")
@_shared_options
@click.option(
    "--summary",
    is_flag=True,
    help="Print the checkpointing checklist for the whole tree instead of each finding.",
)
def check(summary: bool, **params: Any) -> None:
    """Report problems; exit 1 when there are findings, 2 when a file could not be processed."""
    run = _setup(params)
    outcome = _process(run, "check")
    results, failures = outcome.results, len(run.errors)
    findings = sorted(f for r in results for f in r.findings)
    from ckptfix import report

    if summary:
        _emit(report.checklist(findings, run.settings.options.select, run.output_format, run.color), run)
    else:
        _emit(report.render(findings, run.output_format, run.color, run.errors), run)
    files_with = len({f.path for f in findings})
    fixable = sum(f.fixable for f in findings)
    if findings:
        run.say(
            f"Found {_plural(len(findings), 'finding')} in {_plural(files_with, 'file')} "
            f"({fixable} fixable with `ckptfix apply`{_held_back(findings)})."
        )
    else:
        run.say(f"No findings in {_plural(sum(r.error is None for r in results), 'file')}.")
    if failures:
        run.say(f"{_plural(failures, 'path')} could not be checked (see the errors above).")
    sys.exit(EXIT_ERROR if failures else EXIT_FINDINGS if findings else EXIT_OK)


def _held_back(findings: list[Finding]) -> str:
    """ "; 2 more with --unsafe-fixes": the unsafe fixes a run did not write."""
    held = sum(f.unsafe and not f.fixable for f in findings)
    return f"; {held} more with `--unsafe-fixes`" if held else ""


@main.command(short_help="Rewrite those saves in place (or print a diff with --diff).")
@_shared_options
@click.option("--diff", is_flag=True, help="Print a unified diff of the changes and write nothing.")
@click.option("--exit-non-zero-on-fix", is_flag=True, help="Exit 1 when a file was rewritten.")
def apply(diff: bool, exit_non_zero_on_fix: bool, **params: Any) -> None:
    """Rewrite files in place (or print a diff); what cannot be fixed is reported like `check` does."""
    run = _setup(params)
    outcome = _process(run, "diff" if diff else "fix")
    if outcome.stdin_excluded:
        if not diff:
            sys.stdout.buffer.write(outcome.stdin_data or b"")
        sys.exit(EXIT_OK)
    results, failures = outcome.results, len(run.errors)
    from ckptfix import report

    if diff:
        _emit("".join(r.diff for r in results), run)
        changed = [r for r in results if r.diff]
        fixes = sum(r.fixed for r in changed)
        held = [f for r in results for f in r.findings if f.unsafe and not f.fixable]
        for finding in held:  # what a reviewer of the diff should know is missing from it
            run.say(f"{finding.path}:{finding.line}:{finding.col}: {finding.code} {finding.message}")
        run.say(
            (
                f"Would rewrite {_plural(len(changed), 'file')} ({_plural(fixes, 'fix', 'fixes')})"
                if changed
                else "Nothing to rewrite"
            )
            + (f"; {_plural(len(held), 'unsafe fix', 'unsafe fixes')} held back." if held else ".")
        )
        if failures:
            run.say(f"{_plural(failures, 'path')} could not be processed (see the errors above).")
        sys.exit(EXIT_ERROR if failures else EXIT_FINDINGS if changed else EXIT_OK)

    remaining = sorted(f for r in results for f in r.findings)
    if run.paths == ("-",):
        # stdout carries the source (rewritten or as it came), so findings go to stderr.
        sys.stdout.buffer.write(_stdin_output(run, outcome))
        click.echo(report.render(remaining, run.output_format, False, run.errors), err=True, nl=False)
    else:
        _emit(report.render(remaining, run.output_format, run.color, run.errors), run)
    failures = len(run.errors)
    changed = [r for r in results if r.new_text is not None and r.error is None]
    fixes = sum(r.fixed for r in changed)
    run.say(
        f"Rewrote {_plural(len(changed), 'file')} ({_plural(fixes, 'fix', 'fixes')})."
        if changed
        else "Nothing to rewrite."
    )
    if remaining:
        run.say(f"{_plural(len(remaining), 'finding')} left to fix by hand{_held_back(remaining)}.")
    if failures:
        run.say(f"{_plural(failures, 'path')} could not be processed (see the errors above).")
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_FINDINGS if remaining or (exit_non_zero_on_fix and changed) else EXIT_OK)


@main.command()
@click.option("--output-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules(output_format: str) -> None:
    """List the rules."""
    from ckptfix.rules import RULES

    if output_format == "json":
        import json

        fields = ("code", "name", "summary", "explanation", "before", "after", "fixable")
        rows = [{name: getattr(RULES[code], name) for name in fields} for code in sorted(RULES)]
        click.echo(json.dumps(rows, indent=2))
        return
    for code in sorted(RULES):
        rule = RULES[code]
        fix = "fix" if rule.fixable else "   "
        click.echo(f"{code}  {fix}  {rule.name:<28} {rule.summary}")


@main.command(short_help="Explain one rule, with an example.")
@click.argument("code")
def explain(code: str) -> None:
    """Explain a rule: what it finds, why it matters, and the fix, with an example."""
    from ckptfix.rules import RULES

    rule = RULES.get(code.upper())
    if rule is None:
        raise UsageProblem(f"unknown rule {code!r}; known rules: {', '.join(sorted(RULES))}")

    def indented(source: str) -> str:
        return "".join(f"    {line}" if line.strip() else line for line in source.splitlines(keepends=True))

    click.echo(f"{rule.code} ({rule.name}): {rule.summary}\n")
    click.echo(f"Fixable by `ckptfix apply`: {'yes' if rule.fixable else 'no'}\n")
    click.echo(rule.explanation.rstrip() + "\n")
    click.echo("Before:\n\n" + indented(rule.before).rstrip() + "\n")
    click.echo("After:\n\n" + indented(rule.after).rstrip())
