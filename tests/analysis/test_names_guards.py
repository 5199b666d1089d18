"""Name resolution and guard recognition, tested on expressions directly."""

from __future__ import annotations

import ast

import pytest

from ckptfix.analysis import catalog
from ckptfix.analysis.guards import GuardRecognizer, Kind
from ckptfix.analysis.names import Names, canonical
from ckptfix.analysis.tree import Tree


def _resolve(module: str, expr: str) -> str | None:
    names = Names(ast.parse(module))
    return names.resolve(ast.parse(expr, mode="eval").body)


@pytest.mark.parametrize(
    ("module", "expr", "expected"),
    [
        ("import torch as th", "th.save", "torch.save"),
        ("from torch import save", "save", "torch.save"),
        ("import torch", "torch.serialization.save", "torch.save"),
        ("from torch.serialization import save as s", "s", "torch.save"),
        ("import torch.distributed as dist", "dist.barrier", "torch.distributed.barrier"),
        ("from torch import distributed as d", "d.distributed_c10d.barrier", "torch.distributed.barrier"),
        ("import mylib.dist as dist", "dist.barrier", "mylib.dist.barrier"),
        ("import torch\nsave_fn = torch.save", "save_fn", "torch.save"),
        ("import torch\nf = torch.save\nf = print", "f", None),
        ("import torch.distributed", "torch.distributed.get_rank", "torch.distributed.get_rank"),
        ("", "torch.save", None),
        ("from . import utils", "utils.save", "..utils.save"),
    ],
)
def test_resolution(module: str, expr: str, expected: str | None) -> None:
    assert _resolve(module, expr) == expected


def test_canonical_is_idempotent() -> None:
    assert canonical(canonical("torch.serialization.save")) == "torch.save"


def test_fresh_names_avoid_every_use() -> None:
    names = Names(ast.parse("def is_main_process(): pass\nexc = 1\n"))
    assert names.fresh("is_main_process") == "ckptfix_is_main_process"
    assert names.fresh("exc") == "ckptfix_exc"
    assert names.fresh("final_sync") == "final_sync"


RECOGNIZER = GuardRecognizer(Names(ast.parse("from ckptfix.runtime import is_main_process as main_only")))


def _classify(expr: str) -> Kind | None:
    return RECOGNIZER.classify(ast.parse(expr, mode="eval").body)


def _negated(expr: str) -> Kind | None:
    return RECOGNIZER.classify_negated(ast.parse(expr, mode="eval").body)


@pytest.mark.parametrize(
    ("expr", "kind"),
    [
        ("rank == 0", Kind.GLOBAL),
        ("dist.get_rank() == 0", Kind.GLOBAL),
        ("0 == args.rank", Kind.GLOBAL),
        ("not dist.is_initialized() or dist.get_rank() == 0", Kind.GLOBAL),
        ("world_size == 1 or rank == 0", Kind.GLOBAL),
        ("master_process", Kind.GLOBAL),
        ("self.is_master", Kind.GLOBAL),
        ("main_only()", Kind.GLOBAL),
        ("accelerator.is_main_process", Kind.GLOBAL),
        ("trainer.is_world_process_zero()", Kind.GLOBAL),
        ("xm.is_master_ordinal()", Kind.GLOBAL),
        ("int(os.environ['RANK']) == 0", Kind.GLOBAL),
        ("int(os.environ.get('RANK', 0)) == 0", Kind.GLOBAL),
        ("step % 100 == 0 and master_process", Kind.GLOBAL),
        ("not rank", Kind.GLOBAL),
        ("rank < 1", Kind.GLOBAL),
        ("is_main_process() is True", Kind.GLOBAL),
        ("args.local_rank in [-1, 0]", Kind.LOCAL),
        ("gpu_id == 0", Kind.LOCAL),
        ("int(os.environ['LOCAL_RANK']) == 0", Kind.LOCAL),
        ("accelerator.is_local_main_process", Kind.LOCAL),
        ("mpu.get_data_parallel_rank() == 0", Kind.SHARD),
        ("dp_rank == 0", Kind.SHARD),
        ("rank == 1", Kind.SHARD),  # one writer, not rank 0: deliberate (a rank-0 guard in it writes nothing)
        ("rank == world_size - 1", Kind.SHARD),
        ("is_last_rank()", Kind.SHARD),
        ("rank != 0", None),
        ("not is_rank_zero", None),
        ("rank == 0 or force", None),
        ("epoch % 10 == 0", None),
        ("world_size > 1", None),
        ("rank in (0, 1)", None),
    ],
)
def test_guard_kinds(expr: str, kind: Kind | None) -> None:
    assert _classify(expr) == kind


@pytest.mark.parametrize(
    ("expr", "kind"),
    [
        ("rank != 0", Kind.GLOBAL),
        ("dist.get_rank() > 0", Kind.GLOBAL),
        ("not is_main_process()", Kind.GLOBAL),
        ("dist.is_initialized() and dist.get_rank() != 0", Kind.GLOBAL),
        ("args.local_rank not in [-1, 0]", Kind.LOCAL),
        ("rank == 0", None),
        ("epoch > 0", None),
        ("ready and rank != 0", None),
    ],
)
def test_negated_guard_kinds(expr: str, kind: Kind | None) -> None:
    assert _negated(expr) == kind


def test_local_guard_picks_the_strongest_and_sees_early_exits() -> None:
    source = (
        "def f(rank, args):\n"
        "    if args.local_rank in [-1, 0]:\n"
        "        if rank == 0:\n"
        "            save()\n"
        "    if rank != 0:\n"
        "        return\n"
        "    write()\n"
    )
    module = ast.parse(source)
    tree = Tree(source, module)
    calls = {ast.unparse(c.func): c for c in ast.walk(module) if isinstance(c, ast.Call)}
    save_guard = RECOGNIZER.local_guard(tree, calls["save"])
    write_guard = RECOGNIZER.local_guard(tree, calls["write"])
    assert save_guard is not None and save_guard.kind == Kind.GLOBAL and save_guard.exit is None
    assert write_guard is not None and write_guard.exit == "return"


def test_prefilter_markers_cover_every_detection_path() -> None:
    for prefix in catalog.DISTRIBUTED_MODULE_PREFIXES:
        assert any(m in prefix.encode() for m in catalog.DISTRIBUTED_MARKERS), prefix
    for var in catalog.LAUNCHER_ENV_VARS:
        assert any(m in var.encode() for m in catalog.DISTRIBUTED_MARKERS), var


def test_prefilter_markers_cover_the_catalogue() -> None:
    # A qualified name is spelled in the file's imports or attribute chain, so any part of it counts.
    collectives = sorted(catalog.COLLECTIVES) + sorted(catalog.COLLECTIVE_METHODS)
    for name in collectives:
        markers = (*catalog.COLLECTIVE_MARKERS, *catalog.WRITE_MARKERS)
        assert any(m.decode() in name for m in markers), name
    predicates = [
        *catalog.MAIN_PREDICATES,
        *catalog.LOCAL_MAIN_PREDICATES,
        *catalog.MAIN_ONLY_DECORATORS,
        *catalog.LOCAL_ONLY_DECORATORS,
        *catalog.LOCAL_RANK_CALLS,
        "get_rank",
        "local_rank",
    ]
    for name in predicates:
        markers = (*catalog.GUARD_MARKERS, *catalog.WRITE_MARKERS)
        assert any(m.decode() in name for m in markers), name


# --- objects built on the main process only (DESIGN "Traps") --------------------------------------------
_SAVER = "class Saver:\n    def save(self, m):\n        torch.save(m, 'c.pt')\n\n"


@pytest.mark.parametrize(
    "train",
    [
        # a ternary, then `is not None`
        "def train(m):\n    saver = Saver() if dist.get_rank() == 0 else None\n"
        "    for step in range(3):\n        if saver is not None:\n            saver.save(m)\n",
        # None first, built under the guard, then a truthy test on the attribute
        "class T:\n    def __init__(self, rank):\n        self.saver = None\n"
        "        if rank == 0:\n            self.saver = Saver()\n"
        "    def step(self, m):\n        if self.saver:\n            torch.save(m, 'last.pt')\n",
        # an early exit on `is None`
        "def train(m):\n    saver = None if dist.get_rank() != 0 else Saver()\n"
        "    if saver is None:\n        return\n    torch.save(m, 'c.pt')\n",
    ],
)
def test_objects_built_on_the_main_process_only_are_guards(train: str) -> None:
    from tests.codemods.helpers import codes, rewrite, src

    source = src((_SAVER if "saver.save" in train else "class Saver:\n    pass\n\n") + train)
    assert "CKP001" not in codes(source)
    after = rewrite(source)
    assert "is_main_process" not in after  # never a second guard
    # One barrier every rank reaches: after the early exit's function returns, where it has one.
    assert after.count("checkpoint_barrier(timeout=120)") == 1
    if "return" in train:
        assert "    train(*ARGS)\n    checkpoint_barrier(timeout=120)\n" in after


def test_an_object_also_built_on_every_rank_is_not_a_guard() -> None:
    from tests.codemods.helpers import codes, src

    source = src(
        _SAVER + "def train(m, rank):\n    saver = Saver() if rank == 0 else None\n"
        "    saver = Saver()\n    if saver is not None:\n        saver.save(m)\n"
    )
    assert "CKP001" in codes(source)


# --- constructor flags (DESIGN "Traps": `save_to_disk=is_main_process()`) -------------------------------
_FLAGGED_SAVER = (
    "class Saver:\n    def __init__(self, path, save_to_disk=False):\n        self.path = path\n"
    "        self.save_to_disk = save_to_disk\n"
    "    def save(self, m):\n        if self.save_to_disk:\n            torch.save(m, self.path)\n\n"
)


@pytest.mark.parametrize(
    "construct",
    [
        "Saver('c.pt', save_to_disk=dist.get_rank() == 0)",
        "Saver('c.pt', dist.get_rank() == 0)",
        "Saver('c.pt', save_to_disk=is_main_process())",
    ],
)
def test_a_flag_every_construction_sets_on_the_main_process_is_a_guard(construct: str) -> None:
    from tests.codemods.helpers import codes, rewrite, src

    source = src(_FLAGGED_SAVER + f"def train(m):\n    saver = {construct}\n    saver.save(m)\n")
    assert "CKP001" not in codes(source)
    after = rewrite(source)
    assert "is_main_process()" not in after.replace(construct, "")  # never a second guard
    assert after.count("checkpoint_barrier(timeout=120)") == 1


@pytest.mark.parametrize(
    "construct",
    [
        "Saver('c.pt', save_to_disk=True)",  # on every rank
        "Saver('c.pt')",  # the default
        "Saver('c.pt', **options)",  # unknown
    ],
)
def test_a_flag_not_proved_main_only_is_no_guard(construct: str) -> None:
    from tests.codemods.helpers import codes, src

    main_built = "Saver('best.pt', save_to_disk=dist.get_rank() == 0)"
    source = src(_FLAGGED_SAVER + f"def train(m):\n    a = {main_built}\n    b = {construct}\n")
    assert "CKP001" in codes(source)


def test_a_flag_assigned_again_is_no_guard() -> None:
    from tests.codemods.helpers import codes, src

    source = src(
        _FLAGGED_SAVER
        + "    def enable(self):\n        self.save_to_disk = True\n\n"
        + "def train(m):\n    saver = Saver('c.pt', save_to_disk=dist.get_rank() == 0)\n"
    )
    assert "CKP001" in codes(source)


def test_a_name_bound_only_to_a_main_process_test_is_a_guard() -> None:
    from tests.codemods.helpers import codes, rewrite, src

    source = src(
        "def train(m, steps):\n    master = dist.get_rank() == 0\n    for step in range(steps):\n"
        "        if step % 10 == 0 and master:\n            torch.save(m, 'c.pt')\n"
    )
    assert "CKP001" not in codes(source)
    assert "is_main_process()" not in rewrite(source)  # never a second guard


def test_a_name_also_bound_otherwise_is_no_guard() -> None:
    from tests.codemods.helpers import codes, src

    source = src(
        "def train(m, steps):\n    master = dist.get_rank() == 0\n    master = True\n"
        "    if master:\n        torch.save(m, 'c.pt')\n"
    )
    assert "CKP001" in codes(source)
