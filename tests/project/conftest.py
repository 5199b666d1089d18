"""Helpers for project-model tests: write a small multi-file project, link it, analyse one file of it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ckptfix import api
from ckptfix.findings import Finding
from ckptfix.project.build import load_project
from ckptfix.project.link import Project


def write(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path -> source, dedented) under `root`, with a pyproject.toml marker."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").touch()
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def link(root: Path, *paths: str) -> Project:
    warnings: list[str] = []
    project = load_project([str(root / p) for p in paths] or [str(root)], [], True, None, warnings.append)
    assert not warnings
    return project


def check(root: Path, name: str) -> list[Finding]:
    path = str(root / name)
    return api.check_source((root / name).read_text(), path, project=link(root).view(path))


def fix(root: Path, name: str, unsafe: bool = False) -> str:
    """The rewritten text of one file (its own text when nothing is rewritten)."""
    from ckptfix.options import Options

    path = str(root / name)
    text = (root / name).read_text()
    result = api.fix_source(text, path, Options(unsafe_fixes=unsafe), project=link(root).view(path))
    return result.new_source if result.new_source is not None else text


def codes(findings: list[Finding]) -> list[str]:
    return sorted(f.code for f in findings)
