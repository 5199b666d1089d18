"""Root finding and module resolution: how `python train.py` and packages find the project's modules."""

from __future__ import annotations

from pathlib import Path

from ckptfix.project.modules import ModuleIndex
from ckptfix.project.root import find_root


def _index(root: Path, names: list[str]) -> ModuleIndex:
    files = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        files.append(str(path))
    return ModuleIndex(str(root), files)


def test_root_is_the_nearest_marked_directory_above_the_paths(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "scripts" / "deep").mkdir(parents=True)
    script = tmp_path / "scripts" / "deep" / "train.py"
    script.touch()
    assert find_root([str(script)]) == (str(tmp_path), True)
    (tmp_path / "scripts" / ".git").mkdir()
    assert find_root([str(script)]) == (str(tmp_path / "scripts"), True)


def test_without_a_marker_the_paths_directory_is_the_root(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "train.py").touch()
    root, marked = find_root([str(tmp_path / "a" / "train.py")])
    # Some directory above tmp_path may be marked on a developer's machine; only check the unmarked case.
    if not marked:
        assert root == str(tmp_path / "a")


def test_a_script_finds_the_module_beside_it(tmp_path: Path) -> None:
    index = _index(tmp_path, ["tools/train.py", "tools/utils.py", "utils.py"])
    found = index.resolve(str(tmp_path / "tools/train.py"), 0, "utils.save_checkpoint")
    assert found == (str(tmp_path / "tools/utils.py"), "save_checkpoint")


def test_src_layout_and_submodules(tmp_path: Path) -> None:
    index = _index(tmp_path, ["src/pkg/__init__.py", "src/pkg/misc.py", "train.py"])
    found = index.resolve(str(tmp_path / "train.py"), 0, "pkg.misc.save_model")
    assert found == (str(tmp_path / "src/pkg/misc.py"), "save_model")
    # `from pkg import misc` then `misc.save_model`: the same function.
    assert index.resolve(str(tmp_path / "train.py"), 0, "pkg.misc") == (str(tmp_path / "src/pkg/misc.py"), "")


def test_package_relative_imports(tmp_path: Path) -> None:
    index = _index(
        tmp_path, ["pkg/__init__.py", "pkg/engine/__init__.py", "pkg/engine/loop.py", "pkg/misc.py"]
    )
    loop = str(tmp_path / "pkg/engine/loop.py")
    assert index.resolve(loop, 2, "misc.save_model") == (str(tmp_path / "pkg/misc.py"), "save_model")
    assert index.resolve(loop, 1, "") is not None  # `from . import x`: the package itself
    # An installed library is not the project's: no answer, not a guess.
    assert index.resolve(loop, 0, "torch.save") is None


def test_the_names_pattern_finds_whole_words_only() -> None:
    from ckptfix.project.build import _names_pattern

    pattern = _names_pattern({"save", "save_all", "get_rank", "get_rank_0"})
    for text in (b"x.save(1)", b"save_all()", b"from m import get_rank_0", b"get_rank"):
        assert pattern.search(text), text
    for text in (b"saved()", b"unsave", b"get_ranks", b"get_rank_01"):
        assert not pattern.search(text), text


def test_a_large_tree_with_no_project_marker_is_analysed_file_by_file(tmp_path: Path) -> None:
    from ckptfix.project import build

    tree = tmp_path / "site-packages" / "lib"
    tree.mkdir(parents=True)
    for i in range(build._UNMARKED_FILES + 1):
        (tree / f"m{i}.py").write_text("import torch\n")
    if find_root([str(tree)])[1]:
        return  # a marker above tmp_path on this machine: the rule does not apply
    project = build.load_project([str(tree)], [], True, None, lambda m: None)
    assert project.note is not None and not project.summaries
    (tree / "m0.py").unlink()
    (tree / "m1.py").unlink()
    assert build.load_project([str(tree)], [], True, None, lambda m: None).note is None
