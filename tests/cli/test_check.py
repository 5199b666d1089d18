"""`ckptfix check`: exit codes, output formats, rule selection, summary, stdin, version."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema

from tests.cli.conftest import BAD, CLEAN, REPO, finding_codes, run_cli

TEXT_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<code>CKP\d{3}) (?P<message>.+)$")


def test_findings_exit_1_one_line_each_summary_on_stderr(tree: Path) -> None:
    result = run_cli("check", cwd=tree)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(TEXT_LINE.match(line) for line in lines), result.stdout
    ckp001 = [TEXT_LINE.match(line) for line in lines if " CKP001 " in line]
    assert ckp001 and ckp001[0]["path"] == "train.py" and ckp001[0]["line"] == "6"
    assert "util.py" not in result.stdout
    assert "finding" in result.stderr and "CKP001" not in result.stderr  # data on stdout only


def test_clean_file_exit_0_and_no_output(tree: Path) -> None:
    result = run_cli("check", "util.py", cwd=tree)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr


def test_quiet_prints_data_only(tree: Path) -> None:
    result = run_cli("check", "-q", cwd=tree)
    assert result.returncode == 1
    assert result.stderr == ""
    assert "CKP001" in finding_codes(result.stdout)


def test_json_format(tree: Path) -> None:
    result = run_cli("check", "--output-format", "json", cwd=tree)
    assert result.returncode == 1
    records = json.loads(result.stdout)
    assert isinstance(records, list)
    assert all({"path", "line", "col", "code", "message", "fixable"} <= set(r) for r in records)
    first = next(r for r in records if r["code"] == "CKP001")
    assert (first["path"], first["line"]) == ("train.py", 6)
    assert isinstance(first["fixable"], bool) and isinstance(first["col"], int)


def test_json_format_clean_is_empty_array(tree: Path) -> None:
    result = run_cli("check", "--output-format", "json", "util.py", cwd=tree)
    assert (result.returncode, json.loads(result.stdout)) == (0, [])


def test_github_format(tree: Path) -> None:
    result = run_cli("check", "--output-format", "github", cwd=tree)
    assert result.returncode == 1
    pattern = re.compile(r"^::error file=train\.py,line=\d+,col=\d+,title=CKP\d{3}::\S.*$")
    assert all(pattern.match(line) for line in result.stdout.splitlines()), result.stdout
    assert "::error file=train.py,line=6,col=1,title=CKP001::" in result.stdout


def test_github_format_escapes_workflow_command_syntax(tmp_path: Path) -> None:
    odd = tmp_path / "a,b:c"
    odd.mkdir()
    (odd / "train.py").write_text(BAD)
    result = run_cli("check", "--output-format", "github", cwd=tmp_path)
    assert "file=a%2Cb%3Ac/train.py," in result.stdout, result.stdout


def test_sarif_validates_against_the_2_1_0_schema(tree: Path) -> None:
    result = run_cli("check", "--output-format", "sarif", cwd=tree)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    schema = json.loads((REPO / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    run = document["runs"][0]
    rule_ids = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    result_ckp001 = next(r for r in run["results"] if r["ruleId"] == "CKP001")
    assert rule_ids[result_ckp001["ruleIndex"]] == "CKP001"
    location = result_ckp001["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "train.py"
    assert location["region"]["startLine"] == 6


def test_sarif_with_no_findings_is_valid(tree: Path) -> None:
    result = run_cli("check", "--output-format", "sarif", "util.py", cwd=tree)
    assert result.returncode == 0
    schema = json.loads((REPO / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.validate(json.loads(result.stdout), schema)


def test_select_ignore_extend_select(tree: Path) -> None:
    assert "CKP001" in finding_codes(run_cli("check", "--select", "CKP00", cwd=tree).stdout)
    assert "CKP001" in finding_codes(run_cli("check", "--select", "ALL", cwd=tree).stdout)
    ignored = run_cli("check", "--ignore", "CKP001", cwd=tree)
    assert "CKP001" not in finding_codes(ignored.stdout)
    only_other = run_cli("check", "--select", "CKP006", cwd=tree)
    assert set(finding_codes(only_other.stdout)) <= {"CKP006"}
    extended = run_cli("check", "--select", "CKP006", "--extend-select", "CKP001", cwd=tree)
    assert "CKP001" in finding_codes(extended.stdout)
    comma = run_cli("check", "--select", "CKP006,CKP001", cwd=tree)
    assert "CKP001" in finding_codes(comma.stdout)


def test_unknown_selector_is_a_usage_error(tree: Path) -> None:
    result = run_cli("check", "--select", "CKP9", cwd=tree)
    assert result.returncode == 2
    assert "'CKP9'" in result.stderr and result.stdout == ""


def test_bad_flag_values_exit_2(tree: Path) -> None:
    for args in (["--barrier-timeout", "0"], ["--style", "fancy"], ["-j", "0"], ["--output-format", "xml"]):
        result = run_cli("check", *args, cwd=tree)
        assert result.returncode == 2, (args, result.stderr)


def test_summary_checklist(tree: Path) -> None:
    result = run_cli("check", "--summary", cwd=tree)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 7, result.stdout
    only_main = next(line for line in lines if "CKP001" in line)
    assert only_main.startswith("✗") and re.search(r"\b1 place\b", only_main)
    clean = run_cli("check", "--summary", "util.py", cwd=tree)
    assert clean.returncode == 0
    assert all(line.startswith("✓") for line in clean.stdout.splitlines()), clean.stdout


def test_summary_marks_deselected_checks(tree: Path) -> None:
    result = run_cli("check", "--summary", "--select", "CKP001", cwd=tree)
    deselected = [line for line in result.stdout.splitlines() if "CKP005" in line]
    assert deselected and deselected[0].startswith("-")


def test_summary_json(tree: Path) -> None:
    rows = json.loads(run_cli("check", "--summary", "--output-format", "json", cwd=tree).stdout)
    row = next(r for r in rows if r["codes"] == ["CKP001"])
    assert row["missing"] == 1 and row["checked"] is True


def test_stdin_with_filename(tree: Path) -> None:
    result = run_cli("check", "-", "--stdin-filename", "pkg/train.py", cwd=tree, input=BAD.encode())
    assert result.returncode == 1
    assert b"pkg/train.py:6:1: CKP001" in result.stdout
    clean = run_cli("check", "-", cwd=tree, input=CLEAN.encode())
    assert (clean.returncode, clean.stdout) == (0, b"")


def test_stdin_force_exclude_by_filename(tree: Path) -> None:
    result = run_cli(
        "check", "-", "--stdin-filename", "build/train.py", "--force-exclude", cwd=tree, input=BAD.encode()
    )
    assert (result.returncode, result.stdout) == (0, b"")


def test_stdin_cannot_mix_with_paths(tree: Path) -> None:
    assert run_cli("check", "-", "train.py", cwd=tree, input=b"").returncode == 2
    assert run_cli("check", "train.py", "--stdin-filename", "x.py", cwd=tree, input=b"").returncode == 2


def test_stdin_filename_alone_reads_stdin(tree: Path) -> None:
    result = run_cli("check", "--stdin-filename", "t.py", cwd=tree, input=BAD.encode())
    assert result.returncode == 1 and b"t.py:6:1: CKP001" in result.stdout


def test_jobs_do_not_change_the_result(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / f"m{i:02d}.py").write_text(BAD if i % 3 == 0 else CLEAN)
    serial = run_cli("check", "-j", "1", cwd=tmp_path)
    parallel = run_cli("check", "-j", "2", cwd=tmp_path)
    assert serial.returncode == parallel.returncode == 1
    assert serial.stdout == parallel.stdout
    assert finding_codes(serial.stdout).count("CKP001") == 14


def test_color(tree: Path) -> None:
    assert "\x1b[" in run_cli("check", "--color", cwd=tree).stdout
    assert "\x1b[" not in run_cli("check", cwd=tree).stdout  # piped: never
    assert "\x1b[" not in run_cli("check", "--no-color", cwd=tree).stdout


def test_version_and_python_m(tree: Path) -> None:
    from ckptfix import __version__

    result = run_cli("--version", cwd=tree)
    assert (result.returncode, result.stdout.strip()) == (0, f"ckptfix {__version__}")


def test_usage_error_exit_2(tree: Path) -> None:
    assert run_cli("check", "--no-such-flag", cwd=tree).returncode == 2
    assert run_cli("frobnicate", cwd=tree).returncode == 2


def test_verbose_reports_each_file(tree: Path) -> None:
    result = run_cli("check", "-v", cwd=tree)
    assert "train.py:" in result.stderr and "util.py: skipped" in result.stderr


def test_no_python_files_is_clean(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("torch.save(x, 'y')\n")
    result = run_cli("check", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "")


def test_clean_run_imports_neither_torch_nor_libcst(tree: Path) -> None:
    """Startup cost is what pre-commit pays per commit: no torch, and no libcst without a candidate."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ckptfix", "check", "util.py"],
        cwd=tree,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    modules = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    assert "click" in modules
    assert not {m for m in modules if m.split(".")[0] in ("torch", "libcst", "numpy")}


def test_unprocessable_files_are_annotations_in_ci_formats(tree: Path) -> None:
    (tree / "broken.py").write_text(BAD + "torch.save(model\n")
    github = run_cli("check", "--output-format", "github", cwd=tree)
    assert github.returncode == 2
    assert any(
        line.startswith("::error file=broken.py,title=ckptfix::") for line in github.stdout.splitlines()
    )
    sarif = run_cli("check", "--output-format", "sarif", cwd=tree)
    document = json.loads(sarif.stdout)
    schema = json.loads((REPO / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    invocation = document["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    notification = invocation["toolExecutionNotifications"][0]
    assert notification["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "broken.py"


def test_suppression_comments(tmp_path: Path) -> None:
    save = 'torch.save(model.state_dict(), "ckpt.pt")'
    for comment in ("# ckptfix: ignore[CKP001]", "# ckptfix: ignore", "# noqa: CKP001"):
        (tmp_path / "train.py").write_text(BAD.replace(save, f"{save}  {comment}"))
        result = run_cli("check", "train.py", cwd=tmp_path)
        assert "train.py:6:1: CKP001" not in result.stdout, comment
    (tmp_path / "train.py").write_text(BAD.replace(save, f"{save}  # ckptfix: ignore[CKP005]"))
    assert "train.py:6:1: CKP001" in run_cli("check", "train.py", cwd=tmp_path).stdout
