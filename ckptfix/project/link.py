"""Linking summaries: the facts that follow from several files together.

Why here and not in the analysis: "every call of `save_checkpoint` is under a main-process guard" is
a fact about the whole project, and so is "`save` writes a checkpoint through `utils.write`". They
are computed once per run from the summaries, for every file at once, by following the project's
own imports (`modules`); a name that leads outside the project leads to no fact (unknown stays
unknown). Each file then gets its `ProjectView`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ckptfix.project.layout import Summary
from ckptfix.project.modules import ModuleIndex
from ckptfix.project.view import EMPTY, ExternalSite, ImportedFact, ProjectView

FunctionKey = tuple[str, str]  # (absolute path, qualified name)
_MAX_REEXPORTS = 4


class Project:
    """Summaries of a project's files, linked."""

    def __init__(
        self,
        index: ModuleIndex,
        summaries: Mapping[str, Summary],
        library_files: frozenset[str] = frozenset(),
        opaque: Mapping[str, frozenset[str]] | None = None,
        note: str | None = None,
    ) -> None:
        self.index = index
        self.note = note  # why there is no project model (the files are then analysed alone)
        self.root = index.root
        self.summaries = summaries
        self.library_files = library_files
        # Files that could not be summarised (not valid Python), with the identifiers they spell: a
        # function named there may be called there, where ckptfix cannot see on which ranks.
        self.opaque = dict(opaque or {})
        # Linking is lazy: a run asks about the few files it checks, so a site is resolved only when
        # a question reaches its name. Sites by the last name they spell, and names re-exported
        # under another name (`from .misc import save_model as sm` in a package's __init__).
        self._by_name: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._aliases: dict[str, set[str]] = {}
        for path, summary in summaries.items():
            for site in summary["sites"]:
                to = site["to"]
                name = (to["local"] if "local" in to else to["name"]).rsplit(".", 1)[-1]
                self._by_name.setdefault(name, []).append((path, site))
            for local, (_, dotted) in summary["exports"].items():
                original = dotted.rsplit(".", 1)[-1]
                if original != local:
                    self._aliases.setdefault(original, set()).add(local)
        self._resolved_names: dict[str, dict[FunctionKey, list[tuple[str, dict[str, Any]]]]] = {}
        self._outgoing: dict[FunctionKey, list[FunctionKey]] = {}
        self._outgoing_files: set[str] = set()
        self._lookups: dict[tuple[str, int, str], tuple[str, Any] | None] = {}
        self._memo: dict[tuple[str, FunctionKey], Any] = {}
        self._busy: set[tuple[str, FunctionKey]] = set()

    # --- sites -----------------------------------------------------------------------------------------
    def callers(self, key: FunctionKey) -> list[tuple[str, dict[str, Any]]]:
        """Every site of the project that calls (or names) the function."""
        names = {key[1].rsplit(".", 1)[-1]}
        pending = list(names)
        while pending:  # the names it is re-exported under, and theirs
            for alias in self._aliases.get(pending.pop(), ()):
                if alias not in names:
                    names.add(alias)
                    pending.append(alias)
        found: list[tuple[str, dict[str, Any]]] = []
        for name in names:
            found += self._sites_by_target(name).get(key, ())
        return found

    def _sites_by_target(self, name: str) -> dict[FunctionKey, list[tuple[str, dict[str, Any]]]]:
        """The sites spelling `name`, resolved once and grouped by the function they reach: a name
        like `forward` is spelled by thousands of sites, asked about for hundreds of functions."""
        grouped = self._resolved_names.get(name)
        if grouped is None:
            grouped = self._resolved_names[name] = {}
            for path, site in self._by_name.get(name, ()):
                target = self._site_target(path, site)
                if target is not None:
                    grouped.setdefault(target, []).append((path, site))
        return grouped

    def outgoing(self, key: FunctionKey) -> list[FunctionKey]:
        """The project functions the function calls."""
        path = key[0]
        if path not in self._outgoing_files:
            self._outgoing_files.add(path)
            for site in self.summaries[path]["sites"]:
                if site["call"] and site["in"] not in ("", "?"):
                    target = self._site_target(path, site)
                    if target is not None:
                        self._outgoing.setdefault((path, site["in"]), []).append(target)
        return self._outgoing.get(key, [])

    # --- names -----------------------------------------------------------------------------------------
    def where(self, path: str, line: int) -> str:
        return f"{os.path.relpath(path, self.root)}:{line}"

    def lookup(self, importer: str, level: int, dotted: str, depth: int = 0) -> tuple[str, Any] | None:
        """("function", key) or ("flag", (path, name, kind)) for a name imported from `importer`,
        following re-exports (`from .misc import save` in a package's `__init__`)."""
        memo_key = (importer, level, dotted)
        if memo_key in self._lookups:
            return self._lookups[memo_key]
        found = self._lookup(importer, level, dotted, depth)
        self._lookups[memo_key] = found
        return found

    def _lookup(self, importer: str, level: int, dotted: str, depth: int) -> tuple[str, Any] | None:
        resolved = self.index.resolve(importer, level, dotted)
        if resolved is None:
            return None
        path, rest = resolved
        summary = self.summaries.get(path)
        if summary is None or not rest:
            return None
        if rest in summary["functions"]:
            return "function", (path, rest)
        if rest in summary["flags"]:
            return "flag", (path, rest, summary["flags"][rest])
        head, _, tail = rest.partition(".")
        exported = summary["exports"].get(head)
        if exported is not None and depth < _MAX_REEXPORTS:
            exported_level, base = exported
            return self.lookup(path, exported_level, f"{base}.{tail}" if tail else base, depth + 1)
        return None

    def _site_target(self, path: str, site: dict[str, Any]) -> FunctionKey | None:
        to = site["to"]
        if "local" in to:
            return path, to["local"]
        found = self.lookup(path, to["level"], to["name"])
        return found[1] if found is not None and found[0] == "function" else None

    # --- facts -----------------------------------------------------------------------------------------
    def _fact(self, name: str, key: FunctionKey, compute: Callable[[FunctionKey], Any]) -> Any:
        """Memoised, and None inside a cycle (recursion proves nothing)."""
        memo = (name, key)
        if memo in self._memo:
            return self._memo[memo]
        if memo in self._busy:
            return None
        self._busy.add(memo)
        try:
            result = compute(key)
        finally:
            self._busy.discard(memo)
        self._memo[memo] = result
        return result

    def function(self, key: FunctionKey) -> dict[str, Any]:
        return self.summaries[key[0]]["functions"][key[1]]

    def _through(self, field: str, key: FunctionKey) -> str | None:
        """The first direct `field` fact among the functions `key` reaches (itself first): a search of
        everything reachable, so that a cycle of helpers never hides a fact behind it."""
        seen = {key}
        pending = [key]
        while pending:
            current = pending.pop(0)
            own = self.function(current)
            if own[field]:
                line = own[field] if isinstance(own[field], int) else own[field][1]
                text = self.where(current[0], line)
                return f"{own[field][0]} ({text})" if isinstance(own[field], list) else text
            for callee in self.outgoing(current):
                if callee not in seen:
                    seen.add(callee)
                    pending.append(callee)
        return None

    def saves(self, key: FunctionKey) -> str | None:
        """Where the function writes a checkpoint, itself or through project functions it calls."""
        return self._fact("save", key, lambda k: self._through("save", k))

    def collective(self, key: FunctionKey) -> str | None:
        return self._fact("collective", key, lambda k: self._through("collective", k))

    def syncs(self, key: FunctionKey) -> str | None:
        own = self.function(key)
        return self.where(key[0], own["barrier"]) if own["barrier"] else None

    def decorator_kind(self, key: FunctionKey) -> int:
        """The main-only kind of the function's own decorators (known by name, or project decorators
        that call the function under a guard)."""
        own = self.function(key)
        if own["decorated"]:
            return int(own["decorated"])
        for level, dotted in own["decorators"]:
            found = self.lookup(key[0], level, dotted)
            if found is not None and found[0] == "function" and self.function(found[1])["wraps"]:
                return int(self.function(found[1])["wraps"])
        return 0

    def test_kind(self, importer: str, target: list[Any]) -> int:
        """The kind of main-process test an imported name is (a predicate function or a flag)."""
        found = self.lookup(importer, target[0], target[1])
        if found is None:
            return 0
        if found[0] == "flag":
            return int(found[1][2])
        return int(self.function(found[1])["predicate"])

    def site_guard(self, path: str, site: dict[str, Any]) -> int:
        """The guard a site runs under: its own (with project predicates), or its caller's."""
        kinds = [int(site["guard"])] + [self.test_kind(path, c) for c in site["cand"]]
        if site["in"] not in ("", "?"):
            kinds.append(self.main_only((path, site["in"])))
        return max(kinds)

    def main_only(self, key: FunctionKey) -> int:
        """The kind of main-process guard every run of the function is under, 0 when some run is not
        (or cannot be seen: no caller, a reference, a hook, a library's public function)."""
        return self._fact("main", key, self._main_only) or 0

    def _main_only(self, key: FunctionKey) -> int:
        decorated = self.decorator_kind(key)
        if decorated:
            return decorated
        if self._library(key) or self._named_in_opaque(key[0], key[1]):
            return 0
        sites = self.callers(key)
        if not sites:
            return 0
        kinds = []
        for path, site in sites:
            if not site["call"] or site["in"] == "?":
                return 0
            kind = self.site_guard(path, site)
            if not kind:
                return 0
            kinds.append(kind)
        return min(kinds)

    def _named_in_opaque(self, path: str, qual: str) -> str | None:
        name = qual.rsplit(".", 1)[-1]
        return next((p for p, names in self.opaque.items() if p != path and name in names), None)

    def site_alike(self, path: str, site: dict[str, Any]) -> bool:
        """Every rank makes this call: a plain, unguarded call in module-level code, or in a function
        every call of which is alike (a function nothing calls is not: who runs it is unseen)."""
        if not (site["call"] and site.get("plain") and site["in"] != "?" and not self.site_guard(path, site)):
            return False
        return site["in"] == "" or bool(self._fact("alike", (path, site["in"]), self._alike_function))

    def _alike_function(self, key: FunctionKey) -> bool:
        sites = self.callers(key)
        if not sites or self._library(key) or self._named_in_opaque(*key) or self.decorator_kind(key):
            return False
        return all(self.site_alike(path, site) for path, site in sites)

    def _library(self, key: FunctionKey) -> bool:
        return key[0] in self.library_files and not key[1].split(".")[-1].startswith("_")

    # --- views -----------------------------------------------------------------------------------------
    def view(self, path: str) -> ProjectView:
        """What the rest of the project says about the file at `path`."""
        path = os.path.abspath(path)
        summary = self.summaries.get(path)
        if summary is None:
            return EMPTY
        imported: dict[str, ImportedFact] = {}
        for site in summary["sites"]:
            to = site["to"]
            spelled = to.get("spelled")
            if not spelled or spelled in imported:
                continue
            found = self.lookup(path, to["level"], to["name"])
            if found is None:
                continue
            if found[0] == "flag":
                flag_path, name, kind = found[1]
                imported[spelled] = ImportedFact(
                    where=f"{os.path.relpath(flag_path, self.root)} ({name})", predicate=kind
                )
                continue
            key = found[1]
            own = self.function(key)
            imported[spelled] = ImportedFact(
                where=self.where(key[0], own["line"]),
                saves=self.saves(key),
                dest=tuple(own.get("dest", ())),
                collective=self.collective(key),
                syncs=self.syncs(key),
                predicate=int(own["predicate"]),
                rank=bool(own["rank"]),
                decorator=int(own["wraps"]),
            )
        callers: dict[str, tuple[ExternalSite, ...]] = {}
        for qual in summary["functions"]:
            external = [
                ExternalSite(
                    where=self.where(caller_path, site["line"])
                    + (" (in a nested function or lambda)" if site["in"] == "?" else ""),
                    call=bool(site["call"]) and site["in"] != "?",
                    guard=self.site_guard(caller_path, site),
                    rank_args=tuple(site.get("rank", ())),
                    param_args=tuple(site.get("param", ())),
                    alike=self.site_alike(caller_path, site),
                )
                for caller_path, site in self.callers((path, qual))
                if caller_path != path
            ]
            unread = self._named_in_opaque(path, qual)
            if unread is not None:
                where = f"{os.path.relpath(unread, self.root)} (not readable as Python)"
                external.append(ExternalSite(where=where, call=False, guard=0))
            if external:
                callers[qual] = tuple(external)
        library = frozenset(q for q in summary["functions"] if self._library((path, q)))
        if not (imported or callers or library):
            return EMPTY
        return ProjectView(imported, callers, library)
