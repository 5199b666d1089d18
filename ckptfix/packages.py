"""Modules of an installable package: a fix that imports `ckptfix.runtime` there is unsafe.

A training script may import what it likes; a library may not. In the review of 30 training
repositories, 8 of the 15 noise rewrites were an atomic save inside an installable package's own
modules (diffusers' and accelerate's `src/`, megatron.core, litgpt, open_clip, OpenRLHF): harmless in
behaviour, but `import diffusers` would then fail wherever ckptfix is not installed, because the
package does not declare it. Such fixes are written only with --unsafe-fixes (or in the inline style,
which imports nothing), unless the project already declares ckptfix.

What counts: the file's directory is a package (`__init__.py`), and the directory above its
outermost package (or above `src/`, or above one namespace folder with no `__init__.py`, as
`megatron/core/`) holds packaging metadata (setup.py, setup.cfg, a pyproject.toml with a [project] or
[tool.poetry] table), whose explicit package list, if it has one, names the package. The project model
takes the same modules for a library's (`ckptfix.project.build`). Scripts beside a
package, folders projects do not install (`examples/`, `scripts/`, `tools/` ...), and research
repositories without packaging metadata are not libraries.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

from ckptfix.project.root import is_distribution

_METADATA = ("pyproject.toml", "setup.py", "setup.cfg")
_DECLARATIONS = (*_METADATA, "requirements.txt")
# An explicit list of the packages a project installs, in setup.py, setup.cfg or pyproject.toml.
_EXPLICIT_PACKAGES = re.compile(r"packages\s*=\s*\[|\binclude\s*=\s*\[|packages\.find\.include")
# Folders beside the package that projects do not install, even with an `__init__.py` in them.
_NOT_INSTALLED = frozenset(
    {"examples", "example", "scripts", "tools", "tests", "test", "benchmarks", "bench", "docs"}
    | {"experiments", "projects", "research_projects", "notebooks", "demo", "demos", "recipes"}
    | {"applications", "apps", "tutorials"}
)


def installable_package(path: str) -> tuple[str, str] | None:
    """(the top-level package, the metadata file) when `path` is a module of a package that its
    project installs and that does not declare ckptfix; else None (also for paths not on disk)."""
    package = installed_package(path)
    if package is None or _declares_ckptfix(os.path.dirname(package[1])):
        return None
    return package


def installed_package(path: str) -> tuple[str, str] | None:
    """(the top-level package, the metadata file) when `path` is a module of a package that its
    project installs: code outside the project imports it (the project model's library modules)."""
    if not os.path.isfile(path):
        return None
    directory = os.path.dirname(os.path.abspath(path))
    if not _is_package(directory):
        return None
    top = directory
    while (parent := os.path.dirname(top)) != top and _is_package(parent):
        top = parent
    root = os.path.dirname(top)
    if os.path.basename(root) != "src" and _metadata(root) is None:
        top, root = root, os.path.dirname(root)  # a namespace package (`megatron/core/`)
    if os.path.basename(root) == "src":
        root = os.path.dirname(root)
    metadata = _metadata(root)
    name = os.path.basename(top)
    if metadata is None or name in _NOT_INSTALLED or not _installs(root, name):
        return None
    return name, metadata


def reason(package: str, metadata: str) -> str:
    """Why the fix is unsafe, in words for the finding."""
    return (
        f"the file is a module of the installable package `{package}` ({metadata}): importing "
        "ckptfix.runtime there makes every user of the package need ckptfix; declare the dependency, "
        "or use --style inline"
    )


def _metadata(root: str) -> str | None:
    """The packaging metadata file of a project others install (a pyproject.toml only configuring tools
    is none)."""
    if not is_distribution(root):
        return None
    return next((os.path.join(root, m) for m in _METADATA if os.path.isfile(os.path.join(root, m))), None)


@lru_cache(maxsize=4096)
def _is_package(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, "__init__.py"))


@lru_cache(maxsize=1024)
def _installs(root: str, package: str) -> bool:
    """Where the metadata lists its packages (`packages.find.include = ["litgpt", ...]`,
    `packages=["guided_diffusion"]`), whether `package` is one of them; with `find_packages()` or no
    list at all, every package folder is installed."""
    text = "".join(_read(os.path.join(root, m)) for m in _METADATA)
    if not _EXPLICIT_PACKAGES.search(text):
        return True
    return re.search(rf"[\"'/]{re.escape(package)}[\"'./]", text) is not None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


@lru_cache(maxsize=256)
def _declares_ckptfix(root: str) -> bool:
    return any("ckptfix" in _read(os.path.join(root, name)) for name in _DECLARATIONS)
