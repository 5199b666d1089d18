"""`[tool.ckptfix]`: found from the inputs, validated key by key, and overridden by flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptfix.config import CliFlags, ConfigError, find_config, load_config, resolve, select_codes
from tests.cli.conftest import BAD, finding_codes, run_cli

ALL = {f"CKP00{i}" for i in range(1, 9)}


def _project(root: Path, table: str) -> Path:
    (root / "pyproject.toml").write_text(f"[project]\nname = 'demo'\n\n[tool.ckptfix]\n{table}\n")
    (root / "train.py").write_text(BAD)
    return root


def test_config_select_and_cli_override(tmp_path: Path) -> None:
    _project(tmp_path, 'ignore = ["CKP001"]')
    assert "CKP001" not in finding_codes(run_cli("check", cwd=tmp_path).stdout)
    # A --select on the command line starts afresh, like ruff's.
    assert "CKP001" in finding_codes(run_cli("check", "--select", "CKP001", cwd=tmp_path).stdout)


def test_nearest_pyproject_with_our_table_wins(tmp_path: Path) -> None:
    _project(tmp_path, 'ignore = ["CKP001"]')
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "pyproject.toml").write_text("[project]\nname = 'sub'\n")  # no [tool.ckptfix]: keep looking
    (sub / "train.py").write_text(BAD)
    assert "CKP001" not in finding_codes(run_cli("check", "train.py", cwd=sub).stdout)
    assert find_config(sub) == tmp_path / "pyproject.toml"


def test_config_found_from_the_paths_not_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    _project(tmp_path / "proj", 'ignore = ["CKP001"]')
    assert "CKP001" not in finding_codes(run_cli("check", "proj", cwd=tmp_path).stdout)


def test_config_exclude_is_relative_to_the_config_file(tmp_path: Path) -> None:
    _project(tmp_path, 'extend-exclude = ["/gen"]')
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "out.py").write_text(BAD)
    (tmp_path / "pkg" / "gen").mkdir(parents=True)
    (tmp_path / "pkg" / "gen" / "kept.py").write_text(BAD)
    out = run_cli("check", cwd=tmp_path / "pkg").stdout + run_cli("check", cwd=tmp_path).stdout
    assert "out.py" not in out and "kept.py" in out


def test_explicit_config_file(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(BAD)
    (tmp_path / "ckptfix.toml").write_text('ignore = ["CKP001"]\n')
    result = run_cli("check", "--config", "ckptfix.toml", cwd=tmp_path)
    assert "CKP001" not in finding_codes(result.stdout)
    missing = run_cli("check", "--config", "nope.toml", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.toml" in missing.stderr


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ("selct = ['CKP001']", "`selct`"),
        ("select = 'CKP001'", "`select`"),
        ("select = ['CKP9']", "'CKP9'"),
        ("barrier-timeout = 'long'", "`barrier-timeout`"),
        ("final-timeout = -1", "`final-timeout`"),
        ("barrier-timeout = true", "`barrier-timeout`"),
        ("style = 'fancy'", "`style`"),
        ("assume-distributed = 'yes'", "`assume-distributed`"),
        ("rewrite-local-rank-guards = 1", "`rewrite-local-rank-guards`"),
        ("extra-save-functions = ['not a name']", "`extra-save-functions`"),
        ("exclude = [1]", "`exclude`"),
    ],
)
def test_bad_config_names_the_key_and_exits_2(tmp_path: Path, table: str, named: str) -> None:
    _project(tmp_path, table)
    for command in ("check", "apply"):
        result = run_cli(command, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert named in result.stderr and "pyproject.toml" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (tmp_path / "train.py").read_text() == BAD


def test_invalid_toml_exits_2(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.ckptfix\nselect = [")
    (tmp_path / "train.py").write_text(BAD)
    result = run_cli("check", cwd=tmp_path)
    assert result.returncode == 2 and "invalid TOML" in result.stderr


def test_every_key_reaches_the_options(tmp_path: Path) -> None:
    path = (
        _project(
            tmp_path,
            "\n".join(
                [
                    'select = ["CKP00"]',
                    'ignore = ["CKP005"]',
                    'extend-select = ["CKP005"]',
                    'exclude = ["gen"]',
                    'extend-exclude = ["old"]',
                    'style = "inline"',
                    "barrier-timeout = 30",
                    "final-timeout = 45.5",
                    'extra-save-functions = ["mylib.io.save_ckpt"]',
                    'extra-main-predicates = ["mylib.dist.is_chief"]',
                    "assume-distributed = true",
                    "rewrite-local-rank-guards = true",
                ]
            ),
        )
        / "pyproject.toml"
    )
    settings = resolve(load_config(path), CliFlags())
    options = settings.options
    assert options.select == ALL
    assert (options.style, options.barrier_timeout, options.final_timeout) == ("inline", 30.0, 45.5)
    assert options.extra_save_functions == ("mylib.io.save_ckpt",)
    assert options.extra_main_predicates == ("mylib.dist.is_chief",)
    assert options.assume_distributed is True
    assert options.rewrite_local_rank_guards is True
    assert settings.exclude == ("gen", "old")
    assert settings.root == tmp_path.resolve()
    flags = CliFlags(style="runtime", barrier_timeout=5.0, final_timeout=6.0, exclude=("x",))
    overridden = resolve(load_config(path), flags)
    assert (overridden.options.style, overridden.options.barrier_timeout) == ("runtime", 5.0)
    assert overridden.options.final_timeout == 6.0
    assert overridden.exclude == ("x", "old")


def test_defaults_without_config(tmp_path: Path) -> None:
    settings = resolve(load_config(None), CliFlags())
    assert settings.options.select == ALL
    assert (settings.options.barrier_timeout, settings.options.final_timeout) == (120.0, 180.0)
    assert ".venv" in settings.exclude


def test_selection_rules() -> None:
    config = load_config(None)
    assert select_codes(config, CliFlags(select=("CKP001",), extend_select=("CKP002",))) == {
        "CKP001",
        "CKP002",
    }
    assert select_codes(config, CliFlags(ignore=("CKP00",))) == frozenset()
    assert select_codes(config, CliFlags(select=("ALL",), ignore=("CKP006",))) == ALL - {"CKP006"}
    with pytest.raises(ConfigError, match="'XYZ'"):
        select_codes(config, CliFlags(select=("XYZ",)))
