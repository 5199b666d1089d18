"""Which calls write a checkpoint, what they write where, and which of them are not checkpoints at all
(per-rank files with the rank in the name, in-memory copies into io.BytesIO)."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ckptfix.analysis import catalog
from ckptfix.analysis.callbacks import triggers
from ckptfix.analysis.names import Names, dotted, last_name
from ckptfix.analysis.tree import Tree, walk_local
from ckptfix.project.view import EMPTY, ProjectView

ArgRef = tuple[int, str]  # (positional index, keyword name) of one argument


@dataclass(frozen=True)
class Save:
    """One call that writes a file."""

    call: ast.Call
    target: str  # canonical name, "save_pretrained", or the user-configured name
    obj: ArgRef | None
    dest: ArgRef | None
    # The destination names the rank, is a private temp file, or is read back by the code that wrote it
    # (a cache, an offload): one writer per rank, not a checkpoint.
    per_rank: bool
    in_memory: bool  # the destination is an io.BytesIO: not a checkpoint
    handle_with: ast.With | None  # `with open(p, "wb") as f: torch.save(x, f)`: the with that opens f
    # A function of another file of the project that writes (at "utils.py:10", through helpers at any
    # depth): guarding and atomic writing are its business, the barrier after the call is the caller's.
    through: str | None = None
    syncs: str | None = None  # ... and meets a barrier of its own after it (where)

    @property
    def is_torch_save(self) -> bool:
        return self.target == catalog.TORCH_SAVE

    @property
    def is_hf(self) -> bool:
        return self.target == catalog.HF_SAVE_PRETRAINED

    @property
    def is_delegated(self) -> bool:
        """`utils.save_on_master(...)`: another module's helper writes, on the main process only; or a
        function of another file of the project writes."""
        return self.target in catalog.DELEGATED_MAIN_SAVES or self.through is not None


def argument(call: ast.Call, ref: ArgRef | None) -> ast.expr | None:
    """The expression passed for `ref`, by position (before any *args) or by keyword."""
    if ref is None:
        return None
    index, keyword = ref
    positional = []
    for arg in call.args:
        if isinstance(arg, ast.Starred):
            break
        positional.append(arg)
    if index < len(positional):
        return positional[index]
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    return None


class SaveFinder:
    """Finds the saves of one module."""

    def __init__(
        self,
        tree: Tree,
        names: Names,
        extra_save_functions: tuple[str, ...] = (),
        project: ProjectView = EMPTY,
    ) -> None:
        self.tree = tree
        self.names = names
        self.project = project
        # Functions of the project's other files that write a checkpoint, by the name they resolve to.
        self._project_saves = frozenset(name for name, fact in project.imported.items() if fact.saves)
        # Calls of a loop variable over a callback list that holds one of those (`for cb in hooks: cb()`).
        self._triggers = (
            {
                key: names_
                for key, (_, elements) in triggers(tree).items()
                if (names_ := [r for e in elements if (r := names.resolve(e)) in self._project_saves])
            }
            if self._project_saves
            else {}
        )
        self.extra = set(extra_save_functions)
        self.extra_last = {name.rsplit(".", 1)[-1] for name in extra_save_functions}
        self._resolved_targets = frozenset(
            {catalog.TORCH_SAVE, *catalog.SAFETENSORS_SAVES, *catalog.RUNTIME_SAVES, *self.extra}
            | self._project_saves
        )
        # Names a save is matched by without resolving (save_pretrained; user names, unresolved;
        # another module's save_on_master).
        self._delegated = catalog.DELEGATED_MAIN_SAVES - {f.name for f in tree.functions}
        self._spelled = {catalog.HF_SAVE_PRETRAINED, *self.extra_last, *self._delegated}
        self._scope_values: dict[int, dict[str, list[ast.expr]]] = {}
        self._loads: dict[int, list[tuple[str, int]]] = {}

    def target_of(self, call: ast.Call) -> str | None:
        if self._triggers and id(call) in self._triggers:
            return self._triggers[id(call)][0]  # a hook of another file that saves, run here
        func = call.func
        if not (
            self.names.may_resolve_to(func, self._resolved_targets)
            or (type(func) is ast.Attribute and func.attr in self._spelled)
            or (type(func) is ast.Name and func.id in self._spelled)
        ):
            return None  # nearly every call: no need to resolve it
        resolved = self.names.resolve(call.func)
        if resolved is not None:
            if resolved == catalog.TORCH_SAVE or resolved in catalog.SAFETENSORS_SAVES:
                return resolved
            if resolved in catalog.RUNTIME_SAVES or resolved in self.extra:
                return resolved
            if resolved in self._project_saves:
                return resolved
        if isinstance(call.func, ast.Attribute) and call.func.attr == catalog.HF_SAVE_PRETRAINED:
            return catalog.HF_SAVE_PRETRAINED
        if last_name(call.func) in self._delegated:
            return last_name(call.func)
        name = dotted(call.func)
        if name is not None and (name in self.extra or (resolved is None and name in self.extra_last)):
            return name
        return None

    def find(self) -> list[Save]:
        return [save for node in self.tree.calls if (save := self.save(node)) is not None]

    def save(self, node: ast.Call) -> Save | None:
        """The save a call makes, if it is one."""
        target = self.target_of(node)
        if target is None or self._in_torchscript(node):
            return None  # TorchScript compiles its own subset of Python: never rewrite it
        fact = self.project.fact(target) if target in self._project_saves else None
        if fact is not None:
            # The path's argument, where the helper's summary knows it; else every argument but the
            # state itself (the first, a dict, a state_dict() call: a DDP model built with
            # `device_ids=[args.gpu]` says nothing of the path): one that names the rank makes the call
            # a per-rank write (not a checkpoint event) as far as this file can tell.
            passed = [(str(i), a) for i, a in enumerate(node.args) if not isinstance(a, ast.Starred)]
            passed += [(k.arg, k.value) for k in node.keywords if k.arg is not None]
            if fact.dest:
                values = [v for key, v in passed if key in fact.dest]
            else:  # forwarded as `*args` to torch.save (`save_on_master`): the state comes first
                values = [v for key, v in passed if key != "0" and not _state_like(v)]
            return Save(
                call=node,
                target=target,
                obj=None,
                dest=None,
                per_rank=any(self._mentions_rank(v, node) for v in values),
                in_memory=False,
                handle_with=None,
                through=fact.saves,
                syncs=fact.syncs,
            )
        obj: ArgRef | None
        obj, dest = catalog.SAVE_ARGS.get(target, ((0, "obj"), (1, "f")))
        if target == catalog.HF_SAVE_PRETRAINED:
            obj, dest = None, (0, "save_directory")
        dest_expr = argument(node, dest)
        handle = self._handle_with(dest_expr, node) if dest_expr is not None else None
        # `with open(path_of(rank), "wb") as f: torch.save(x, f)`: the path is the open's.
        opened = (
            next((i.context_expr for i in handle.items if isinstance(i.context_expr, ast.Call)), None)
            if handle is not None
            else None
        )
        return Save(
            call=node,
            target=target,
            obj=obj,
            dest=dest,
            per_rank=dest_expr is not None
            and (
                self._mentions_rank(dest_expr, node)
                or self._temporary(dest_expr, node)
                or (opened is not None and self._mentions_rank(opened, node))
                or self._read_back(dest_expr, node)
            ),
            in_memory=dest_expr is not None and self._in_memory(dest_expr, node),
            handle_with=handle,
        )

    def _in_torchscript(self, node: ast.AST) -> bool:
        function = self.tree.function(node)
        return function is not None and any(
            (dotted(d.func if isinstance(d, ast.Call) else d) or "").endswith(
                ("jit.script", "jit.script_method")
            )
            for d in function.decorator_list
        )

    # --- destination checks ----------------------------------------------------------------------------
    def _assigned_values(self, name: str, at: ast.AST) -> list[ast.expr]:
        """Values assigned to `name` in the scope that runs `at` (function body or module); one walk
        of each scope answers every name."""
        scope: ast.AST = self.tree.function(at) or self.tree.module
        values = self._scope_values.get(id(scope))
        if values is None:
            values = self._scope_values[id(scope)] = {}
            for node in walk_local(scope):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            values.setdefault(target.id, []).append(node.value)
                elif (
                    isinstance(node, ast.AnnAssign | ast.NamedExpr)
                    and isinstance(node.target, ast.Name)
                    and node.value is not None
                ):
                    values.setdefault(node.target.id, []).append(node.value)
        return values.get(name, [])

    def _mentions_rank(self, expr: ast.expr, at: ast.AST, depth: int = 0) -> bool:
        for node in ast.walk(expr):
            name = last_name(node) if isinstance(node, ast.Name | ast.Attribute | ast.Call) else None
            if name is not None and is_rank_name(name):
                return True
            if isinstance(node, ast.Call) and self.project.imported:
                fact = self.project.fact(self.names.resolve(node.func))
                if fact is not None and fact.rank:
                    return True  # `shard_suffix()` of another file returns a rank-built text
            if (
                depth < 3
                and isinstance(node, ast.Name)
                and any(self._mentions_rank(v, at, depth + 1) for v in self._assigned_values(node.id, at))
            ):
                return True
        return False

    def _temporary(self, expr: ast.expr, at: ast.AST, depth: int = 0) -> bool:
        """The destination comes from `tempfile` (a scratch file private to this process), directly or
        through names built from it (`model_dir = Path(tmp_dir) / "model"`)."""
        for node in ast.walk(expr):
            if isinstance(node, ast.Call) and _is_temp_factory(node, self.names):
                return True
            if not isinstance(node, ast.Name):
                continue
            for ancestor in self.tree.ancestors(at):
                if isinstance(ancestor, ast.With):
                    for item in ancestor.items:
                        bound = item.optional_vars
                        if (
                            isinstance(bound, ast.Name)
                            and bound.id == node.id
                            and self._temporary(item.context_expr, at, depth + 1)
                        ):
                            return True
            for value in self._assigned_values(node.id, at):
                if isinstance(value, ast.Call) and _is_temp_factory(value, self.names):
                    return True
                if depth < 2 and self._temporary(value, at, depth + 1):
                    return True
        return False

    def _read_back(self, expr: ast.expr, at: ast.AST) -> bool:
        """The same path is loaded again by the code that writes it: in its function, or for a path
        kept on `self`, in its class (`offload()` writes `self.path`, `onload()` reads it back). A file
        a process writes for itself (an offload, a cache) is not a checkpoint others wait for."""
        text = ast.unparse(expr)
        function = self.tree.function(at)
        if function is None:
            return False
        # In its class only for a method that is no checkpoint's (`save_checkpoint` writing `self.path`
        # that `resume` reads is a checkpoint); in its function only after the write (a resume reads
        # before training writes).
        writer = function.name.lower()
        in_class = text.startswith("self.") and not any(w in writer for w in ("save", "checkpoint", "ckpt"))
        owner = next((a for a in self.tree.ancestors(at) if isinstance(a, ast.ClassDef)), None)
        scope: ast.AST = owner if in_class and owner is not None else function
        return any(
            loaded == text and (scope is not function or line > at.lineno)  # type: ignore[attr-defined]
            for loaded, line in self._loads_in(scope)
        )

    def _loads_in(self, scope: ast.AST) -> list[tuple[str, int]]:
        """The paths a scope loads (`torch.load(p)`, `load_file(p)`), by text, with their line."""
        found = self._loads.get(id(scope))
        if found is None:
            found = self._loads[id(scope)] = [
                (ast.unparse(node.args[0]), node.lineno)
                for node in ast.walk(scope)
                if isinstance(node, ast.Call) and last_name(node.func) in _LOADS and node.args
            ]
        return found

    def _in_memory(self, expr: ast.expr, at: ast.AST) -> bool:
        if isinstance(expr, ast.Call):
            return last_name(expr.func) in {"BytesIO", "StringIO"}
        if isinstance(expr, ast.Name):
            return any(
                self._in_memory(v, at) for v in self._assigned_values(expr.id, at) if isinstance(v, ast.Call)
            )
        return False

    def _handle_with(self, expr: ast.expr, at: ast.AST) -> ast.With | None:
        if not isinstance(expr, ast.Name):
            return None
        for ancestor in self.tree.ancestors(at):
            if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                return None
            if isinstance(ancestor, ast.With):
                for item in ancestor.items:
                    bound = item.optional_vars
                    if isinstance(bound, ast.Name) and bound.id == expr.id:
                        return ancestor
        return None


def _state_like(expr: ast.expr) -> bool:
    """What a checkpoint holds, not where it goes: a dict, or a `state_dict()` call."""
    return isinstance(expr, ast.Dict) or (isinstance(expr, ast.Call) and last_name(expr.func) == "state_dict")


# Calls that read a file back (torch.load, safetensors load_file / safe_open, numpy load).
_LOADS = frozenset({"load", "load_file", "safe_open", "load_state_dict_from_file"})


def _is_temp_factory(call: ast.Call, names: Names) -> bool:
    """tempfile.* and look-alikes (`TemporaryFileName()`, `make_temp_dir()`)."""
    if (names.resolve(call.func) or "").startswith("tempfile."):
        return True
    return "temp" in (last_name(call.func) or "").lower()


def is_rank_name(name: str) -> bool:
    lowered = name.lower()
    if lowered in {"get_rank", "get_local_rank", "gpu", "gpu_id", "process_index", "local_process_index"}:
        return True
    if lowered in catalog.MAIN_PREDICATES or lowered in catalog.LOCAL_MAIN_PREDICATES:
        return False
    return "rank" in lowered and "world" not in lowered
