"""Round trip over the installed torch package's own sources (read as text, never imported).

A real corpus of ~2,300 files: files without fixable findings must come back unchanged (None),
rewritten ones must compile, be a fixed point, and gain no collective under a guard (CKP006).
The byte prefilter keeps this to tens of seconds on two cores.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptfix.api import SourceError, check_source, fix_source, might_need_work
from ckptfix.options import Options


def _torch_files() -> Iterator[Path]:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torch is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    yield from sorted(root.rglob("*.py"))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("style", ["runtime", "inline"])
def test_torch_sources_round_trip(style: str) -> None:
    options = Options(style=style)  # type: ignore[arg-type]
    files = candidates = rewritten = 0
    problems: list[str] = []
    for path in _torch_files():
        files += 1
        data = path.read_bytes()
        if not might_need_work(data, options):
            continue
        candidates += 1
        try:
            source = data.decode("utf-8")
            result = fix_source(source, str(path), options)
        except (UnicodeDecodeError, SourceError):
            continue
        if not any(f.fixable for f in result.findings):
            if result.new_source is not None:
                problems.append(f"{path}: changed without a fixed finding")
            continue
        assert result.new_source is not None
        rewritten += 1
        try:
            compile(result.new_source, str(path), "exec")
        except SyntaxError as exc:
            problems.append(f"{path}: rewritten file does not compile: {exc}")
            continue
        again = fix_source(result.new_source, str(path), options)
        if again.new_source is not None:
            problems.append(f"{path}: not idempotent")
        if any(f.fixable for f in again.findings):
            problems.append(f"{path}: fixable findings left after apply")
        before_006 = sum(f.code == "CKP006" for f in check_source(source, str(path), options))
        if sum(f.code == "CKP006" for f in again.findings) > before_006:
            problems.append(f"{path}: the rewrite put a collective under a guard")
    assert files > 1000, "torch sources not found"
    assert candidates > 50 and rewritten > 0
    assert problems == []


def test_prefilter_never_skips_a_file_with_findings() -> None:
    """On a sample of the files the prefilter skips, a full analysis agrees that nothing is there."""
    skipped = 0
    for index, path in enumerate(_torch_files()):
        if index % 7:
            continue
        data = path.read_bytes()
        if might_need_work(data):
            continue
        skipped += 1
        try:
            assert check_source(data.decode("utf-8"), str(path)) == [], path
        except (UnicodeDecodeError, SourceError):
            continue
    assert skipped > 100
