"""Calls between the functions and methods of one module, and the guards that follow from them.

A helper whose every call site is guarded runs on the main process only; a helper that saves (or
reaches a collective) through other helpers does so at any depth. Call sites are matched by name:
`f(...)` for functions; for methods `self.m(...)`, `cls.m(...)`, `super().m(...)` and `x.m(...)` where
`x` was built from a class of this module (`trainer = Trainer(); trainer.m()`). Calls on receivers of
unknown type are not sites (`img.save()` is not `Trainer.save`). A reference that is not a call
(`Thread(target=save)`) counts as an unguarded site, since we cannot see where it runs.

Calls from the other files of the project (ckptfix.project) count too: a function every call of which,
in any file, is guarded runs on the main process only; a function called from another file has callers
this file does not hold, so a barrier inside it is never this file's to place.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from ckptfix.analysis.guards import Guard, GuardRecognizer, Kind
from ckptfix.analysis.names import last_name
from ckptfix.analysis.saves import SaveFinder
from ckptfix.analysis.tree import FunctionNode, Tree, walk_local
from ckptfix.project.view import EMPTY, ExternalSite, ProjectView

# Callables that start a function on every rank (it is passed to them, not called in the file).
LAUNCHERS = frozenset(
    {"spawn", "start_processes", "Fire", "launch", "notebook_launcher", "elastic_launch", "cli", "CLI"}
)


class CallGraph:
    def __init__(self, tree: Tree, guards: GuardRecognizer, project: ProjectView = EMPTY) -> None:
        self.tree = tree
        self.guards = guards
        self.project = project
        self.functions: list[FunctionNode] = list(tree.functions)
        self._plain: dict[str, list[FunctionNode]] = {}
        self._methods: dict[str, list[FunctionNode]] = {}
        for node in self.functions:
            table = self._methods if isinstance(tree.parent.get(id(node)), ast.ClassDef) else self._plain
            table.setdefault(node.name, []).append(node)
        # Call sites are only needed once a rule asks how a function is reached, and most files
        # never do: both tables are built on first use.
        self._instances: set[str] | None = None
        self._sites: dict[int, list[ast.AST]] | None = None
        self._function_guard: dict[int, Guard | None] = {}
        self._in_progress: set[int] = set()

    @property
    def sites(self) -> dict[int, list[ast.AST]]:
        """Every call of (or reference to) each module function, by id of the function."""
        if self._sites is None:
            self._sites = self._find_sites()
        return self._sites

    def _find_sites(self) -> dict[int, list[ast.AST]]:
        sites: dict[int, list[ast.AST]] = {id(f): [] for f in self.functions}
        if not self.functions:
            return sites
        plain, methods = self._plain, self._methods
        # In the order of the walk (rules report the first guarded site); exact types, since
        # `ast.parse` builds no subclasses.
        Call, Name, Attribute = ast.Call, ast.Name, ast.Attribute
        for node in self.tree.nodes:
            # A node can only target a function whose name it spells: skip the rest before `targets`.
            cls = type(node)
            if cls is Call:
                func = node.func  # type: ignore[attr-defined]
                spelled = (type(func) is Name and func.id in plain) or (
                    type(func) is Attribute and func.attr in methods
                )
            elif cls is Name:
                spelled = node.id in plain  # type: ignore[attr-defined]
            elif cls is Attribute:
                spelled = node.attr in methods  # type: ignore[attr-defined]
            else:
                continue
            if spelled:
                for callee in self.targets(node):
                    sites[id(callee)].append(node)
        return sites

    @property
    def instances(self) -> set[str]:
        if self._instances is None:
            self._instances = self._instance_names(self.tree)
        return self._instances

    @staticmethod
    def _instance_names(tree: Tree) -> set[str]:
        """Names assigned an instance of a class defined in this module (`trainer = Trainer(...)`)."""
        classes = {node.name for node in tree.of_type(ast.ClassDef)}
        names: set[str] = set()
        if not classes:
            return names
        for node in tree.of_type(ast.Assign):
            value = node.value
            # `saver = Saver(path) if rank == 0 else None`: an instance too, where it exists.
            built = [value.body, value.orelse] if isinstance(value, ast.IfExp) else [value]
            if any(
                isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in classes
                for v in built
            ):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        return names

    def _known_receiver(self, receiver: ast.expr) -> bool:
        if isinstance(receiver, ast.Name):
            return receiver.id in {"self", "cls"} or receiver.id in self.instances
        return (
            isinstance(receiver, ast.Call)
            and isinstance(receiver.func, ast.Name)
            and receiver.func.id == "super"
        )

    def targets(self, node: ast.AST) -> list[FunctionNode]:
        """Module functions a call (or a reference) may run."""
        if isinstance(node, ast.Call):
            node = node.func
            if isinstance(node, ast.Name):
                return self._plain.get(node.id, [])
            if isinstance(node, ast.Attribute) and self._known_receiver(node.value):
                found = self._methods.get(node.attr, [])
                if _is_super(node.value):  # the parent's method, never the one being defined
                    caller = self.tree.function(node)
                    found = [f for f in found if f is not caller]
                return found
            return []
        parent = self.tree.parent.get(id(node))
        if isinstance(parent, ast.Call) and parent.func is node:
            return []
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            return self._plain.get(node.id, [])
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Load)
            and self._known_receiver(node.value)
        ):
            return self._methods.get(node.attr, [])
        return []

    # --- calls from other files -------------------------------------------------------------------------
    def qualname(self, function: FunctionNode) -> str | None:
        """`f`, or `Class.m` for a method of a module-level class: the name other files call it by."""
        parent = self.tree.parent.get(id(function))
        if parent is self.tree.module:
            return function.name
        if isinstance(parent, ast.ClassDef) and self.tree.parent.get(id(parent)) is self.tree.module:
            return f"{parent.name}.{function.name}"
        return None

    def external_sites(self, function: FunctionNode) -> tuple[ExternalSite, ...]:
        """Calls of (and references to) `function` in the project's other files."""
        if not self.project.callers:
            return ()
        qual = self.qualname(function)
        return self.project.callers.get(qual, ()) if qual is not None else ()

    def library_public(self, function: FunctionNode) -> bool:
        """A public function of a packaged library module: code outside the project may call it."""
        return bool(self.project.library) and self.qualname(function) in self.project.library

    # --- guards across calls ---------------------------------------------------------------------------
    def function_guard(self, function: FunctionNode) -> Guard | None:
        """A guard covering all of `function`: a main-only decorator, or a guard at every call site."""
        key = id(function)
        if key in self._function_guard:
            return self._function_guard[key]
        if key in self._in_progress:
            return None
        self._in_progress.add(key)
        try:
            result = self._compute_function_guard(function)
        finally:
            self._in_progress.discard(key)
        self._function_guard[key] = result
        return result

    def _compute_function_guard(self, function: FunctionNode) -> Guard | None:
        kind = self.guards.decorator_kind(function)
        if kind is not None:
            return Guard(kind, function)
        sites = self.sites[id(function)]
        external = self.external_sites(function)
        if not sites and not external:
            return None
        if self.library_public(function):
            return None  # callers outside the project may run it on any ranks
        found: list[Guard] = []
        for other in external:
            if not other.call or not other.guard:
                return None
            found.append(Guard(Kind(other.guard), function, where=other.where))
        for site in sites:
            if not isinstance(site, ast.Call):
                # Passed as a value (`save_hyperparameters(setup, path)`, `Thread(target=f)`): where it
                # runs is not where it is named, so a guard around the name proves nothing.
                return None
            guard = self.guard(site)
            if guard is None:
                return None
            found.append(guard)
        return min(found, key=lambda g: g.kind)

    def guard(self, node: ast.AST) -> Guard | None:
        """The strongest guard under which `node` runs: in its own function, or around every call."""
        found = [g for g in (self.guards.local_guard(self.tree, node),) if g is not None]
        function = self.tree.function(node)
        if function is not None:
            outer = self.function_guard(function)
            if outer is not None:
                found.append(outer)
        return max(found, key=lambda g: g.kind) if found else None

    def has_guarded_site(self, function: FunctionNode) -> bool:
        return any(self.guard(site) is not None for site in self.sites[id(function)]) or any(
            other.guard for other in self.external_sites(function)
        )

    # --- who calls a function -----------------------------------------------------------------------
    def framework_hook(self, function: FunctionNode) -> str | None:
        """`Class(Base)`, when `function` is a method of a class derived from one this module does not
        define (a Lightning callback, a CheckpointIO, a Trainer subclass): the framework calls it."""
        owner = self.tree.parent.get(id(function))
        if not isinstance(owner, ast.ClassDef):
            return None
        defined = {node.name for node in self.tree.of_type(ast.ClassDef)}
        for base in owner.bases:
            name = last_name(base)
            if name is not None and name not in defined and name != "object":
                return f"{owner.name}({ast.unparse(base)})"
        return None

    def launched(self, reference: ast.AST) -> bool:
        """`mp.spawn(main_worker, ...)`, `fire.Fire(main)`: a function handed to a launcher runs on every
        rank."""
        parent = self.tree.parent.get(id(reference))
        if isinstance(parent, ast.keyword):
            parent = self.tree.parent.get(id(parent))
        return isinstance(parent, ast.Call) and last_name(parent.func) in LAUNCHERS

    def callers_unseen(self, function: FunctionNode) -> str | None:
        """Why ckptfix cannot see on which ranks `function` runs, or None when every call is in the
        module (or a launcher starts it): then a barrier inside it is its callers' to place."""
        sites = self.sites[id(function)]
        external = self.external_sites(function)
        if external:
            value = next((s for s in external if not s.call), None)
            if value is not None:
                return (
                    f"`{function.name}` is passed as a value at {value.where}, so it may run on any ranks "
                    "(a barrier belongs to its callers)"
                )
            guarded = [s.where for s in external if s.guard]
            if guarded:
                shown = ", ".join(guarded[:3]) + (", ..." if len(guarded) > 3 else "")
                return (
                    f"`{function.name}` is called under a main-process guard in another file ({shown}): "
                    "the barrier after it is each call site's to place"
                )
        if self.library_public(function):
            return (
                f"`{function.name}` is a public function of a library module, which code outside the "
                "project may call on any ranks (a barrier belongs to its callers)"
            )
        if not sites and not external:
            hook = self.framework_hook(function)
            if hook is not None:
                return (
                    f"`{function.name}` is a method of `{hook}`, which a framework calls where ckptfix "
                    "cannot see on which ranks (a barrier belongs to its callers)"
                )
            # A script calls what it runs (from `__main__`, or through a launcher); a function nothing
            # here calls is called from elsewhere, perhaps on rank 0 only.
            return (
                f"nothing in this file calls `{function.name}`, so ckptfix cannot see on which ranks it "
                "runs (a barrier belongs to its callers)"
            )
        for site in sites:
            if not isinstance(site, ast.Call) and not self.launched(site):
                line = getattr(site, "lineno", "?")
                return f"`{function.name}` is passed as a value at line {line}, so it may run on any ranks"
        return None

    def callers_elsewhere_assumed(self, function: FunctionNode) -> str | None:
        """What a barrier inside `function` assumes of its unguarded calls in other files, when the
        project cannot show that every rank makes them (a call inside a branch, or in a function whose
        own callers are unseen, as a submitit `Trainer.__call__`); None when it shows it, or there
        are none. Such a fix is unsafe, not refused: nothing says a rank skips the call."""
        unproved = [s.where for s in self.external_sites(function) if s.call and not s.guard and not s.alike]
        if not unproved:
            return None
        shown = ", ".join(unproved[:3]) + (", ..." if len(unproved) > 3 else "")
        return f"every rank calls `{function.name}` at {shown} (another file), which ckptfix cannot prove"

    def reaches_save(self, call: ast.Call, finder: SaveFinder) -> bool:
        """The call runs a module function that writes a checkpoint (through helpers, any depth)."""
        return any(
            self.reaches(f, lambda c: finder.target_of(c) is not None) is not None for f in self.targets(call)
        )

    # --- reachability ----------------------------------------------------------------------------------
    def reaches(self, function: FunctionNode, direct: Callable[[ast.Call], bool]) -> list[str] | None:
        """The call chain from `function` to a call for which `direct` holds (any depth), or None."""
        seen: set[int] = set()

        def search(current: FunctionNode) -> list[str] | None:
            if id(current) in seen:
                return None
            seen.add(id(current))
            for node in walk_local(current):
                if isinstance(node, ast.Call):
                    if direct(node):
                        return [current.name]
                    for callee in self.targets(node):
                        chain = search(callee)
                        if chain is not None:
                            return [current.name, *chain]
            return None

        return search(function)


def _is_super(receiver: ast.expr) -> bool:
    func = receiver.func if isinstance(receiver, ast.Call) else None
    return isinstance(func, ast.Name) and func.id == "super"
