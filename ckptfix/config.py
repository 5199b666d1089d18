"""`[tool.ckptfix]` settings: found, validated, and merged with the command line's flags.

A typo in a config file must never be silently ignored (the run would then check less than the user
believes), so every key and value is validated and an error names the file and the key.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckptfix.options import Options, Style

# Directories no one wants checked; the same list ruff and black skip by default.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    ".bzr",
    ".ckptfix_cache",
    ".direnv",
    ".eggs",
    ".git",
    ".git-rewrite",
    ".hg",
    ".ipynb_checkpoints",
    ".mypy_cache",
    ".nox",
    ".pants.d",
    ".pyenv",
    ".pytest_cache",
    ".pytype",
    ".ruff_cache",
    ".svn",
    ".tox",
    ".venv",
    ".vscode",
    "__pycache__",
    "__pypackages__",
    "_build",
    "buck-out",
    "build",
    "dist",
    "node_modules",
    "site-packages",
    "venv",
)

_DOTTED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ConfigError(Exception):
    """A config file or flag that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class FileConfig:
    """What one config file says; None means "not set there", so the command line or a default wins."""

    source: Path | None = None
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()
    exclude: tuple[str, ...] | None = None
    extend_exclude: tuple[str, ...] = ()
    style: Style | None = None
    barrier_timeout: float | None = None
    final_timeout: float | None = None
    extra_save_functions: tuple[str, ...] = ()
    extra_main_predicates: tuple[str, ...] = ()
    assume_distributed: bool | None = None
    rewrite_local_rank_guards: bool | None = None
    cache: bool | None = None
    unsafe_fixes: bool | None = None

    @property
    def root(self) -> Path:
        """Exclude patterns in a config file are relative to the file's directory."""
        return self.source.parent if self.source is not None else Path.cwd()


@dataclass(frozen=True)
class CliFlags:
    """The command line's say on the same settings; None / empty means "not given"."""

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()
    exclude: tuple[str, ...] | None = None
    extend_exclude: tuple[str, ...] = ()
    style: Style | None = None
    barrier_timeout: float | None = None
    final_timeout: float | None = None
    unsafe_fixes: bool | None = None


@dataclass(frozen=True)
class Settings:
    """Everything a run needs: the analysis options and which paths to leave alone."""

    options: Options
    root: Path
    exclude: tuple[str, ...] = field(default_factory=tuple)
    cache: bool = True  # the config's `cache = false` turns the findings cache off


def _read_toml(path: Path) -> dict[str, Any]:
    # Imported here: only paid for when a config file exists.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the backport, a dependency on 3.10 only
        import tomli as tomllib

    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def find_config(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start` that has a [tool.ckptfix] table.

    Like ruff, a pyproject.toml without our table does not stop the search: monorepos keep tool
    settings at the top while sub-packages have their own pyproject.toml for packaging.
    """
    directory = start if start.is_dir() else start.parent
    for candidate in (directory, *directory.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and "ckptfix" in _read_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def _string_list(where: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of strings, got {value!r}")
    return tuple(value)


def _timeout(where: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{where}: `{key}` must be a positive number of seconds, got {value!r}")
    return float(value)


def _style(where: str, key: str, value: object) -> Style:
    if value == "runtime":
        return "runtime"
    if value == "inline":
        return "inline"
    raise ConfigError(f'{where}: `{key}` must be "runtime" or "inline", got {value!r}')


def _dotted_names(where: str, key: str, value: object) -> tuple[str, ...]:
    names = _string_list(where, key, value)
    for name in names:
        if not _DOTTED_NAME.match(name):
            raise ConfigError(
                f"{where}: `{key}` entries must be dotted names like pkg.mod.func, got {name!r}"
            )
    return names


def parse_table(table: Mapping[str, object], where: str) -> dict[str, Any]:
    """Validate a [tool.ckptfix] table; returns FileConfig keyword arguments."""
    known_codes = _known_codes()
    parsed: dict[str, Any] = {}
    for key, value in table.items():
        attr = key.replace("-", "_")
        if key in ("select", "ignore", "extend-select"):
            selectors = _string_list(where, key, value)
            for selector in selectors:
                _check_selector(selector, known_codes, f"{where}: `{key}`")
            parsed[attr] = selectors
        elif key in ("exclude", "extend-exclude"):
            parsed[attr] = _string_list(where, key, value)
        elif key == "style":
            parsed[attr] = _style(where, key, value)
        elif key in ("barrier-timeout", "final-timeout"):
            parsed[attr] = _timeout(where, key, value)
        elif key in ("extra-save-functions", "extra-main-predicates"):
            parsed[attr] = _dotted_names(where, key, value)
        elif key in ("assume-distributed", "rewrite-local-rank-guards", "cache", "unsafe-fixes"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: `{key}` must be true or false, got {value!r}")
            parsed[attr] = value
        else:
            raise ConfigError(f"{where}: unknown key `{key}`")
    return parsed


def load_config(path: Path | None) -> FileConfig:
    """Read settings from `path`: a pyproject.toml's [tool.ckptfix] table, or a whole ckptfix.toml."""
    if path is None:
        return FileConfig()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    document = _read_toml(path)
    if path.name == "pyproject.toml":
        table = document.get("tool", {}).get("ckptfix", {})
        where = f"{path} [tool.ckptfix]"
    else:
        table, where = document, str(path)
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    return FileConfig(source=path.absolute(), **parse_table(table, where))


def _known_codes() -> tuple[str, ...]:
    from ckptfix.rules import RULES

    return tuple(sorted(RULES))


def _check_selector(selector: str, known_codes: Iterable[str], where: str) -> None:
    if selector == "ALL" or any(code.startswith(selector) for code in known_codes):
        return
    raise ConfigError(f"{where}: unknown rule code or prefix {selector!r} (see `ckptfix rules`)")


def _expand(selectors: Iterable[str], known_codes: tuple[str, ...]) -> set[str]:
    return {code for s in selectors for code in known_codes if s == "ALL" or code.startswith(s)}


def select_codes(config: FileConfig, flags: CliFlags) -> frozenset[str]:
    """Resolve the enabled rules the way ruff does.

    The config's select/ignore apply first, then the command line's; a --select on the command line
    starts afresh (it replaces the config's select and ignore), --extend-select and --ignore add on top.
    """
    known = _known_codes()
    for selector in (*(flags.select or ()), *flags.ignore, *flags.extend_select):
        _check_selector(selector, known, "command line")
    if flags.select is not None:
        enabled = _expand(flags.select, known)
    else:
        enabled = _expand(config.select if config.select is not None else ("ALL",), known)
        enabled -= _expand(config.ignore, known)
    enabled |= _expand((*config.extend_select, *flags.extend_select), known)
    enabled -= _expand(flags.ignore, known)
    return frozenset(enabled)


def resolve(config: FileConfig, flags: CliFlags) -> Settings:
    """Merge a config file with command-line flags; the command line wins."""
    base_exclude = flags.exclude if flags.exclude is not None else config.exclude
    exclude = (
        *(DEFAULT_EXCLUDE if base_exclude is None else base_exclude),
        *config.extend_exclude,
        *flags.extend_exclude,
    )
    defaults = Options()
    options = Options(
        select=select_codes(config, flags),
        style=flags.style or config.style or defaults.style,
        barrier_timeout=flags.barrier_timeout or config.barrier_timeout or defaults.barrier_timeout,
        final_timeout=flags.final_timeout or config.final_timeout or defaults.final_timeout,
        assume_distributed=(
            defaults.assume_distributed if config.assume_distributed is None else config.assume_distributed
        ),
        extra_save_functions=config.extra_save_functions,
        extra_main_predicates=config.extra_main_predicates,
        rewrite_local_rank_guards=bool(config.rewrite_local_rank_guards),
        unsafe_fixes=bool(flags.unsafe_fixes if flags.unsafe_fixes is not None else config.unsafe_fixes),
    )
    return Settings(options=options, root=config.root, exclude=exclude, cache=config.cache is not False)


def config_start(paths: Iterable[str], stdin_filename: str | None) -> Path:
    """Where to look for the config: the common directory of the inputs, as black does."""
    absolute = [os.path.abspath(p) for p in paths if p != "-"]
    if stdin_filename is not None:
        absolute.append(os.path.abspath(stdin_filename))
    if not absolute:
        return Path.cwd()
    common = Path(os.path.commonpath(absolute))
    return common if common.is_dir() else common.parent
