"""The byte prefilter may rule a file out only when the analysis would find nothing in it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ckptfix import prefilter
from ckptfix.analysis import catalog
from ckptfix.api import check_source
from ckptfix.options import Options
from ckptfix.rules import RULES
from tests.codemods.helpers import src

DEFAULT = Options()


def test_distributed_markers_cover_every_detection_path() -> None:
    for prefix in catalog.DISTRIBUTED_MODULE_PREFIXES:
        assert prefix.rsplit(".", 1)[-1] in prefilter.DISTRIBUTED_STARTS, prefix
        assert prefilter._distributed(f"import {prefix}\n".encode()), prefix
    for var in catalog.LAUNCHER_ENV_VARS:
        for spelled in (f"os.environ['{var}']", f'env("{var}")', f'f"{{p}}{var}"', f'f"{var}{{s}}"'):
            assert prefilter._distributed(spelled.encode()), spelled
            assert check_source(f"import os\n{spelled}\n") == []  # parses; distributed, nothing to find


@pytest.mark.parametrize(
    "source",
    [
        "import torch.distributed as dist\n",
        "x = 1  # see\nfrom torch import distributed\n",
        'x = "#"; import torch.distributed\n',  # a quote before the `#`: it may be in a string
        'f"""\n# {torch.distributed.get_rank()}"""\n',  # an f-string field after the `#`
        "import pytorch_lightning as pl\n",
        "rank = os.environ['LOCAL_RANK']\n",
    ],
)
def test_distributed_kept(source: str) -> None:
    assert prefilter._distributed(source.encode())


@pytest.mark.parametrize(
    "source",
    [
        "# works with torch.distributed too\nimport torch\n",
        "from torch._C._distributed_c10d import FakeWork\n",  # a longer identifier
        "x = 1  # torch.distributed.barrier()\n",
        '"""\nA docstring line # that mentions distributed\n"""\n',
        "MAX_TENSOR_RANK = 4\n",
    ],
)
def test_distributed_ruled_out(source: str) -> None:
    assert not prefilter._distributed(source.encode())


def test_guard_spellings_cover_the_catalogue() -> None:
    names = (
        catalog.MAIN_PREDICATES
        | catalog.LOCAL_MAIN_PREDICATES
        | catalog.MAIN_ONLY_DECORATORS
        | catalog.LOCAL_ONLY_DECORATORS
        | catalog.LOCAL_RANK_CALLS
        | catalog.GLOBAL_RANK_ENV
        | catalog.LOCAL_RANK_ENV
        | {"get_rank", "local_rank", "args.rank"}
    )
    for name in (*names, "Rank"):
        data = f"import torch.distributed as dist\nif {name} == 0:\n    dist.all_reduce(t)\n".encode()
        assert prefilter._guarded_sync(data, DEFAULT), name
        assert prefilter._has_markers(data, DEFAULT), name  # stage one lets it through too
    loop = (
        b"import torch.distributed as dist\n"
        b"while go:\n    if Rank == 0:\n        break\n    sync.synchronize()\n"
    )
    assert prefilter.might_need_work(loop, DEFAULT)
    assert "CKP006" in [f.code for f in check_source(loop.decode())]  # and the analysis agrees


@pytest.mark.parametrize("code", sorted(RULES))
def test_every_rule_example_passes(code: str) -> None:
    before = src(RULES[code].before)
    assert any(f.code == code for f in check_source(before))
    assert prefilter.might_need_work(before.encode(), DEFAULT), code


@pytest.mark.parametrize(
    "source",
    [
        "import torch.distributed as dist\ntorch.save(m, p)\n",
        "import torch.distributed as dist\nfrom torch import save as keep\nkeep(m, p)\n",
        "import torch.distributed as dist\nsave_file(t, p)\n",
        "from accelerate import Accelerator\nmodel.save_pretrained(d)\n",
        "import torch.distributed as dist\ndist.init_process_group('nccl')\n",
        "from torch.nn.parallel import DistributedDataParallel as DDP\ntorch.save(m, p)\n",
        # `should_save` is the guard; `save_state` a collective (accelerate): neither is a `save`.
        "import accelerate\nif args.should_save:\n    accelerator.wait_for_everyone()\n",
        "import accelerate\nif rank == 0:\n    accelerator.save_state(d)\n",
        "import torch.distributed as dist\nif dist.get_rank() == 0:\n    dist.all_reduce(t)\n",
        "import torch.distributed as dist\nfor b in data:\n    loss.backward()\n    if RANK == 0:\n"
        "        break\n",
    ],
)
def test_kept(source: str) -> None:
    assert prefilter.might_need_work(source.encode(), DEFAULT)


@pytest.mark.parametrize(
    "source",
    [
        # Longer identifiers that merely contain the names the rules match.
        "import torch.distributed as dist\nctx.save_for_backward(x)\nif rank == 0:\n    pass\n",
        "import torch.distributed as dist\ndef f(process_group=None):\n    return process_group\n",
        "import torch.distributed as dist\nif rank == 0:\n    total = reduced + 1\n",
        # A collective word but no guard; a guard but no call every rank makes.
        "import torch.distributed as dist\nfrom functools import reduce\nreduce(f, xs)\n",
        "import torch.distributed as dist\nif dist.get_rank() == 0:\n    print('hello')\n",
        # A loop sync with no way to leave the loop on one rank.
        "import torch.distributed as dist\nfor b in data:\n    loss.backward()\n    if rank == 0:\n"
        "        log(b)\n",
    ],
)
def test_ruled_out(source: str) -> None:
    data = source.encode()
    assert not prefilter.might_need_work(data, DEFAULT)
    assert check_source(source) == []


def test_whole_identifiers() -> None:
    assert prefilter._has_identifier(b"x.save(p)", "save")
    assert prefilter._has_identifier(b"save", "save")
    assert not prefilter._has_identifier(b"save_for_backward", "save")
    assert not prefilter._has_identifier(b"autosave(x)", "save")
    assert not prefilter._has_identifier("sav\u00e9 = save\u00e9".encode(), "save")  # longer identifiers
    assert not prefilter._has_identifier(b"x = 1  # torch.save(m, p)\n", "save")  # a comment
    assert prefilter._has_identifier(b"# a\nsave(m, p)\n", "save")
    assert prefilter._has_identifier(b"s = '#'; save(m, p)\n", "save")  # the `#` may be in a string


def test_stage_two_never_drops_what_the_analysis_finds_in_torch() -> None:
    """Every torch file that only the identifier stage rules out really has no findings."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torch is not installed")
    dropped = 0
    for path in sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py")):
        data = path.read_bytes()
        if not prefilter._has_markers(data, DEFAULT) or prefilter._has_identifiers(data, DEFAULT):
            continue
        dropped += 1
        assert check_source(data.decode("utf-8"), str(path)) == [], path
    assert dropped > 50
