"""End to end on 2 gloo ranks under torchrun (CPU): a rewritten trainer's barriers really wait.

A trainer that followed the guide by hand (int barrier timeouts inside try/except) gets CKP003 at
each barrier; before the rewrite rank 1 does not wait for rank 0's slow save, after it does. (That
a rewritten seed-style trainer writes on rank 0 only is shown by fixtures/seed_trainer.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ckptfix.api import check_source, fix_source
from tests.e2e.launch import torchrun

HERE = Path(__file__).parent
pytest.importorskip("torch.distributed.run")


def _rewrite(source: str) -> str:
    result = fix_source(source)
    assert result.new_source is not None
    assert fix_source(result.new_source).new_source is None
    return result.new_source


@pytest.mark.timeout(150)
def test_guide_trainer_barriers_really_synchronize_after_apply(tmp_path: Path) -> None:
    guide = (HERE / "guide_trainer.py").read_text()
    found = [(f.code, f.line) for f in check_source(guide)]
    barrier_lines = [n for n, line in enumerate(guide.splitlines(), 1) if "    dist.barrier(timeout=" in line]
    assert [line for code, line in found if code == "CKP003"] == barrier_lines
    assert "CKP001" not in {code for code, _ in found}  # the call site is already guarded

    def rank1_waited(logs: Path) -> list[bool]:
        saved = json.loads((logs / "events_0.json").read_text())["saved"]
        passed = json.loads((logs / "events_1.json").read_text())["passed"]
        assert len(saved) == len(passed) == 2
        return [p >= s - 0.05 for s, p in zip(saved, passed, strict=True)]

    assert rank1_waited(torchrun(guide, tmp_path / "before")) == [False, False]
    assert rank1_waited(torchrun(_rewrite(guide), tmp_path / "after")) == [True, True]
