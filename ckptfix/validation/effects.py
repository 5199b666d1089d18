"""Side effects a rewrite must not spread to more ranks (or take from the ranks that need them).

A lift that frees a collective from a main-process guard must not drag the rotation of old
checkpoints (`shutil.rmtree`), an upload or a print along to every rank; a guard must never narrow a
per-rank output (a rank's shard, its loader state) to rank 0. Each effect has a category and a label
that survives the rewrite: a write is known by its destination (`torch.save(x, p)` and the
`atomic_save(x, p)` it becomes, or the `os.replace(tmp, p)` of the inline style, all write `p`).
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from dataclasses import dataclass

from ckptfix.analysis.names import Names, dotted, last_name
from ckptfix.analysis.saves import Save, SaveFinder, argument
from ckptfix.analysis.tree import Tree, walk_local

WRITE = "write"
RANK_WRITE = "per-rank write"
DELETE = "deletion"
UPLOAD = "upload"
PRINT = "print"
MAIN_OBJECT = "call on an object that exists on the main process only"

_DELETES = frozenset({"os.remove", "os.unlink", "os.rmdir", "os.removedirs", "shutil.rmtree"})
# The last names of the calls `EffectClassifier.of` may classify (besides the saves and any method of a
# main-process-only object): a trace need not look at calls spelled otherwise.
EFFECT_NAMES = frozenset(
    {"remove", "unlink", "rmdir", "removedirs", "rmtree", "replace", "rename", "move", "copyfile", "copy"}
    | {"push_to_hub", "log_artifact", "log_model", "upload_folder", "upload_file", "save", "print"}
    | {"info", "warning", "warn", "error", "debug", "critical", "exception", "log"}
)
_FILE_MOVES = frozenset({"os.replace", "os.rename", "shutil.move", "shutil.copyfile", "shutil.copy"})
_UPLOAD_NAMES = frozenset({"push_to_hub", "log_artifact", "log_model", "upload_folder", "upload_file"})
_LOG_METHODS = frozenset({"info", "warning", "warn", "error", "debug", "critical", "exception", "log"})


@dataclass(frozen=True)
class Effect:
    category: str
    label: str  # what the effect acts on, as written (normalized by ast.unparse)


def _text(node: ast.AST) -> str:
    return ast.unparse(node)


class EffectClassifier:
    """Which effect a call has, given the module's names and the saves SaveFinder found."""

    def __init__(self, tree: Tree, names: Names, finder: SaveFinder, main_only: Collection[str] = ()) -> None:
        self.tree = tree
        self.names = names
        self.finder = finder
        self._saves: dict[int, Save | None] = {}
        self.main_only = main_only  # `saver` of `saver = Saver() if rank == 0 else None`
        self._single: dict[int, dict[str, ast.expr]] = {}

    def _path_label(self, expr: ast.expr, call: ast.Call) -> str:
        """A destination by what it holds: `path` assigned once in the function (`path =
        os.path.join(d, "ckpt.pt")`) is labelled by its value, so that a rewrite that names the path
        (`checkpoint_path = os.path.join(d, "ckpt.pt")`) writes the same file."""
        if isinstance(expr, ast.Name):
            scope: ast.AST = self.tree.function(call) or self.tree.module
            single = self._single.get(id(scope))
            if single is None:
                single = self._single[id(scope)] = _single_assignments(scope)
            value = single.get(expr.id)
            if value is not None:
                return _text(value)
        return _text(expr)

    def of(self, call: ast.Call) -> Effect | None:
        if id(call) not in self._saves:
            self._saves[id(call)] = self.finder.save(call)
        save = self._saves[id(call)]
        if save is not None:
            if save.in_memory or save.handle_with is not None:
                return None  # a copy in memory, or a write into an open handle (its path is the open's)
            dest = argument(call, save.dest)
            label = self._path_label(dest, call) if dest is not None else _text(call)
            return Effect(RANK_WRITE if save.per_rank else WRITE, label)
        if (
            isinstance(call.func, ast.Attribute)
            and self.main_only
            and dotted(call.func.value) in self.main_only
        ):
            return Effect(MAIN_OBJECT, _text(call))  # None on every other rank: calling it there fails
        resolved = self.names.resolve(call.func)
        name = last_name(call.func) or ""
        if resolved in _DELETES or (
            isinstance(call.func, ast.Attribute) and name in {"unlink", "rmdir", "rmtree"}
        ):
            return Effect(DELETE, _text(call.args[0]) if call.args else _text(call.func))
        if resolved in _FILE_MOVES and len(call.args) >= 2:
            return Effect(WRITE, self._path_label(call.args[1], call))
        if name in _UPLOAD_NAMES or "upload" in name.lower() or resolved in {"wandb.save"}:
            return Effect(UPLOAD, _text(call))
        if isinstance(call.func, ast.Name) and call.func.id == "print" and "print" not in self.names.imports:
            return Effect(PRINT, _text(call))
        if name in _LOG_METHODS and isinstance(call.func, ast.Attribute):
            receiver = (last_name(call.func.value) or "").lower()
            if "log" in receiver:
                return Effect(PRINT, _text(call))
        return None


def _single_assignments(scope: ast.AST) -> dict[str, ast.expr]:
    """Names assigned exactly once in `scope` (not in nested functions), with their value."""
    values: dict[str, ast.expr] = {}
    counts: dict[str, int] = {}
    for node in walk_local(scope):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            counts[node.id] = counts.get(node.id, 0) + 1
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = node.value
    return {name: value for name, value in values.items() if counts.get(name) == 1}
