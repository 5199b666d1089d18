"""Is this module distributed training code? Single-process scripts get no findings (issue 3).

Evidence, cheapest first: an import of torch.distributed, DDP/FSDP, deepspeed, torch_xla, Horovod (a
module of that name or inside it: `lightning_utilities` is not `lightning`); accelerate's process-group
API (an `Accelerator`, not `init_empty_weights` in a weight converter); Lightning with more than one
device (`Fabric(devices=1)` is one process); a launcher's RANK/LOCAL_RANK/WORLD_SIZE in a torch program
(a JAX script's argparse boilerplate reads LOCAL_RANK too, and may use torch for its data). A script
that refuses to run on more than one process (`assert world_size == 1`) is not distributed whatever
it imports.
"""

from __future__ import annotations

import ast

from ckptfix.analysis import catalog
from ckptfix.analysis.guards import is_distributed_test, is_single_process_test
from ckptfix.analysis.names import Names, last_name
from ckptfix.analysis.tree import Tree, exits

# What accelerate offers that makes processes talk to each other; the rest of it (init_empty_weights,
# dispatch_model, utils) is used by single-process scripts.
_ACCELERATE_DISTRIBUTED = frozenset(
    {"Accelerator", "PartialState", "AcceleratorState", "notebook_launcher", "DistributedType"}
)
_LIGHTNING = ("lightning", "pytorch_lightning")

# torch.distributed.checkpoint is also what offline converters read and write DCP checkpoints with, in
# one process: its format utilities, the file-system reader, metadata and the no-process-group loader.
_DCP = "torch.distributed.checkpoint"
_DCP_OFFLINE = (
    f"{_DCP}.format_utils",
    f"{_DCP}.metadata",
    f"{_DCP}.FileSystemReader",
    f"{_DCP}.filesystem.FileSystemReader",
    f"{_DCP}.state_dict_loader._load_state_dict_from_keys",
    f"{_DCP}.default_planner._EmptyStateDictLoadPlanner",
)


# deepspeed's device-name helper (`get_accelerator().device_name()`) picks a device in plain
# single-process baselines too; it starts no process group.
_DEEPSPEED_OFFLINE = ("deepspeed.accelerator",)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def is_distributed(tree: Tree, names: Names) -> bool:
    if _refuses_several_processes(tree):
        return False
    if _xla_spmd(tree):
        return False
    imported = [m for m in names.imported if any(_within(m, p) for p in catalog.DISTRIBUTED_MODULE_PREFIXES)]
    if any(_counts(module, tree, names) for module in imported):
        return True
    torch_program = any(_within(m, "torch") for m in names.imported) and not any(
        _within(m, "jax") or _within(m, "flax") for m in names.imported
    )
    if torch_program and any(node.value in catalog.LAUNCHER_ENV_VARS for node in tree.of_type(ast.Constant)):
        return True
    attributes = tree.of_type(ast.Attribute)
    inner = {id(node.value) for node in attributes}  # `torch.distributed` in `torch.distributed.x.y`
    for node in attributes:
        if id(node) in inner:
            continue
        resolved = names.resolve(node)
        if (
            resolved is not None
            and any(_within(resolved, p) for p in catalog.DISTRIBUTED_MODULE_PREFIXES)
            and _counts(resolved, tree, names)
        ):
            return True
    return False


def _counts(module: str, tree: Tree, names: Names) -> bool:
    """The imported name is evidence of a process group."""
    if _within(module, _DCP):
        return _dcp_counts(module, names)
    if any(_within(module, offline) for offline in _DEEPSPEED_OFFLINE):
        return False
    if _within(module, "accelerate"):
        if module == "accelerate":
            return _uses_accelerate_processes(tree)
        return any(part in _ACCELERATE_DISTRIBUTED for part in module.split("."))
    if any(_within(module, p) for p in _LIGHTNING):
        return not _single_device_lightning(tree)
    return True


def _dcp_counts(name: str, names: Names) -> bool:
    """A name of torch.distributed.checkpoint is evidence unless it is an offline one. The package
    imported whole (`import torch.distributed.checkpoint as dcp`), or a module names are imported from,
    says nothing by itself: what the code takes from it decides (`dcp.save` counts)."""
    if any(_within(name, offline) for offline in _DCP_OFFLINE):
        return False
    return name != _DCP and not any(other.startswith(name + ".") for other in names.imported)


def _xla_spmd(tree: Tree) -> bool:
    """`xr.use_spmd()`: one process per host and no torch.distributed process group; the runtime's
    main-process test and barriers would be no-ops (is_master_ordinal is XLA's own business)."""
    return any(last_name(call.func) == "use_spmd" for call in tree.calls)


def _uses_accelerate_processes(tree: Tree) -> bool:
    """`import accelerate` then `accelerate.Accelerator(...)`."""
    return any(node.attr in _ACCELERATE_DISTRIBUTED for node in tree.of_type(ast.Attribute))


def _single_device_lightning(tree: Tree) -> bool:
    """Every Fabric or Trainer the module builds runs one process (`devices=1`)."""
    built = [c for c in tree.calls if last_name(c.func) in {"Fabric", "Trainer"}]
    return bool(built) and all(
        any(
            k.arg == "devices" and isinstance(k.value, ast.Constant) and k.value.value == 1
            for k in call.keywords
        )
        for call in built
    )


def _refuses_several_processes(tree: Tree) -> bool:
    """`assert world_size == 1`, or `if world_size > 1: raise ...`: the script stops if distributed."""
    for node in tree.of_type(ast.Assert):
        if is_single_process_test(node.test):
            return True
    for branch in tree.of_type(ast.If):
        if (
            is_distributed_test(branch.test)
            and branch.body
            and isinstance(branch.body[-1], ast.Raise)
            and all(isinstance(e, ast.Raise) for e in exits(branch))
        ):
            return True
    return False
