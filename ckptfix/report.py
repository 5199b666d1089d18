"""Output formats for findings: text for people, json for scripts, github and sarif for CI.

Each function returns the whole text for stdout; the CLI decides where it goes. Nothing here
imports the analysis: formatting must work from Finding records alone (plus rule metadata for SARIF).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ckptfix import __version__
from ckptfix.findings import Finding

FORMATS = ("text", "json", "github", "sarif")

INFORMATION_URI = "https://github.com/ckptfix/ckptfix"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def text(findings: Iterable[Finding], color: bool = False) -> str:
    """`path:line:col: CODE message`, the shape editors and ruff's users already parse."""
    import click

    lines = []
    for f in findings:
        where = f"{f.path}:{f.line}:{f.col}:"
        code = f.code
        if color:
            where = click.style(where, bold=True)
            code = click.style(code, fg="red", bold=True)
        lines.append(f"{where} {code} {f.message}")
    return "".join(line + "\n" for line in lines)


def json_report(findings: Iterable[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], indent=2) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github(findings: Iterable[Finding], errors: Sequence[tuple[str, str]] = ()) -> str:
    """GitHub Actions workflow commands: each finding becomes an annotation on the pull request.

    Files that could not be processed are annotated too: a CI log line is easy to miss, and a
    file that was not checked must not look like a file that passed.
    """
    lines = [
        f"::error file={_escape_property(f.path)},line={f.line},col={f.col},"
        f"title={_escape_property(f.code)}::{_escape_data(f.message)}\n"
        for f in findings
    ]
    lines += [
        f"::error file={_escape_property(path)},title=ckptfix::{_escape_data(message)}\n"
        for path, message in errors
    ]
    return "".join(lines)


def _sarif_uri(path: str) -> dict[str, str]:
    # Code scanning resolves relative URIs against the checkout: paths from a run at the repo root.
    if os.path.isabs(path):
        from pathlib import Path

        return {"uri": Path(path).as_uri()}
    return {"uri": path.replace(os.sep, "/"), "uriBaseId": "%SRCROOT%"}


def sarif(findings: Sequence[Finding], errors: Sequence[tuple[str, str]] = ()) -> str:
    """SARIF 2.1.0 as GitHub code scanning takes it: one run, rule metadata, one result per finding."""
    from ckptfix.rules import RULES

    codes = sorted(set(RULES) | {f.code for f in findings})
    index = {code: i for i, code in enumerate(codes)}
    rules: list[dict[str, Any]] = []
    for code in codes:
        rule = RULES.get(code)
        entry: dict[str, Any] = {"id": code, "defaultConfiguration": {"level": "error"}}
        if rule is not None:
            entry.update(
                name=rule.name,
                shortDescription={"text": rule.summary},
                fullDescription={"text": rule.explanation},
                help={"text": rule.explanation},
                properties={"fixable": rule.fixable},
            )
        rules.append(entry)
    results = [
        {
            "ruleId": f.code,
            "ruleIndex": index[f.code],
            "level": "error",
            "message": {"text": f.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": _sarif_uri(f.path),
                        "region": {"startLine": f.line, "startColumn": f.col},
                    }
                }
            ],
        }
        for f in findings
    ]
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "ckptfix",
                        "version": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "results": results,
                "invocations": [
                    {
                        "executionSuccessful": not errors,
                        "toolExecutionNotifications": [
                            {
                                "level": "error",
                                "message": {"text": message},
                                "locations": [{"physicalLocation": {"artifactLocation": _sarif_uri(path)}}],
                            }
                            for path, message in errors
                        ],
                    }
                ],
            }
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def render(
    findings: Sequence[Finding], fmt: str, color: bool = False, errors: Sequence[tuple[str, str]] = ()
) -> str:
    """Findings in format `fmt`. Per-file `errors` (path, message) are part of the CI formats only:
    text and json users get them on stderr, where people look."""
    if fmt == "json":
        return json_report(findings)
    if fmt == "github":
        return github(findings, errors)
    if fmt == "sarif":
        return sarif(findings, errors)
    return text(findings, color)


# The guide's verification checklist, each item backed by the rules whose findings mean "not done".
CHECKLIST: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Only the main process saves checkpoints", ("CKP001",)),
    ("A barrier follows every checkpoint save", ("CKP002",)),
    ("Timeout protection that works (timedelta timeouts, sync errors not swallowed)", ("CKP003", "CKP007")),
    ("Final synchronization before training ends", ("CKP004",)),
    ("Atomic checkpoint writes", ("CKP005",)),
    ("No collective runs under a main-process guard", ("CKP006",)),
    ("A failed save is reported to every rank, not fatal to the writer alone", ("CKP008",)),
)


@dataclass(frozen=True)
class CheckRow:
    check: str
    codes: tuple[str, ...]
    checked: bool  # False when every rule behind it is deselected
    missing: int  # places (findings) still missing it


def checklist_rows(findings: Sequence[Finding], selected: frozenset[str]) -> list[CheckRow]:
    rows = []
    for title, codes in CHECKLIST:
        enabled = {c for c in codes if c in selected}
        missing = sum(1 for f in findings if f.code in enabled)
        rows.append(CheckRow(title, codes, bool(enabled), missing))
    return rows


def checklist(findings: Sequence[Finding], selected: frozenset[str], fmt: str, color: bool = False) -> str:
    """`check --summary`: the guide's checklist for the whole tree, with the places still missing each."""
    rows = checklist_rows(findings, selected)
    if fmt == "json":
        return json.dumps([asdict(row) for row in rows], indent=2) + "\n"
    import click

    out = []
    for row in rows:
        if not row.checked:
            mark, detail = "-", "not checked (rules deselected)"
        elif row.missing:
            mark, detail = "✗", f"{row.missing} place{'s' if row.missing != 1 else ''} missing it"
        else:
            mark, detail = "✓", "ok"
        if color and mark != "-":
            mark = click.style(mark, fg="red" if mark == "✗" else "green", bold=True)
        out.append(f"{mark} {row.check} ({', '.join(row.codes)}): {detail}\n")
    return "".join(out)
