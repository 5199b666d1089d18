"""`ckptfix check` against the tools users would otherwise run, on the same tree, paired.

Tree runs (default tree: the installed torch package, ~2,300 files, 1.2 M lines):
  ckptfix check -j1 and -j<all cores> without the findings cache, -j<all cores> again with a warm
  cache (the repeated run of pre-commit and CI), `ruff check --select S301 --no-cache` (one rule), TorchFix
  (its default rules), `fixit lint` with one rule, a plain libcst parse of every file, and
  `grep -rl torch.save` as the floor.
Apply cost: `ckptfix apply --diff` on N copies of a file with findings, alone and next to the tree.
Single-file runs: ckptfix on a file with no save and on a file with findings, against
  `python -c "import click"`, ruff, fixit and TorchFix on the same file.

Commands run in rounds, alternating (A B C ... A B C ...), so a noisy machine hits each alike; the
figures are the median wall time, its spread, each tool's ratio to ckptfix, and the peak memory of
each command (its largest process). Tools not installed are listed as skipped.

    python bench/compare.py [--rounds 3] [--tree DIR ...] [--tools-bin DIR] [--apply-copies 1,20,80]

`--tools-bin` is where ruff, torchfix and fixit live when they are not on PATH (e.g. a venv's bin).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLEAN_FILE = (
    '"""A data helper with no checkpoint in it."""\n\nimport json\n\n\n'
    "def load(p):\n    return json.load(open(p))\n"
)
FINDING_FILE = ROOT / "fixtures" / "seed_trainer" / "before.py"


@dataclass
class Measured:
    name: str
    argv: list[str]
    walls: list[float] = field(default_factory=list)
    peaks_mb: list[float] = field(default_factory=list)
    codes: set[int] = field(default_factory=set)


def _run(argv: list[str], timeout: float) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) of the largest process, exit code."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if wall > timeout:
        print(f"  note: {argv[0]} took {wall:.0f} s", file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def _tool(name: str, tools_bin: str | None) -> str | None:
    """`name` from --tools-bin, else beside this Python (its venv), else on PATH."""
    for directory in (tools_bin, os.path.dirname(sys.executable)):
        if directory and (Path(directory) / name).exists():
            return str(Path(directory) / name)
    return shutil.which(name)


def _measure(commands: list[Measured], rounds: int, timeout: float) -> None:
    for command in commands:  # warm-up: file cache, bytecode
        _run(command.argv, timeout)
    for _ in range(rounds):
        for command in commands:
            wall, peak, code = _run(command.argv, timeout)
            command.walls.append(wall)
            command.peaks_mb.append(peak)
            command.codes.add(code)


def _table(title: str, commands: list[Measured], *references: str) -> None:
    """One row per command, with its ratio to each reference command that was run."""
    medians = {c.name: statistics.median(c.walls) for c in commands}
    refs = [r for r in references if r in medians]
    print(f"\n{title}\n")
    print("| command | median s | min-max s | peak MB |" + "".join(f" vs {r} |" for r in refs))
    print("|---|---|---|---|" + "---|" * len(refs))
    for command in commands:
        median = medians[command.name]
        ratios = "".join(f" {median / medians[r]:.2f}x |" for r in refs)
        print(
            f"| {command.name} | {median:.3f} | {min(command.walls):.3f}-{max(command.walls):.3f} "
            f"| {max(command.peaks_mb):.0f} |{ratios}"
        )


def _libcst_parse_script(tree: str) -> str:
    return (
        "import libcst, pathlib, sys\n"
        f"for p in pathlib.Path({tree!r}).rglob('*.py'):\n"
        "    try:\n"
        "        libcst.parse_module(p.read_bytes())\n"
        "    except Exception:\n"
        "        pass\n"
    )


def _apply_cost(tree: str, apply: list[str], args: argparse.Namespace) -> None:
    """`apply --diff` (the whole rewrite, nothing written) on N copies of a file with findings, alone
    and next to `tree`: the cost should grow with N, and the tree should add only its check time."""
    with tempfile.TemporaryDirectory() as scratch:
        commands = []
        for copies in args.apply_copies:
            directory = Path(scratch, f"copies{copies}")
            directory.mkdir()
            for index in range(copies):
                (directory / f"trainer_{index}.py").write_bytes(FINDING_FILE.read_bytes())
            commands.append(Measured(f"{copies} files to rewrite", [*apply, "-j", "1", str(directory)]))
            commands.append(
                Measured(f"{copies} files to rewrite + tree", [*apply, "-j", "1", tree, str(directory)])
            )
        _measure(commands, args.rounds, args.timeout)
        _table(f"apply --diff -j1: cost by files to rewrite (tree: {tree})", commands, commands[0].name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", nargs="*", default=None)
    parser.add_argument("--tools-bin", default=None)
    parser.add_argument(
        "--skip-slow", action="store_true", help="leave out TorchFix, fixit and libcst on trees"
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--apply-copies",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 20, 80],
        help="numbers of copies of a file with findings for the apply-cost table (default 1,20,80)",
    )
    args = parser.parse_args()

    spec = importlib.util.find_spec("torch")
    trees = args.tree or (
        [spec.submodule_search_locations[0]] if spec and spec.submodule_search_locations else []
    )
    py = sys.executable
    ckptfix = [py, "-m", "ckptfix", "check", "-q", "--no-color", "--no-cache"]
    ruff, torchfix, fixit = (_tool(n, args.tools_bin) for n in ("ruff", "torchfix", "fixit"))
    cores = os.cpu_count() or 1
    print(f"{cores} cores, Python {sys.version.split()[0]}, medians of {args.rounds} rounds after a warm-up")
    skipped = [n for n, t in (("ruff", ruff), ("torchfix", torchfix), ("fixit", fixit)) if t is None]
    if skipped:
        print(f"skipped (not installed): {', '.join(skipped)}")

    for tree in trees:
        files = sum(1 for _ in Path(tree).rglob("*.py"))
        cache_dir = tempfile.mkdtemp(prefix="ckptfix-bench-cache-")  # filled by the warm-up run
        cached = [*ckptfix[:-1], "--cache-dir", cache_dir]
        commands = [
            Measured("ckptfix check -j1", [*ckptfix, "-j", "1", tree]),
            Measured(f"ckptfix check -j{cores}", [*ckptfix, "-j", str(cores), tree]),
            Measured(f"ckptfix check -j{cores} (warm cache)", [*cached, "-j", str(cores), tree]),
            Measured("grep -rl torch.save", ["grep", "-rl", "--include=*.py", "torch.save", tree]),
        ]
        if ruff:
            commands.append(
                Measured("ruff --select S301", [ruff, "check", "--select", "S301", "--no-cache", "-q", tree])
            )
        if not args.skip_slow:
            if torchfix:
                commands.append(Measured("torchfix", [torchfix, tree]))
            if fixit:
                commands.append(
                    Measured(
                        "fixit lint (1 rule)",
                        [fixit, "--rules", "fixit.rules:NoRedundantFString", "lint", tree],
                    )
                )
            commands.append(Measured("libcst parse all", [py, "-c", _libcst_parse_script(tree)]))
        _measure(commands, args.rounds, args.timeout)
        shutil.rmtree(cache_dir)
        _table(f"Tree: {tree} ({files} files)", commands, f"ckptfix check -j{cores}", "ruff --select S301")

    for tree in trees:
        _apply_cost(tree, [*ckptfix[:3], "apply", "--diff", "-q", "--no-color", "--no-cache"], args)

    with tempfile.TemporaryDirectory() as scratch:
        clean = Path(scratch, "clean.py")
        clean.write_text(CLEAN_FILE)
        for label, target in (("no save", str(clean)), ("with findings", str(FINDING_FILE))):
            commands = [
                Measured("ckptfix check", [*ckptfix, target]),
                Measured('python -c "import click"', [py, "-c", "import click"]),
            ]
            if ruff:
                commands.append(
                    Measured(
                        "ruff --select S301", [ruff, "check", "--select", "S301", "--no-cache", "-q", target]
                    )
                )
            if fixit:
                commands.append(
                    Measured(
                        "fixit lint (1 rule)",
                        [fixit, "--rules", "fixit.rules:NoRedundantFString", "lint", target],
                    )
                )
            if torchfix:
                commands.append(Measured("torchfix", [torchfix, target]))
            _measure(commands, max(args.rounds, 5), args.timeout)
            _table(f"One file, {label}", commands, "ckptfix check")


if __name__ == "__main__":
    main()
