"""Facts that cross files (issue 12): each test is a small project, analysed one file at a time with the
facts of the others, as `ckptfix check` / `apply` do."""

from __future__ import annotations

from pathlib import Path

from tests.project.conftest import check, codes, fix, link, write

TRAIN_GUARDED = """
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import utils as U


def main():
    dist.init_process_group("gloo")
    model = DDP(torch.nn.Linear(4, 4))
    for epoch in range(3):
        model(torch.randn(2, 4)).sum().backward()
        if dist.get_rank() == 0:
            U.save_checkpoint(model.state_dict(), "ckpt.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
"""

UTILS = """
import torch
import torch.distributed as dist


def save_checkpoint(state, path):
    torch.save(state, path)
"""


def test_helper_guarded_only_in_its_caller_gets_no_guard_and_no_barrier(tmp_path: Path) -> None:
    root = write(tmp_path, {"train.py": TRAIN_GUARDED, "utils.py": UTILS})
    helper = check(root, "utils.py")
    assert "CKP001" not in codes(helper) and "CKP002" not in codes(helper)
    ckp008 = next(f for f in helper if f.code == "CKP008")
    assert "callers in another file: train.py:14" in ckp008.message  # where the fact comes from
    rewritten = fix(root, "utils.py", unsafe=True)
    assert "barrier" not in rewritten and "is_main_process" not in rewritten


def test_the_callers_site_gets_the_barrier_after_its_guard_and_the_final_sync(tmp_path: Path) -> None:
    root = write(tmp_path, {"train.py": TRAIN_GUARDED, "utils.py": UTILS})
    findings = check(root, "train.py")
    assert codes(findings) == ["CKP002", "CKP004"]
    ckp002 = next(f for f in findings if f.code == "CKP002")
    assert ckp002.fixable and "utils.py:6" in ckp002.message  # says where the write is
    rewritten = fix(root, "train.py")
    guard = '        if dist.get_rank() == 0:\n            U.save_checkpoint(model.state_dict(), "ckpt.pt")\n'
    assert guard + "        checkpoint_barrier(timeout=120)\n" in rewritten
    assert "final_sync(timeout=180)" in rewritten


def test_name_alone_no_longer_makes_a_project_helper_a_collective(tmp_path: Path) -> None:
    # Without the project, `U.save_checkpoint` under a guard is taken for DeepSpeed's collective.
    root = write(tmp_path, {"train.py": TRAIN_GUARDED, "utils.py": UTILS})
    from ckptfix import api

    alone = api.check_source((root / "train.py").read_text(), str(root / "train.py"))
    assert "CKP006" in codes(alone)
    assert "CKP006" not in codes(check(root, "train.py"))


def test_helper_shared_by_a_guarded_and_an_unguarded_script_gets_no_barrier_inside(tmp_path: Path) -> None:
    pretrain = TRAIN_GUARDED.replace(
        "        if dist.get_rank() == 0:\n            U.save_checkpoint", "        U.save_checkpoint"
    )
    root = write(tmp_path, {"finetune.py": TRAIN_GUARDED, "pretrain.py": pretrain, "utils.py": UTILS})
    helper = check(root, "utils.py")
    assert "CKP001" in codes(helper)  # pretrain.py runs it on every rank: the write still needs its guard
    assert "CKP002" not in codes(helper)  # ... but the barrier is each caller's
    rewritten = fix(root, "utils.py", unsafe=True)
    assert "barrier" not in rewritten
    for script in ("pretrain.py", "finetune.py"):
        assert "checkpoint_barrier(timeout=120)" in fix(root, script), script


def test_saving_helper_through_an_aliased_from_import_at_any_depth(tmp_path: Path) -> None:
    train = TRAIN_GUARDED.replace("import utils as U", "from pkg.misc import save_model as sm").replace(
        "U.save_checkpoint", "sm"
    )
    files = {
        "train.py": train,
        "pkg/__init__.py": "",
        "pkg/misc.py": "from .io import write_state\n\n\n"
        "def save_model(state, path):\n    write_state(state, path)\n",
        "pkg/io.py": "import torch\n\n\ndef write_state(state, path):\n    torch.save(state, path)\n",
    }
    root = write(tmp_path, files)
    findings = check(root, "train.py")
    assert "CKP002" in codes(findings)
    assert "pkg/io.py:5" in next(f for f in findings if f.code == "CKP002").message


PREDICATE_FILES = {
    "comm.py": """
        import torch.distributed as dist


        def leader(args):
            return args.rank == 0
        """,
    "train.py": """
        import torch
        import torch.distributed as dist

        import comm


        def main(args):
            dist.init_process_group("gloo")
            model = torch.nn.Linear(4, 4)
            for epoch in range(3):
                if comm.leader(args):
                    torch.save(model.state_dict(), "ckpt.pt")
            dist.destroy_process_group()


        if __name__ == "__main__":
            main(None)
        """,
}


def test_a_predicate_defined_in_another_module_is_a_guard(tmp_path: Path) -> None:
    root = write(tmp_path, PREDICATE_FILES)
    from ckptfix import api

    alone = codes(api.check_source((root / "train.py").read_text(), str(root / "train.py")))
    assert "CKP001" in alone  # `leader` means nothing by its name
    found = codes(check(root, "train.py"))
    assert "CKP001" not in found and "CKP002" in found


def test_a_flag_computed_from_the_rank_in_a_config_module_is_a_guard(tmp_path: Path) -> None:
    files = dict(PREDICATE_FILES)
    files["comm.py"] = 'import os\n\nLEADER = int(os.environ.get("RANK", "0")) == 0\n'
    files["train.py"] = files["train.py"].replace("comm.leader(args)", "comm.LEADER")
    root = write(tmp_path, files)
    assert "CKP001" not in codes(check(root, "train.py"))


def test_a_decorator_imported_from_a_utility_module_runs_the_method_on_the_main_process(
    tmp_path: Path,
) -> None:
    files = {
        "dist_utils.py": """
            import functools

            import torch.distributed as dist


            def leader_only(fn):
                @functools.wraps(fn)
                def wrapper(*args, **kwargs):
                    if dist.get_rank() == 0:
                        return fn(*args, **kwargs)

                return wrapper
            """,
        "trainer.py": """
            import torch
            import torch.distributed as dist

            from dist_utils import leader_only


            class Trainer:
                def __init__(self, model):
                    self.model = model

                @leader_only
                def save(self, path):
                    torch.save(self.model.state_dict(), path)

                def fit(self):
                    for epoch in range(3):
                        self.save("ckpt.pt")
            """,
    }
    root = write(tmp_path, files)
    assert "CKP001" not in codes(check(root, "trainer.py"))
    assert "barrier" not in fix(root, "trainer.py", unsafe=True).split("def fit")[0]


def test_a_rank_returning_helper_of_another_module_makes_a_per_rank_write(tmp_path: Path) -> None:
    files = {
        "naming.py": "import torch.distributed as dist\n\n\n"
        'def shard_suffix():\n    return f"-{dist.get_rank()}"\n',
        "train.py": """
            import torch
            import torch.distributed as dist

            import naming

            dist.init_process_group("gloo")
            opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
            torch.save(opt.state_dict(), f"optim{naming.shard_suffix()}.pt")
            """,
    }
    root = write(tmp_path, files)
    assert "CKP001" not in codes(check(root, "train.py"))


def test_a_collective_helper_of_another_module_under_a_guard_is_reported_not_rewritten(
    tmp_path: Path,
) -> None:
    files = {
        "train.py": TRAIN_GUARDED.replace(
            'U.save_checkpoint(model.state_dict(), "ckpt.pt")', "U.gather_stats(model)"
        ),
        "utils.py": "import torch.distributed as dist\n\n\ndef gather_stats(model):\n    out = [None] * 2\n"
        "    dist.all_gather_object(out, 1)\n    return out\n",
    }
    root = write(tmp_path, files)
    findings = [f for f in check(root, "train.py") if f.code == "CKP006"]
    assert len(findings) == 1 and not findings[0].fixable
    assert "utils.py:4" in findings[0].message and "all_gather_object" in findings[0].message


def test_a_hook_passed_as_a_value_from_another_file_gets_no_barrier_inside(tmp_path: Path) -> None:
    files = {
        "hooks.py": "import torch\nimport torch.distributed\n\n\n"
        "def save_hook(state, path):\n    torch.save(state, path)\n\n\n"
        "def run():\n    save_hook({}, 'x.pt')\n",
        "train.py": """
            import torch.distributed as dist

            import hooks

            dist.init_process_group("gloo")
            callbacks = [hooks.save_hook]
            """,
    }
    root = write(tmp_path, files)
    ckp002 = [f for f in check(root, "hooks.py") if f.code == "CKP002"]
    assert ckp002 and not ckp002[0].fixable
    assert "passed as a value at train.py:6" in ckp002[0].message
    assert "barrier" not in fix(root, "hooks.py", unsafe=True)


def test_a_public_function_of_a_packaged_library_gets_no_barrier_inside(tmp_path: Path) -> None:
    files = {
        "mylib/__init__.py": "",
        "mylib/io.py": "import torch\nimport torch.distributed as dist\n\n\ndef save_all(state, path):\n"
        "    torch.save(state, path)\n\n\ndef _local_use():\n    save_all({}, 'x.pt')\n",
    }
    root = write(tmp_path, files)
    (root / "pyproject.toml").write_text('[project]\nname = "mylib"\n')
    ckp002 = [f for f in check(root, "mylib/io.py") if f.code == "CKP002"]
    assert ckp002 and not ckp002[0].fixable and "library module" in ckp002[0].message
    assert "barrier" not in fix(root, "mylib/io.py", unsafe=True)


def test_the_view_says_where_each_fact_comes_from(tmp_path: Path) -> None:
    root = write(tmp_path, {"train.py": TRAIN_GUARDED, "utils.py": UTILS})
    project = link(root)
    helper = project.view(str(root / "utils.py"))
    assert [s.where for s in helper.callers["save_checkpoint"]] == ["train.py:14"]
    caller = project.view(str(root / "train.py"))
    assert caller.imported["utils.save_checkpoint"].saves == "utils.py:6"


HOOK_FILES = {
    "hooks.py": """
        import torch
        import torch.distributed as dist


        def save_state(state, path):
            torch.save(state, path)
        """,
    "train.py": """
        import torch
        import torch.distributed as dist

        import hooks

        CALLBACKS = [hooks.save_state]


        def main():
            dist.init_process_group("gloo")
            model = torch.nn.Linear(4, 4)
            for step in range(4):
                if dist.get_rank() == 0:
                    for callback in CALLBACKS:
                        callback(model.state_dict(), "ckpt.pt")
            dist.destroy_process_group()


        if __name__ == "__main__":
            main()
        """,
}


def test_a_hook_triggered_under_a_guard_is_main_process_code(tmp_path: Path) -> None:
    root = write(tmp_path, HOOK_FILES)
    hook = codes(check(root, "hooks.py"))
    assert "CKP001" not in hook and "CKP002" not in hook
    assert "barrier" not in fix(root, "hooks.py", unsafe=True)
    trigger = [f for f in check(root, "train.py") if f.code == "CKP002"]
    assert [f.line for f in trigger] == [15] and trigger[0].fixable
    assert "checkpoint_barrier" in fix(root, "train.py")


def test_a_callback_list_bound_twice_is_not_followed(tmp_path: Path) -> None:
    files = dict(HOOK_FILES)
    files["train.py"] = files["train.py"].replace(
        "CALLBACKS = [hooks.save_state]", "CALLBACKS = [hooks.save_state]\n        CALLBACKS = []"
    )
    root = write(tmp_path, files)
    assert "CKP002" not in codes(check(root, "train.py"))  # the call of `callback` is no known save
    assert "CKP001" in codes(check(root, "hooks.py"))  # where the hook runs is not seen


def test_a_file_that_cannot_be_parsed_makes_the_functions_it_names_unknown(tmp_path: Path) -> None:
    broken = TRAIN_GUARDED.replace("def main():", "def main(:").replace("train", "other")
    root = write(tmp_path, {"train.py": TRAIN_GUARDED, "utils.py": UTILS, "broken.py": broken})
    helper = check(root, "utils.py")
    assert "CKP001" in codes(helper)  # no longer provably main-process code
    ckp002 = next(f for f in helper if f.code == "CKP002")
    assert not ckp002.fixable and "broken.py (not readable as Python)" in ckp002.message


MAIN_SCRIPT = """
    import torch
    import torch.distributed as dist


    def main(epochs):
        dist.init_process_group("gloo")
        model = torch.nn.Linear(4, 4)
        for epoch in range(epochs):
            if dist.get_rank() == 0:
                torch.save(model.state_dict(), "ckpt.pt")
        dist.destroy_process_group()


    if __name__ == "__main__":
        main(3)
    """


def _barrier_fix(root: Path) -> list:
    return [f for f in check(root, "main.py") if f.code == "CKP002"]


def test_an_entry_point_also_run_from_a_launcher_class_gets_its_barrier_as_an_unsafe_fix(
    tmp_path: Path,
) -> None:
    # deit, detr, dino: main.py's main() is also called by run_with_submitit.py's Trainer.__call__,
    # which the cluster runs on every rank; ckptfix cannot see that, so the fix is unsafe.
    launcher = """
        import main as entry


        class Trainer:
            def __call__(self):
                entry.main(3)
        """
    root = write(tmp_path, {"main.py": MAIN_SCRIPT, "run_with_submitit.py": launcher})
    [finding] = _barrier_fix(root)
    assert finding.unsafe and not finding.fixable
    assert "every rank calls `main` at run_with_submitit.py:6" in finding.message
    assert "checkpoint_barrier" in fix(root, "main.py", unsafe=True)
    assert "checkpoint_barrier" not in fix(root, "main.py")


def test_an_entry_point_every_rank_runs_from_another_script_keeps_its_safe_barrier(tmp_path: Path) -> None:
    other = """
        import main as entry

        if __name__ == "__main__":
            entry.main(5)
        """
    root = write(tmp_path, {"main.py": MAIN_SCRIPT, "finetune.py": other})
    [finding] = _barrier_fix(root)
    assert finding.fixable and not finding.unsafe
    assert "checkpoint_barrier" in fix(root, "main.py")


def test_an_entry_point_called_in_a_branch_of_another_file_is_not_proved_alike(tmp_path: Path) -> None:
    other = """
        import sys

        import main as entry

        if len(sys.argv) > 1:
            entry.main(5)
        """
    root = write(tmp_path, {"main.py": MAIN_SCRIPT, "finetune.py": other})
    [finding] = _barrier_fix(root)
    assert finding.unsafe and "finetune.py:6" in finding.message


def test_a_rank_in_the_state_passed_to_a_saving_helper_does_not_make_the_write_per_rank(
    tmp_path: Path,
) -> None:
    # detr/deit: the model handed to the helper was wrapped with `DDP(model, device_ids=[args.gpu])`.
    train = TRAIN_GUARDED.replace(
        "model = DDP(torch.nn.Linear(4, 4))", "model = DDP(torch.nn.Linear(4, 4), device_ids=[args.gpu])"
    ).replace("def main():", "def main(args):")
    root = write(tmp_path, {"train.py": train, "utils.py": UTILS})
    assert "CKP002" in codes(check(root, "train.py"))
    per_rank = train.replace('"ckpt.pt"', 'f"ckpt_{args.rank}.pt"')
    write(root, {"train.py": per_rank})
    assert "CKP002" not in codes(check(root, "train.py"))  # the path names the rank: one file per rank


def test_a_file_distributed_only_through_another_files_predicate_gets_unsafe_fixes_only(
    tmp_path: Path,
) -> None:
    tool = """
        import torch

        import comm


        def run(model):
            torch.save(model.state_dict(), "m.pt")
            if comm.leader(None):
                print("done")
        """
    root = write(tmp_path, {"comm.py": PREDICATE_FILES["comm.py"], "tool.py": tool})
    from ckptfix import api

    assert api.check_source((root / "tool.py").read_text(), str(root / "tool.py")) == []
    found = [f for f in check(root, "tool.py") if f.code == "CKP001"]
    assert found and found[0].unsafe and not found[0].fixable
    assert "only because it uses `comm.leader` (comm.py:4)" in found[0].message


def test_a_cycle_of_helpers_does_not_hide_a_collective(tmp_path: Path) -> None:
    helpers = """
        import torch.distributed as dist


        def ping(n):
            if n:
                pong(n - 1)


        def pong(n):
            ping(n)
            dist.all_reduce(n)
        """
    train = TRAIN_GUARDED.replace('U.save_checkpoint(model.state_dict(), "ckpt.pt")', "U.ping(3)")
    root = write(tmp_path, {"utils.py": helpers, "train.py": train})
    project = link(root)
    view = project.view(str(root / "train.py"))
    assert view.imported["utils.ping"].collective == "torch.distributed.all_reduce (utils.py:11)"
    # Asked in the other order, the same answer (no fact memoised half-way round the cycle).
    project = link(root)
    assert project.view(str(root / "utils.py")) is not None
    key = (str(root / "utils.py"), "pong")
    assert project.collective(key) and project.collective((str(root / "utils.py"), "ping"))


def test_a_model_placed_on_the_ranks_gpu_in_the_state_of_save_on_master_is_still_a_checkpoint(
    tmp_path: Path,
) -> None:
    """dino's `utils.save_on_master(save_dict, path)` forwards `*args` to torch.save: the first argument
    is the state, even as a name bound to a dict holding a DDP model built with `device_ids=[args.gpu]`
    (review shape 14: the event went silent)."""
    root = write(
        tmp_path,
        {
            "utils.py": """
                import torch
                import torch.distributed as dist

                def save_on_master(*args, **kwargs):
                    if dist.get_rank() == 0:
                        torch.save(*args, **kwargs)
            """,
            "train.py": """
                import os
                import torch
                import torch.distributed as dist
                import torch.nn as nn
                import utils

                def train(args, model):
                    dist.init_process_group("gloo")
                    model = nn.parallel.DistributedDataParallel(model, device_ids=[args.gpu])
                    for epoch in range(args.epochs):
                        save_dict = {"model": model.state_dict(), "epoch": epoch}
                        utils.save_on_master(save_dict, os.path.join(args.output_dir, "checkpoint.pth"))

                if __name__ == "__main__":
                    train(None, None)
            """,
        },
    )
    assert "CKP002" in codes(check(root, "train.py"))


def test_a_package_the_project_does_not_install_is_no_library(tmp_path: Path) -> None:
    """nanotron installs `src/` only: a trainer under `examples/doremi/` (with `__init__.py` files) is
    the project's own code, whose callers are all in the project; the same module under the installed
    package is a library's."""
    io = "import torch\nimport torch.distributed as dist\n\n\n"
    io += "def save_all(state, path):\n    torch.save(state, path)\n"
    files = {
        "mylib/__init__.py": "",
        "mylib/io.py": io,
        "examples/__init__.py": "",
        "examples/doremi/__init__.py": "",
        "examples/doremi/io.py": io,
    }
    root = write(tmp_path, files)
    metadata = '[project]\nname = "mylib"\n[tool.setuptools]\npackages = ["mylib"]\n'
    (root / "pyproject.toml").write_text(metadata)
    library = link(root).library_files
    assert str(root / "mylib" / "io.py") in library
    assert str(root / "examples" / "doremi" / "io.py") not in library
