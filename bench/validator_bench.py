"""What the validator costs (issue 13: at most 10% of `apply`'s time, nothing in `check` beyond deciding
which fixes are written).

Runs `fix_source` (what `apply` does per file) and `check_source` over a set of files in one process,
with the validator's two entry points wrapped in timers: the validation of candidate plans
(`decide`, which `check` runs too) and the final validation of libcst's output (`apply` only). Prints
per file set the total time, the time inside the validator and its share, and the same for `check`.
Every file is run `--rounds` times; the figures are the median round.

    python bench/validator_bench.py [PATHS ...] [--rounds N]

Default paths: the fixtures' before.py files and the installed torch package's files with findings.
Point it at a corpus of real training code (bench/review.py's) for the figures that matter.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ckptfix import api  # noqa: E402
from ckptfix.options import Options  # noqa: E402
from ckptfix.validation import decide as decide_module  # noqa: E402


class Timer:
    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


@contextmanager
def validator_timed(timer: Timer) -> Iterator[None]:
    """Time every validation: candidate plans (`_Validator.check`) and apply's last look (`validate`)."""
    check, validate = decide_module._Validator.check, api.validate
    decide_module._Validator.check = timer.wrap(check)  # type: ignore[method-assign]
    api.validate = timer.wrap(validate)  # type: ignore[assignment]
    try:
        yield
    finally:
        decide_module._Validator.check = check  # type: ignore[method-assign]
        api.validate = validate


def candidates(paths: list[Path]) -> list[tuple[str, str]]:
    """(path, text) of the files the byte prefilter lets through."""
    found = []
    for path in paths:
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            try:
                data = file.read_bytes()
                if api.might_need_work(data):
                    found.append((str(file), data.decode("utf-8")))
            except (OSError, UnicodeDecodeError):
                continue
    return found


def run(files: list[tuple[str, str]], work: Callable[[str, str], object]) -> tuple[float, float]:
    timer = Timer()
    start = time.perf_counter()
    with validator_timed(timer):
        for path, text in files:
            try:
                work(text, path)
            except api.SourceError:
                continue
    return time.perf_counter() - start, timer.seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    paths = args.paths
    if not paths:
        import torch  # only to find its sources

        torch_dir = Path(torch.__file__).parent
        paths = [*sorted((ROOT / "fixtures").glob("*/before.py")), torch_dir]
    files = candidates(paths)
    options = Options()

    def fix(text: str, path: str) -> object:
        return api.fix_source(text, path, options)

    def check(text: str, path: str) -> object:
        return api.check_source(text, path, options)

    print(f"{len(files)} files past the prefilter, {args.rounds} rounds (median)")
    print("| command | total s | in the validator s | share |")
    print("|---|---|---|---|")
    for name, work in (("apply (fix_source)", fix), ("check (check_source)", check)):
        rounds = sorted(run(files, work) for _ in range(args.rounds))
        total, validating = rounds[len(rounds) // 2]
        spread = statistics.pstdev(t for t, _ in rounds)
        print(f"| {name} | {total:.2f} (±{spread:.2f}) | {validating:.2f} | {validating / total:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
