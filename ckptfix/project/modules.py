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

    def _module_file(self, base: str, parts: list[str]) -> str | None:
        stem = os.path.join(base, *parts)
        for candidate in (stem + ".py", os.path.join(stem, "__init__.py")):
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
        parts = [p for p in dotted.split(".") if p]
        if level > 0:
            base = os.path.dirname(os.path.abspath(importer))
            for _ in range(level - 1):
                base = os.path.dirname(base)
            bases = [base]
        else:
            bases = self.search_roots(importer)
        for base in bases:
            for cut in range(len(parts), -1, -1):
                if cut == 0 and level == 0:
                    break  # an absolute import names at least a top-level module
                found = self._module_file(base, parts[:cut])
                if found is not None and found != os.path.abspath(importer):
                    return found, ".".join(parts[cut:])
        return None
