"""`ckptfix rules` and `ckptfix explain`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import run_cli

CODES = [f"CKP00{i}" for i in range(1, 9)]


def test_rules_table_lists_every_code(tmp_path: Path) -> None:
    result = run_cli("rules", cwd=tmp_path)
    assert result.returncode == 0
    listed = [line.split()[0] for line in result.stdout.splitlines()]
    assert listed[: len(CODES)] == CODES or set(CODES) <= set(listed)


def test_rules_json(tmp_path: Path) -> None:
    rules = json.loads(run_cli("rules", "--output-format", "json", cwd=tmp_path).stdout)
    assert set(CODES) <= {r["code"] for r in rules}
    fields = {"code", "name", "summary", "explanation", "before", "after", "fixable"}
    assert all(fields <= set(r) for r in rules)


def test_explain_shows_what_why_and_example(tmp_path: Path) -> None:
    from ckptfix.rules import RULES

    result = run_cli("explain", "ckp001", cwd=tmp_path)
    assert result.returncode == 0
    rule = RULES["CKP001"]
    assert result.stdout.startswith(f"CKP001 ({rule.name})")
    assert "Before:" in result.stdout and "After:" in result.stdout
    assert rule.before.strip().splitlines()[0].strip() in result.stdout


def test_explain_unknown_code(tmp_path: Path) -> None:
    result = run_cli("explain", "CKP999", cwd=tmp_path)
    assert result.returncode == 2 and "CKP999" in result.stderr
