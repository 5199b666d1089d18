"""The shapes real training code has, each with its correct outcome (issue 13, point 3).

Every test is the shape of a wrong rewrite or a false finding that the review of 32 public training
repositories found (bench/review.py; shape numbers refer to that review), written small: the shape,
not the file. Snippets are run as scripts (`src` adds a `__main__` block calling what they define).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ckptfix import packages
from ckptfix.api import check_source, fix_source
from ckptfix.findings import Finding
from ckptfix.options import Options
from tests.codemods.helpers import src

SAFE = Options()  # what `ckptfix apply` does by default: no unsafe fix
HEADER = "import os\nimport shutil\nimport torch\nimport torch.distributed as dist\n"


def _check(code: str, options: Options = SAFE) -> list[Finding]:
    return check_source(src(code, HEADER), "train.py", options)


def _apply(code: str, options: Options = SAFE, entry: bool = True) -> str | None:
    """The rewritten source, or None when `apply` writes nothing."""
    return fix_source(src(code, HEADER, entry), "train.py", options).new_source


def _codes(code: str) -> list[str]:
    return [f.code for f in _check(code)]


# --- rank 0 goes first ---------------------------------------------------------------------------
def test_rank_zero_goes_first_is_balanced_not_a_finding() -> None:  # shape 27
    code = """
        def main(args):
            if args.local_rank not in [-1, 0]:
                dist.barrier()  # the others wait while rank 0 downloads
            model = download(args)
            if args.local_rank == 0:
                dist.barrier()
            return model
    """
    assert _codes(code) == []
    assert _apply(code) is None


# --- objects that exist on the main process only -------------------------------------------------
@pytest.mark.parametrize(
    "build",
    [
        "saver = None\nif dist.get_rank() == 0:\n    saver = CheckpointSaver(model)\n",
        "saver = CheckpointSaver(model) if dist.get_rank() == 0 else None\n",
    ],
)
def test_a_method_of_a_rank_zero_only_object_is_never_a_collective(build: str) -> None:  # shape 26
    code = (
        "def train(model, epochs):\n"
        + textwrap.indent(build, "    ")
        + "    for epoch in range(epochs):\n"
        + "        if saver is not None:\n"
        + "            saver.save_checkpoint(epoch, metric=float(epoch))\n"
        + "        dist.barrier()\n"
    )
    assert "CKP006" not in _codes(code)
    assert _apply(code) is None


# --- per-rank and per-shard outputs ----------------------------------------------------------------
@pytest.mark.parametrize(
    "code",
    [
        # shape 03: the file name from a rank-valued helper
        """
        def rankstr():
            return f"rank{dist.get_rank()}"

        def save(model, out):
            torch.save(model.state_dict(), os.path.join(out, f"teacher.{rankstr()}.pth"))
        """,
        # shape 02 (one file): the caller passes the per-rank name
        """
        def save_state_dict_to_file(optimizer, filename):
            torch.save(optimizer.state_dict(), filename)

        def save(out_dir, optimizer):
            rank = dist.get_rank()
            save_state_dict_to_file(optimizer, os.path.join(out_dir, f"optimizer_{rank}.pt"))
            dist.barrier()
        """,
        # shape 06: one writer per data-parallel group
        """
        def save_parameter_state(optimizer, dp_group, filename):
            state = optimizer.state_dict()
            if dp_group.rank() == 0:
                torch.save(state, filename)
            dist.barrier()
        """,
        # shapes 07, 30: a private temporary file, read back
        """
        import tempfile

        def roundtrip(model):
            with tempfile.TemporaryDirectory() as tmp_dir:
                model_dir = os.path.join(tmp_dir, "model")
                torch.save(model.state_dict(), model_dir)
        """,
        # shape 33: an offload cache the same object reads back
        """
        class ModuleGroup:
            def __init__(self, tensors, path):
                self.tensors = tensors
                self.path = path

            def offload(self):
                torch.save(self.tensors, self.path)

            def onload(self):
                return torch.load(self.path)
        """,
    ],
)
def test_per_rank_and_private_outputs_are_never_narrowed_to_rank_zero(code: str) -> None:
    assert not {"CKP001", "CKP008"} & set(_codes(code))
    after = _apply(code)
    assert after is None or "is_main_process" not in after


def test_a_per_rank_work_list_is_not_guarded_by_default() -> None:  # shape 20
    code = """
        import random

        def main(data_root, save_root):
            paths = [os.path.join(data_root, x) for x in os.listdir(data_root)]
            random.shuffle(paths)  # each rank its own order; done files are skipped
            for path in paths:
                out = os.path.join(save_root, os.path.basename(path) + ".pt")
                if os.path.exists(out):
                    continue
                torch.save({"path": path}, out)
    """
    [finding] = [f for f in _check(code) if f.code == "CKP001"]
    assert finding.unsafe and not finding.fixable and "per-rank work list" in finding.message
    assert _apply(code) is None or "is_main_process" not in (_apply(code) or "")


def test_a_per_rank_work_list_at_module_level_is_not_guarded_by_default() -> None:  # shape 43
    code = """
        import random

        dist.init_process_group("gloo")
        paths = [f"img_{i}.jpg" for i in range(1000)]
        random.shuffle(paths)
        for path in paths:
            out = os.path.join("annotations", os.path.basename(path) + ".pth")
            if os.path.exists(out):
                continue  # another rank already did this one
            torch.save({"file": path}, out)
    """
    [finding] = [f for f in _check(code) if f.code == "CKP001"]
    assert finding.unsafe and not finding.fixable and "per-rank work list" in finding.message
    assert "is_main_process" not in (_apply(code) or "")


@pytest.mark.parametrize(
    "code",
    [
        # shape 44: serialised in memory, then handed to a storage backend with the caller's path
        """
        import io

        def save_checkpoint(checkpoint, filename, backend):
            with io.BytesIO() as f:
                torch.save(checkpoint, f)
                backend.put(f.getvalue(), filename)
        """,
        # shape 45: the path parameter rebound (`output_dir = Path(output_dir)`), then a method of it
        """
        from pathlib import Path

        def save_state(output_dir, scaler):
            output_dir = Path(output_dir)
            torch.save(scaler.state_dict(), output_dir.joinpath("scaler.pt"))
        """,
    ],
)
def test_a_path_from_a_parameter_is_an_assumption_however_it_is_handed_on(code: str) -> None:
    [finding] = [
        f for f in check_source(HEADER + textwrap.dedent(code), "lib.py", SAFE) if f.code == "CKP001"
    ]
    assert finding.unsafe and not finding.fixable and "parameter of" in finding.message
    after = fix_source(HEADER + textwrap.dedent(code), "lib.py", SAFE).new_source
    assert "is_main_process" not in (after or "")


# --- freeing a collective moves only the collective ---------------------------------------------
def test_a_lift_never_drags_the_rotation_of_old_checkpoints_to_every_rank() -> None:  # shape 22
    code = """
        def maybe_checkpoint(accelerator, output_dir, step, every):
            if step % every == 0:
                if accelerator.is_main_process:
                    for old in sorted(os.listdir(output_dir))[:-2]:
                        shutil.rmtree(os.path.join(output_dir, old))
                    accelerator.save_state(os.path.join(output_dir, f"checkpoint-{step}"))
    """
    [finding] = [f for f in _check(code, Options(unsafe_fixes=True)) if f.code == "CKP006"]
    assert not finding.fixable
    assert "shutil.rmtree" in finding.message or "would run on every rank" in finding.message
    assert "shutil.rmtree" not in (_apply(code, Options(unsafe_fixes=True)) or "").split("if accelerator")[0]


# --- a call's meaning never changes -----------------------------------------------------------------
def test_torch_save_keywords_become_positions_of_atomic_save() -> None:  # shape 28
    code = """
        def save(state, checkpoint_dir, step):
            if dist.get_rank() == 0:
                torch.save(obj=state, f=os.path.join(checkpoint_dir, f"step_{step}.pt"))
            dist.barrier()
    """
    after = _apply(code)
    assert after is not None
    assert 'atomic_save(state, os.path.join(checkpoint_dir, f"step_{step}.pt"))' in after
    assert "f=" not in after.split("atomic_save(")[1].split(")")[0]


def test_a_save_function_variable_keeps_its_callee() -> None:  # shape 19
    code = """
        import safetensors.torch

        def write_lora_layers(state_dict, save_directory, save_function=None, safe_serialization=True):
            if save_function is None:
                if safe_serialization:
                    def save_function(weights, filename):
                        return safetensors.torch.save_file(weights, filename)
                else:
                    save_function = torch.save
            save_function(state_dict, os.path.join(save_directory, "lora.safetensors"))
    """
    after = _apply(code) or ""
    assert "atomic_save(state_dict" not in after  # a pickle written into a .safetensors file


def test_a_file_object_passed_down_is_not_written_atomically() -> None:  # shape 16
    code = """
        def persistent_save(obj, filename):
            with open(filename + ".tmp", "wb") as f:
                retry_save(obj, f)
            os.replace(filename + ".tmp", filename)

        def retry_save(obj, f):
            for i in range(3):
                try:
                    return torch.save(obj, f)
                except Exception:
                    pass
    """
    assert "CKP005" not in _codes(code)


# --- guards that are not rank 0 ---------------------------------------------------------------------
def test_a_guard_nested_in_another_writers_guard_stays_reachable() -> None:  # shape 05
    code = """
        def is_last_rank():
            return dist.get_rank() == dist.get_world_size() - 1

        def write_predictions(predictions, out_dir):
            if is_last_rank():
                torch.save(predictions, os.path.join(out_dir, "predictions.pt"))
            dist.barrier()
    """
    assert _codes(code) == []
    assert _apply(code) is None


def test_a_rank0_mode_parameter_is_not_a_rank_test() -> None:  # shape 17
    code = """
        import torch.distributed.checkpoint as dcp

        def load_base_checkpoint(name, sharded_state_dict, rank0=False):
            if rank0:
                state_dict = {"args": None}
                dcp.load(state_dict=state_dict, checkpoint_id=name)
                return state_dict
            dcp.load(state_dict=sharded_state_dict, checkpoint_id=name)
            return sharded_state_dict
    """
    assert "CKP006" not in _codes(code)


def test_a_count_of_ranks_is_not_a_rank_test() -> None:
    code = """
        def report(model, failed_ranks):
            if failed_ranks == 0:
                torch.save(model.state_dict(), "ok.pt")
    """
    assert "CKP008" not in _codes(code) and "CKP001" in _codes(code)


def test_a_local_rank_guard_with_minus_one_for_single_process_is_reported() -> None:  # shape 10
    code = """
        def save_projector(args, weights, output_dir):
            if args.local_rank == 0 or args.local_rank == -1:
                torch.save(weights, os.path.join(output_dir, "mm_projector.bin"))
    """
    [finding] = [f for f in _check(code) if f.code == "CKP001"]
    assert "local-rank test" in finding.message and not finding.fixable
    assert _apply(code) is None


def test_a_guard_vacuous_under_one_launcher_says_what_holds_under_each() -> None:
    code = """
        def save_checkpoint(state, filename="checkpoint.pth.tar"):
            torch.save(state, filename)

        def main_worker(gpu, ngpus_per_node, args):
            for epoch in range(args.epochs):
                if not args.multiprocessing_distributed or (
                    args.multiprocessing_distributed and args.rank % ngpus_per_node == 0
                ):
                    save_checkpoint({"epoch": epoch})
    """
    [finding] = [f for f in _check(code) if f.code == "CKP001"]
    both = "(mp.spawn) it keeps one writer per node, without it (torchrun) every rank writes"
    assert both in finding.message
    assert finding.unsafe and not finding.fixable


# --- not findings ------------------------------------------------------------------------------------
def test_a_function_passed_as_an_argument_is_not_a_call_of_it() -> None:  # shape 18
    code = """
        def main(fabric):
            metric = torch.zeros(1)
            dist.all_reduce(metric)

        def setup(fabric, out):
            fabric.launch(main)
            if dist.get_rank() == 0:
                save_hyperparameters(setup, out)
    """
    assert "CKP006" not in _codes(code)


def test_super_is_the_parents_method_not_recursion() -> None:  # shape 36
    code = """
        from torch.distributed.optim import ZeroRedundancyOptimizer

        class ZeroOptimizer(ZeroRedundancyOptimizer):
            def state_dict(self):
                self.consolidate_state_dict()
                return super().state_dict() if dist.get_rank() == 0 else {}
    """
    assert "CKP006" not in _codes(code)


def test_a_stop_flag_broadcast_from_rank_zero_is_agreed_on() -> None:
    code = """
        def train(model, loader):
            stop = False
            while not stop:
                for batch in loader:
                    model(batch).backward()
                if dist.get_rank() == 0:
                    stop = evaluate(model) > 0.9
                flag = [stop]
                dist.broadcast_object_list(flag, src=0)
                stop = flag[0]
    """
    assert "CKP006" not in _codes(code)


def test_a_name_matched_collective_says_when_it_is_one() -> None:  # shape 35
    code = """
        def maybe_checkpoint(accelerator, output_dir, step):
            if accelerator.is_main_process:
                accelerator.save_state(os.path.join(output_dir, f"checkpoint-{step}"))
    """
    [finding] = [f for f in _check(code) if f.code == "CKP006"]
    assert "by its name" in finding.message and "DeepSpeed, FSDP" in finding.message


# --- barriers only where every rank passes ----------------------------------------------------------
def test_no_barrier_in_a_hook_passed_as_a_value() -> None:  # shape 21
    code = """
        from accelerate import Accelerator

        def main(output_dir, steps):
            accelerator = Accelerator()

            def save_model_hook(models, weights, out):
                if accelerator.is_main_process:
                    for m in models:
                        torch.save(m.state_dict(), os.path.join(out, "model.pt"))

            accelerator.register_save_state_pre_hook(save_model_hook)
            for step in range(steps):
                accelerator.save_state(os.path.join(output_dir, f"checkpoint-{step}"))
    """
    after = _apply(code, Options(unsafe_fixes=True)) or ""
    hook = after.split("def save_model_hook")[1].split("accelerator.register")[0] if after else ""
    assert "checkpoint_barrier" not in hook


def test_no_barrier_in_a_library_method_nothing_here_calls() -> None:  # shape 23
    code = """
        import safetensors.torch

        class ModelMixin(torch.nn.Module):
            def save_pretrained(self, save_directory, is_main_process=True):
                state_dict = self.state_dict()
                safetensors.torch.save_file(state_dict, os.path.join(save_directory, "model.safetensors"))
    """
    after = _apply(code, Options(unsafe_fixes=True), entry=False) or ""  # a library: no caller here
    assert "checkpoint_barrier" not in after


def test_the_final_sync_goes_before_end_training() -> None:  # shape 14
    code = """
        from accelerate import Accelerator

        def train(save_dir, steps=10):
            accelerator = Accelerator()
            model = torch.nn.Linear(4, 4)
            for _ in range(steps):
                accelerator.backward(model(torch.randn(2, 4)).sum())
            torch.save(accelerator.unwrap_model(model).state_dict(), f"{save_dir}/model.pt")
            accelerator.end_training()
    """
    after = _apply(code)
    assert after is not None
    assert after.index("final_sync(") < after.index("accelerator.end_training()")


# --- the output of apply -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "code",
    [
        """
        def train(model, loader, out):
            for step, batch in enumerate(loader):
                model(batch).backward()
                if step % 100 == 0:
                    torch.save(model.state_dict(), os.path.join(out, f"step_{step}.pt"))
            dist.destroy_process_group()
        """,
        """
        def train(model, loader, out, master_process):
            for step, batch in enumerate(loader):
                model(batch).backward()
                if step % 100 == 0 and master_process:
                    torch.save(model.state_dict(), os.path.join(out, "ckpt.pt"))
                    print("checkpoint saved")
        """,
    ],
)
def test_check_on_applys_output_reports_nothing_new(code: str) -> None:
    after = _apply(code)
    assert after is not None
    before_codes = {f.code for f in _check(code)}
    after_findings = check_source(after, "train.py", SAFE)
    assert {f.code for f in after_findings} <= before_codes
    assert not [f for f in after_findings if f.fixable], after_findings


def test_a_success_message_runs_only_on_success() -> None:
    code = """
        def save(model, out):
            torch.save(model.state_dict(), out)
            print(f"Checkpoint saved: {out}")
            dist.barrier()
    """
    after = _apply(code, Options(unsafe_fixes=True)) or ""
    body = after.split("try:")[1].split("except")[0]
    assert "Checkpoint saved" in body


def test_no_barrier_that_would_wait_for_rank_zeros_upload_or_validation() -> None:  # shapes 24, 32
    code = """
        from huggingface_hub import upload_folder

        def finish(accelerator, model, output_dir, repo_id):
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                torch.save(accelerator.unwrap_model(model).state_dict(), f"{output_dir}/model.pt")
                log_validation(model, output_dir)
                upload_folder(repo_id=repo_id, folder_path=output_dir)
            accelerator.end_training()
    """
    [finding] = [f for f in _check(code) if f.code == "CKP002"]
    assert not finding.fixable and "`log_validation(...)` at line 11" in finding.message
    after = _apply(code) or ""
    assert "checkpoint_barrier" not in after


@pytest.mark.parametrize(
    "code",
    [
        # shape 41: the write is in a helper; the caller's guard goes on with inference and an upload
        """
        def save_embeddings(emb, path):
            torch.save({"emb": emb}, path)

        def main(emb):
            if dist.get_rank() == 0:
                save_embeddings(emb, "learned_embeds.bin")
                images = pipeline(emb)
                upload_folder("out", images)
        """,
        # shape 40: a sibling main-process block uploads before the end of the barrier's branch
        """
        def finish(model, tokenizer, output_dir):
            is_main = dist.get_rank() == 0
            if output_dir is not None:
                model.save_pretrained(output_dir, is_main_process=is_main, save_function=accelerator.save)
                if is_main:
                    tokenizer.save_pretrained(output_dir)
                    upload_folder(repo_id="me/model", folder_path=output_dir)
        """,
    ],
)
def test_no_barrier_whose_wait_covers_other_main_process_work(code: str) -> None:
    after = _apply(code, Options(unsafe_fixes=True)) or ""
    assert "checkpoint_barrier" not in after
    reasons = [f.message for f in _check(code) if f.code == "CKP002"]
    assert any("upload_folder" in r or "pipeline" in r for r in reasons)


def test_no_final_sync_whose_wait_covers_an_upload() -> None:  # shape 42
    code = """
        def main(model, loader, push_to_hub):
            for batch in loader:
                model(batch).sum().backward()
            if dist.get_rank() == 0:
                torch.save(model.state_dict(), "out/model.pt")
                if push_to_hub:
                    upload_folder(repo_id="me/model", folder_path="out")
    """
    [finding] = [f for f in _check(code) if f.code == "CKP004"]
    assert not finding.fixable and "`upload_folder(...)` at line 11" in finding.message
    assert "final_sync" not in (_apply(code) or "")


def test_no_final_sync_after_a_loop_whose_iterations_end_in_a_barrier() -> None:  # shape 49
    code = """
        def main(accelerator, model, optimizer, batches):
            for epoch in range(3):
                for batch in batches:
                    accelerator.backward(model(batch))
                    optimizer.step()
                if accelerator.is_main_process:
                    torch.save(model.state_dict(), f"epoch_{epoch}.pt")
                accelerator.wait_for_everyone()
    """
    assert "CKP004" not in _codes(code)
    leaves_early = code.replace("optimizer.step()", "optimizer.step()\n" + " " * 20 + "if epoch > 1: break")
    assert "CKP004" in _codes(leaves_early)


@pytest.mark.parametrize("path", ["tests/test_ddp.py", "test_checkpoint.py", "unit_tests/helpers.py"])
def test_a_test_files_fixes_are_unsafe(path: str) -> None:  # shape 56
    code = src(
        """
        def test_save(tmp_path, model):
            torch.save(model.state_dict(), tmp_path / "model.pt")
            dist.barrier()
        """,
        HEADER,
    )
    found = check_source(code, path, SAFE)
    assert found and all(f.unsafe and not f.fixable for f in found if f.code in {"CKP001", "CKP005"})
    assert fix_source(code, path, SAFE).new_source is None
    assert any(f.fixable for f in check_source(code, "train.py", SAFE))


# --- the second review (30 repositories, /work/review run_a): shapes B01-B08 ------------------------
@pytest.mark.parametrize(
    "test", ["dist.get_rank() == self.logger_rank", "dist.get_rank(self.pg) == self.logger_ranks[0]"]
)
def test_a_designated_writer_rank_is_not_narrowed_to_rank_zero(test: str) -> None:  # shapes B01, B11
    # nanotron's logger rank is the last pipeline stage: a rank-0 guard nested in `rank ==
    # logger_rank` would leave nothing written wherever that rank is not 0.
    code = f"""
        class Trainer:
            def log_step(self, weights):
                dist.all_reduce(weights)
                if {test}:
                    torch.save(weights, f"weights_{{self.step}}.pt")
    """
    assert "CKP001" not in _codes(code)
    assert "is_main_process" not in (_apply(code) or "")


def test_a_one_shot_write_re_raises_its_failure_a_periodic_one_reports_it() -> None:  # shape B02
    # The last act of a conversion or validation script: before the rewrite a failed write crashed
    # the job; a handler that only reported it would let the job exit 0 without its output.
    one_shot = """
        def main(model, out):
            dist.init_process_group("gloo")
            torch.save(model.state_dict(), out)
    """
    after = _apply(one_shot)
    assert after is not None
    assert "report_save_failure(out, exc)\n            raise\n    checkpoint_barrier(" in after
    periodic = """
        def main(model):
            dist.init_process_group("gloo")
            for epoch in range(3):
                torch.save(model.state_dict(), f"ckpt/epoch_{epoch}.pt")
    """
    after = _apply(periodic)
    assert after is not None and "report_save_failure" in after and "raise" not in after


def test_no_second_barrier_before_the_one_the_code_already_has() -> None:  # shape B04
    code = """
        def main(model, steps):
            dist.init_process_group("gloo")
            for step in range(steps):
                if dist.get_rank() == 0 and step % 10 == 0:
                    torch.save(model.state_dict(), f"model{step}.pt")
            if dist.get_rank() == 0:
                torch.save(model.state_dict(), "final.pt")
            dist.barrier()
    """
    after = _apply(code)
    assert after is not None
    assert after.count("checkpoint_barrier(timeout=120)") == 1  # in the loop only
    assert "checkpoint_barrier(timeout=120)\n    dist.barrier()" not in after


def test_an_attribute_flag_set_from_a_main_process_test_is_a_guard() -> None:  # shape B05
    code = """
        def is_master(args):
            return args.rank == 0

        def main(args, model):
            args.save_logs = args.logs and args.logs.lower() != "none" and is_master(args)
            for epoch in range(args.epochs):
                if args.save_logs:
                    torch.save(model.state_dict(), f"{args.logs}/epoch_{epoch}.pt")
                dist.barrier()
    """
    assert "CKP001" not in _codes(code)
    assert "is_main_process()" not in (_apply(code) or "")
    rebound = code.replace("    for epoch", "    args.save_logs = True\n            for epoch", 1)
    assert "CKP001" in _codes(rebound)


def test_a_modules_fixes_in_an_installable_package_are_unsafe(tmp_path: Path) -> None:  # shape B06
    package = tmp_path / "src" / "mylib"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mylib"\n')
    module = package / "io.py"
    module.write_text(src("def save(model, path):\n    torch.save(model, path)\n", HEADER, entry=False))
    code = module.read_text()
    [atomic] = [f for f in check_source(code, str(module), SAFE) if f.code == "CKP005"]
    assert atomic.unsafe and "installable package `mylib`" in atomic.message
    assert fix_source(code, str(module), SAFE).new_source is None
    # the inline style imports nothing; a project that declares ckptfix has chosen the dependency
    inline = Options(style="inline")
    assert not [f for f in check_source(code, str(module), inline) if f.code == "CKP005" and f.unsafe]
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mylib"\ndependencies = ["ckptfix"]\n')
    packages._declares_ckptfix.cache_clear()
    assert not [f for f in check_source(code, str(module), SAFE) if f.code == "CKP005" and f.unsafe]
    # a namespace folder (`megatron/core/`, no `megatron/__init__.py`) is still the package's
    other = tmp_path / "other"
    namespace = other / "nsproj" / "core"
    namespace.mkdir(parents=True)
    (other / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    (namespace / "__init__.py").write_text("")
    (namespace / "io.py").write_text(code)
    assert [f for f in check_source(code, str(namespace / "io.py"), SAFE) if f.code == "CKP005" and f.unsafe]
    # a folder the project does not install, even with an __init__.py in it
    example = other / "examples" / "doremi"
    example.mkdir(parents=True)
    (other / "examples" / "__init__.py").write_text("")
    (example / "__init__.py").write_text("")
    (example / "trainer.py").write_text(code)
    found = check_source(code, str(example / "trainer.py"), SAFE)
    assert not [f for f in found if f.unsafe and f.code == "CKP005"]
    # a package folder the metadata's explicit list leaves out (litgpt installs `litgpt*` only)
    (other / "setup.py").write_text('from setuptools import setup\nsetup(packages=["other_lib"])\n')
    packages._installs.cache_clear()
    found = check_source(code, str(namespace / "io.py"), SAFE)
    assert not [f for f in found if f.code == "CKP005" and f.unsafe]
    # a script beside the package is no module of it
    script = tmp_path / "train.py"
    script.write_text(code)
    assert not [f for f in check_source(code, str(script), SAFE) if f.code == "CKP005" and f.unsafe]


def test_deepspeeds_device_helper_alone_is_not_distributed() -> None:  # shape B08
    code = """
        from deepspeed.accelerator import get_accelerator

        def train(model, loader, exp_dir):
            model.to(get_accelerator().device_name())
            for step, batch in enumerate(loader, 1):
                torch.save(obj=model.state_dict(), f=str(exp_dir / f"checkpoint.iter_{step}.pt"))
    """
    plain = "from deepspeed.accelerator import get_accelerator\nimport torch\n"
    assert check_source(src(code, plain), "train_bert.py", SAFE) == []


def test_accelerates_sync_gradients_is_the_same_on_every_rank() -> None:  # shapes B09, B10
    # The accelerate idiom: a step counter bumped under `if accelerator.sync_gradients:`; the barrier
    # goes right after the save, once per checkpoint, not once per micro-step or per epoch.
    code = """
        def main(args, accelerator, model, loader, optimizer):
            global_step = 0
            for epoch in range(args.epochs):
                for batch in loader:
                    with accelerator.accumulate(model):
                        accelerator.backward(model(batch).mean())
                        optimizer.step()
                    if accelerator.sync_gradients:
                        global_step += 1
                        if global_step % args.save_steps == 0:
                            if accelerator.is_main_process:
                                torch.save(model.state_dict(), f"{args.output_dir}/ckpt-{global_step}.pt")
                        if global_step >= args.max_train_steps:
                            break
    """
    after = _apply(code, Options(unsafe_fixes=True))
    assert after is not None and "torch.save" not in after
    barrier = " " * 20 + "checkpoint_barrier(timeout=120)\n"
    assert barrier + " " * 16 + "if global_step >= args.max_train_steps:" in after


@pytest.mark.parametrize(
    "setup",
    [
        "accelerator = Accelerator()",
        "deepspeed.init_distributed()",
        "strategy = FSDPStrategy(launcher='pytorch')",
    ],
)
def test_init_sync_follows_what_sets_up_the_process_group(setup: str) -> None:  # shape B13
    # Without init_sync() the first barrier creates its gloo group itself, a collective that cannot
    # complete while rank 0 writes: the first checkpoint would get a fixed deadline, not a stall timeout.
    header = HEADER + "import deepspeed\nfrom accelerate import Accelerator\n"
    header += "from mmengine._strategy import FSDPStrategy\n"
    code = f"""
        def main(model):
            {setup}
            for epoch in range(3):
                if dist.get_rank() == 0:
                    torch.save(model.state_dict(), f"ckpt/epoch_{{epoch}}.pt")
    """
    after = fix_source(src(code, header), "train.py", SAFE).new_source
    assert after is not None and f"    {setup}\n    init_sync()\n" in after


def test_one_init_sync_after_the_first_set_up_of_a_block() -> None:  # shape B13
    code = """
        def main(model):
            deepspeed.init_distributed()
            engine, _, _, _ = deepspeed.initialize(model=model)
            for epoch in range(3):
                if dist.get_rank() == 0:
                    torch.save(model.state_dict(), f"ckpt/epoch_{epoch}.pt")
    """
    after = fix_source(src(code, HEADER + "import deepspeed\n"), "train.py", SAFE).new_source
    assert after is not None and after.count("init_sync()") == 1
    assert "    deepspeed.init_distributed()\n    init_sync()\n" in after
