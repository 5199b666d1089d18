"""Which project file (and which name in it) an import refers to, the way Python would find it.

Why by probing the project's own file list: it costs no system call, and a module outside the
project (an installed library, the standard library) is simply not found, which is what "unknown"
must mean. Search order for an absolute import, as `python train.py` sees it: the importing
script's own directory, the directory above the importer's top package, the project root, and
`src/` under the root. A relative import counts from the importer's package.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


class ModuleIndex:
    """The project's Python files, and how an import from one of them resolves to another."""

    def __init__(self, root: str, files: Iterable[str]) -> None:
        self.root = os.path.abspath(root)
        self.files = frozenset(os.path.abspath(f) for f in files)
        # Answers by (importer's directory, level, dotted): every importer of a directory gets the
        # same, except that a module never resolves to itself (checked after the lookup).
        self._answers: dict[tuple[str, int, str], list[tuple[str, str]]] = {}

    def _module_file(self, base: str, parts: list[str]) -> str | None:
        stem = os.sep.join([base, *parts]) if parts else base
        for candidate in (stem + ".py", stem + os.sep + "__init__.py"):
            if candidate in self.files:
                return candidate
        return None

    def search_roots(self, importer: str) -> list[str]:
        """Directories an absolute import from `importer` is looked up in, first match wins."""
        own = os.path.dirname(os.path.abspath(importer))
        top = own
        while os.path.join(top, "__init__.py") in self.files:
            top = os.path.dirname(top)
        roots = [own, top, self.root, os.path.join(self.root, "src")]
        return list(dict.fromkeys(roots))

    def resolve(self, importer: str, level: int, dotted: str) -> tuple[str, str] | None:
        """(file, name inside it) for `dotted` imported from `importer` (`level` leading dots): the
        longest prefix of `dotted` that is a project module, and the rest (`""`: the module itself)."""
        importer = os.path.abspath(importer)
        key = (os.path.dirname(importer), level, dotted)
        answers = self._answers.get(key)
        if answers is None:
            answers = self._answers[key] = self._candidates(importer, level, dotted)
        return next((a for a in answers if a[0] != importer), None)

    def _candidates(self, importer: str, level: int, dotted: str) -> list[tuple[str, str]]:
        """The first two matches in search order (the first may be the importer itself)."""
        parts = [p for p in dotted.split(".") if p]
        if level > 0:
            base = os.path.dirname(importer)
            for _ in range(level - 1):
                base = os.path.dirname(base)
            bases = [base]
        else:
            bases = self.search_roots(importer)
        found: list[tuple[str, str]] = []
        for base in bases:
            for cut in range(len(parts), -1, -1):
                if cut == 0 and level == 0:
                    break  # an absolute import names at least a top-level module
                module = self._module_file(base, parts[:cut])
                if module is not None:
                    found.append((module, ".".join(parts[cut:])))
                    if len(found) == 2:
                        return found
        return found
