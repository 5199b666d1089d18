"""Is this module distributed training code? Single-process scripts get no findings (issue 3)."""

from __future__ import annotations

import ast

from ckptfix.analysis import catalog
from ckptfix.analysis.names import Names
from ckptfix.analysis.tree import Tree


def is_distributed(tree: Tree, names: Names) -> bool:
    """The module imports or reaches torch.distributed / DDP / FSDP / accelerate / deepspeed (and kin),
    or reads the launcher's RANK / LOCAL_RANK / WORLD_SIZE variables. Cheapest test first."""
    prefixes = catalog.DISTRIBUTED_MODULE_PREFIXES
    if any(module.startswith(prefixes) for module in names.imported):
        return True
    if any(node.value in catalog.LAUNCHER_ENV_VARS for node in tree.of_type(ast.Constant)):
        return True
    for node in tree.of_type(ast.Attribute):
        resolved = names.resolve(node)
        if resolved is not None and resolved.startswith(prefixes):
            return True
    return False
