"""Checking a file must stay cheap: it never imports torch, and imports libcst only to rewrite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

PROBE = """
import sys
from ckptfix.api import check_source, fix_source
source = "import torch\\nimport torch.distributed as dist\\ndef f(m):\\n    torch.save(m, 'c.pt')\\n"
assert check_source(source)
print("torch" in sys.modules, "libcst" in sys.modules)
assert fix_source(source).new_source
print("torch" in sys.modules, "libcst" in sys.modules)
"""


def test_check_imports_neither_torch_nor_libcst() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "False", "False", "True"]
