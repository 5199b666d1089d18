"""CKP001: guard the innermost write; never double-guard; keep every other byte."""

from __future__ import annotations

import pytest

from ckptfix.api import check_source, fix_source
from ckptfix.options import Options
from tests.codemods.helpers import HEADER, codes, findings, guarded_calls, rewrite, src

ONLY_001 = {"select": frozenset({"CKP001"})}


def test_plain_save_is_guarded_exactly() -> None:
    before = src(
        """
        def save(model, path):
            # write it
            torch.save(model, path)  # trailing
            return path
        """,
        entry=False,
    )
    assert rewrite(before, **ONLY_001) == (
        "import torch\n"
        "import torch.distributed as dist\n"
        "from ckptfix.runtime import is_main_process, report_save_failure\n"
        "def save(model, path):\n"
        "    # write it\n"
        "    if is_main_process():\n"
        "        try:\n"
        "            torch.save(model, path)  # trailing\n"
        "        except Exception as exc:\n"
        "            report_save_failure(path, exc)\n"
        "            raise\n"  # no barrier is placed (CKP002 is off) to carry the failure: re-raised
        "    return path\n"
    )


def test_full_rewrite_of_seed_style_method() -> None:
    before = src(
        """
        class Trainer:
            def save_training_checkpoint(self, val_loss, is_best):
                checkpoint = {"model": self.model.state_dict(), "val_loss": val_loss}
                checkpoint_path = f"{self.dir}/step_{self.current_step}.pt"
                torch.save(checkpoint, checkpoint_path)
                self.last_checkpoint_step = self.current_step
                print(f"Checkpoint saved successfully: {checkpoint_path}")
                self.model.train()

            def fit(self, steps):  # periodic: a later checkpoint can make up for a failed one
                for _ in range(steps):
                    self.save_training_checkpoint(0.0, False)
        """
    )
    after = rewrite(before)
    assert (
        "        if is_main_process():\n"
        "            try:\n"
        "                atomic_save(checkpoint, checkpoint_path)\n"
        "                self.last_checkpoint_step = self.current_step\n"
        '                print(f"Checkpoint saved successfully: {checkpoint_path}")\n'
        "            except Exception as exc:\n"
        "                report_save_failure(checkpoint_path, exc)\n"
        "        checkpoint_barrier(timeout=120)\n"
        "        self.model.train()\n"
    ) in after


@pytest.mark.parametrize(
    "guard",
    [
        "if rank == 0:",
        "if dist.get_rank() == 0:",
        "if 0 == dist.get_rank():",
        "if not dist.is_initialized() or dist.get_rank() == 0:",
        "if master_process:",
        "if is_main_process():",
        "if utils.is_main_process():",
        "if self.is_master:",
        "if accelerator.is_main_process:",
        "if trainer.is_global_zero:",
        "if trainer.is_world_process_zero():",
        "if args.should_save:",
        "if xm.is_master_ordinal():",
        'if int(os.environ["RANK"]) == 0:',
        "if step % every == 0 and master_process:",
        "if not rank:",
        "if self.global_rank == 0:",
        "if rank in (0,):",
        "if dp_rank == 0:",
    ],
)
def test_recognised_guards_are_not_double_guarded(guard: str) -> None:
    before = src(
        f"def save(model, path, rank, step, every):\n    {guard}\n        torch.save(model, path)\n", ""
    )
    before = "import os\nimport torch\nimport torch.distributed as dist\n" + before
    assert "CKP001" not in codes(before)
    assert rewrite(before, **ONLY_001) == before


@pytest.mark.parametrize(
    "code",
    [
        "def save(model, path, rank):\n    if rank != 0:\n        return\n    torch.save(model, path)\n",
        "def save(model, p):\n    if not is_main_process():\n        return\n    torch.save(model, p)\n",
        "@rank_zero_only\ndef save(model, path):\n    torch.save(model, path)\n",
        "@accelerator.on_main_process\ndef save(model, path):\n    torch.save(model, path)\n",
        "def save(model, path, rank):\n    torch.save(model, path) if rank == 0 else None\n",
        "def save(model, path, rank):\n    rank == 0 and torch.save(model, path)\n",
        "def save(m, p, rank):\n    if rank > 0:\n        pass\n    else:\n        torch.save(m, p)\n",
    ],
)
def test_other_guard_forms(code: str) -> None:
    assert "CKP001" not in codes(src(code))


def test_helper_whose_callers_are_all_guarded() -> None:
    before = src(
        """
        def write(model, path):
            torch.save(model.state_dict(), path)

        def train(model, rank):
            for step in range(10):
                if rank == 0:
                    write(model, "a.pt")
            if dist.get_rank() == 0:
                write(model, "b.pt")
        """
    )
    assert "CKP001" not in codes(before)


def test_helper_with_one_unguarded_caller_is_guarded_inside() -> None:
    before = src(
        """
        def write(model, path):
            torch.save(model, path)

        def train(model, rank):
            if rank == 0:
                write(model, "a.pt")
            write(model, "b.pt")
        """
    )
    assert [f[1] for f in findings(before) if f[1] == "CKP001"] == ["CKP001"]
    after = rewrite(before, **ONLY_001)
    assert "torch.save" in guarded_calls(after)


def test_method_saving_through_helpers_at_depth() -> None:
    before = src(
        """
        class T:
            def _dump(self, obj, path):
                torch.save(obj, path)

            def save_training_checkpoint(self, val_loss, is_best):
                self._dump({"loss": val_loss}, "ckpt.pt")

            def train(self):
                for epoch in range(3):
                    self.save_training_checkpoint(1.0, False)
        """
    )
    found = findings(before)
    assert (5, "CKP001", True) in found  # reported at the innermost write, not the helper call
    after = rewrite(before)
    assert "atomic_save" in guarded_calls(after)
    assert "self.save_training_checkpoint" not in guarded_calls(after)


def test_save_through_aliases() -> None:
    before = (
        "import torch as th\n"
        "import torch.distributed as dist\n"
        "from torch import save\n"
        "from torch.serialization import save as ser_save\n"
        "save_fn = th.save\n"
        "def f(m, p):\n"
        "    th.save(m, p)\n"
        "    save(m, p)\n"
        "    ser_save(m, p)\n"
        "    save_fn(m, p)\n"
        "    torch_save_lookalike(m, p)\n"
    )
    assert [f[0] for f in findings(before) if f[1] == "CKP001"] == [7, 8, 9, 10]


def test_not_torch_save_when_name_is_something_else() -> None:
    before = "import mylib as torch\nimport torch.distributed as dist\ndef f(m, p):\n    torch.save(m, p)\n"
    assert "CKP001" not in codes(before)


def test_save_inside_with_and_nested_ifs() -> None:
    before = src(
        """
        def f(model, path, step, best):
            with torch.no_grad():
                if step % 10 == 0:
                    if best:
                        torch.save(model, path)
            model.train()
        """
    )
    after = rewrite(before)
    assert "atomic_save" in guarded_calls(after)
    lines = after.splitlines()
    # The barrier leaves every branch: it is at the function body's indentation, before model.train().
    assert lines[lines.index("    checkpoint_barrier(timeout=120)") + 1] == "    model.train()"


def test_argument_building_state_dict_is_hoisted_out_of_the_guard() -> None:
    before = src(
        """
        def f(model, optimizer, path):
            torch.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, path)
        """
    )
    after = rewrite(before)
    assert '    checkpoint_state = {"model": model.state_dict(), "optim": optimizer.state_dict()}\n' in after
    assert "model.state_dict" not in guarded_calls(after)
    assert "atomic_save(checkpoint_state, path)" in after


def test_hoisted_name_does_not_clash() -> None:
    before = src("def f(model, path, checkpoint_state):\n    torch.save(model.state_dict(), path)\n")
    after = rewrite(before)
    assert "checkpoint_state_2 = model.state_dict()" in after


def test_file_already_importing_the_runtime() -> None:
    before = src(
        """
        from ckptfix.runtime import is_main_process as main_only, report_save_failure
        def f(m, p):
            torch.save(m, p)
        """
    )
    after = rewrite(before, **ONLY_001)
    assert "if main_only():" in after
    assert after.count("ckptfix.runtime") == 1


def test_file_defining_its_own_is_main_process() -> None:
    before = src(
        """
        def is_main_process():
            return dist.get_rank() == 0

        def f(m, p):
            torch.save(m, p)
        """
    )
    after = rewrite(before, **ONLY_001)
    # Longer than 88 characters on one line: wrapped as black and ruff would wrap it.
    assert (
        "from ckptfix.runtime import (\n"
        "    is_main_process as ckptfix_is_main_process,\n"
        "    report_save_failure,\n"
        ")\n"
    ) in after
    assert "if ckptfix_is_main_process():" in after
    assert "def is_main_process():" in after


def test_imports_after_code_and_in_try() -> None:
    before = (
        '"""doc"""\n'
        "import sys\n"
        "sys.path.insert(0, '.')\n"
        "import torch\n"
        "try:\n"
        "    import torch.distributed as dist\n"
        "except ImportError:\n"
        "    dist = None\n"
        "\n"
        "def f(m, p):\n"
        "    torch.save(m, p)\n"
    )
    after = rewrite(before, **ONLY_001)
    assert after.startswith(
        '"""doc"""\nimport sys\nsys.path.insert(0, \'.\')\nimport torch\n'
        "try:\n    import torch.distributed as dist\nexcept ImportError:\n    dist = None\n"
        "from ckptfix.runtime import is_main_process, report_save_failure\n"
    )


def test_crlf_tabs_comments_and_quotes_survive() -> None:
    before = (
        "import torch\r\nimport torch.distributed as dist\r\n\r\n# a comment\r\n"
        "def f(m, p):\r\n\tx = {'a': 1}  # keep\r\n\r\n\ttorch.save(m, p)\r\n\treturn x\r\n"
    )
    after = rewrite(before, **ONLY_001)
    assert "\n" not in after.replace("\r\n", "")
    assert "\t\t\ttorch.save(m, p)\r\n" in after
    assert after.endswith("\r\n\treturn x\r\n")
    assert "\tx = {'a': 1}  # keep\r\n\r\n" in after


def test_non_ascii_before_call_on_same_line() -> None:
    before = src(
        'def f(m):\n    torch.save(m, "é.pt"); torch.save(m, "ü.pt")\n    x = "ü"; torch.save(m, x)\n'
    )
    found = [f for f in check_source(before) if f.code == "CKP001"]
    assert [(f.line, f.col) for f in found] == [(4, 5), (4, 28), (5, 14)]  # characters, not bytes
    rewrite(before)  # statements sharing a line are reported, not rewritten; the result still compiles


def test_utf8_bom_is_kept() -> None:
    before = "\ufeff" + src("def f(m):\n    torch.save(m, 'c.pt')\n")
    result = fix_source(before, options=Options(select=frozenset({"CKP001"})))
    assert result.new_source is not None and result.new_source.startswith("\ufeffimport torch\n")


def test_hf_save_pretrained_is_guarded_as_an_unsafe_fix() -> None:
    # transformers and diffusers gate only the config and the cleanup with `is_main_process=`: every rank
    # still writes the weights, so the write is guarded; that assumes the model is not sharded (FSDP and
    # ZeRO-3 gather inside save_pretrained), hence an unsafe fix.
    before = src(
        """
        def f(model, tokenizer, out):
            model.save_pretrained(
                out,
                safe_serialization=True,
            )
            tokenizer.save_pretrained(out)
            model.save_pretrained(out, is_main_process=accelerator.is_main_process)
            model.save_pretrained(
                out, is_main_process=accelerator.is_main_process, save_function=accelerator.save
            )
        """
    )
    found = [f for f in check_source(before, options=Options(**ONLY_001)) if f.code == "CKP001"]
    held_back = [(4, False, True), (8, False, True), (9, False, True)]
    assert [(f.line, f.fixable, f.unsafe) for f in found] == held_back
    assert "save_pretrained gathers a sharded model's state" in found[0].message
    assert rewrite(before, **ONLY_001, unsafe_fixes=False) == before
    after = rewrite(before, **ONLY_001)
    assert "is_main_process=is_main_process()" not in after
    assert {"model.save_pretrained", "tokenizer.save_pretrained"} <= guarded_calls(after)
    assert after.count("if is_main_process():") == 3  # not the one whose save_function is accelerate's


def test_local_rank_guard_is_reported_not_rewritten() -> None:
    before = src("def f(m, p, args):\n    if args.local_rank in [-1, 0]:\n        torch.save(m, p)\n")
    assert (5, "CKP001", False) in findings(before)
    assert rewrite(before, **ONLY_001) == before


def test_local_rank_guard_becomes_global_when_opted_in() -> None:
    before = src(
        "def f(m, p, args, step):\n"
        "    if step % 10 == 0 and args.local_rank in [-1, 0]:\n"
        "        torch.save(m, p)\n"
    )
    assert (5, "CKP001", True) in findings(before, rewrite_local_rank_guards=True)
    after = rewrite(before, rewrite_local_rank_guards=True)
    assert "    if step % 10 == 0 and is_main_process():\n        try:\n            atomic_save(m, p)\n" in (
        after
    )
    assert "    checkpoint_barrier(timeout=120)\n" in after
    # One import line, although the guard's symbol and the write's come from two passes.
    assert after.count("from ckptfix.runtime import") == 1
    inline = rewrite(before, rewrite_local_rank_guards=True, style="inline")
    assert "    if step % 10 == 0 and (not dist.is_initialized() or dist.get_rank() == 0):\n" in inline


def test_local_rank_early_exit_stays_report_only_when_opted_in() -> None:
    before = src("def f(m, p, local_rank):\n    if local_rank != 0:\n        return\n    torch.save(m, p)\n")
    found = [f for f in findings(before, rewrite_local_rank_guards=True) if f[1] == "CKP001"]
    assert found == [(6, "CKP001", False)]


@pytest.mark.parametrize(
    "code",
    [
        'def f(m, rank):\n    torch.save(m, f"optim_rank{rank}.pt")\n',
        'def f(m):\n    path = f"shard_{dist.get_rank()}.pt"\n    torch.save(m, path)\n',
        "def f(m):\n    buf = io.BytesIO()\n    torch.save(m, buf)\n",
        "def f(m):\n    torch.save(m, io.BytesIO())\n",
        "def f(m):\n    with tempfile.NamedTemporaryFile() as tmp:\n        torch.save(m, tmp.name)\n",
    ],
)
def test_per_rank_memory_and_temp_writes_are_not_findings(code: str) -> None:
    assert (
        codes(src(code, "import io\nimport tempfile\nimport torch\nimport torch.distributed as dist\n")) == []
    )


def test_single_process_module_has_no_findings_unless_assumed() -> None:
    before = "import torch\ndef f(m, p):\n    torch.save(m, p)\n"
    assert codes(before) == []
    assert "CKP001" in codes(before, assume_distributed=True)


@pytest.mark.parametrize(
    "header",
    [
        "from torch.nn.parallel import DistributedDataParallel as DDP\n",
        "import accelerate\nacc = accelerate.Accelerator()\n",
        "from accelerate import Accelerator\n",
        "import lightning as L\nfabric = L.Fabric(devices=2)\n",
        "import deepspeed\n",
        "import os\nRANK = int(os.environ['RANK'])\n",
        "import torch\nx = torch.distributed.get_world_size()\n",
        # DCP's save and load are collectives when a process group exists
        "import torch.distributed.checkpoint as dcp\ndcp.save({}, checkpoint_id='c')\n",
        "from torch.distributed.checkpoint.state_dict import get_model_state_dict\n",
    ],
)
def test_distributed_markers(header: str) -> None:
    assert "CKP001" in codes(header + "import torch\ndef f(m, p):\n    torch.save(m, p)\n")


@pytest.mark.parametrize(
    "header",
    [
        # a weight converter borrows accelerate's meta-device loading: one process
        "from accelerate import init_empty_weights\n",
        "import accelerate\n",
        # `lightning_utilities` is not `lightning`
        "from lightning_utilities.core.imports import RequirementCache\n",
        "import lightning as L\nfabric = L.Fabric(devices=1, accelerator='cpu')\n",
        # a JAX script's argparse boilerplate reads LOCAL_RANK; no torch, no torch process group
        "import os\nimport jax\nLOCAL_RANK = int(os.environ.get('LOCAL_RANK', -1))\n",
        # the script stops when launched on several processes
        "import torch.distributed as dist\nassert dist.get_world_size() == 1\n",
        # offline converters read and write DCP checkpoints in one process (review shape 51)
        "import torch.distributed.checkpoint as dcp\n"
        "from torch.distributed.checkpoint.format_utils import dcp_to_torch_save\n",
        "from torch.distributed.checkpoint import FileSystemReader\n"
        "from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys\n"
        "r = FileSystemReader('ckpt')\n",
        "import torch\nx = torch.distributed.checkpoint.format_utils.dcp_to_torch_save('a', 'b')\n",
        # XLA SPMD: one process per host, no torch.distributed process group (shape 50)
        "import torch_xla.runtime as xr\nimport torch_xla.core.xla_model as xm\nxr.use_spmd()\n",
    ],
)
def test_not_distributed(header: str) -> None:
    body = "import torch\ndef f(model, p):\n    torch.save(model, p)\n    model.save_pretrained(p)\n"
    assert codes(header + body) == []


def test_extra_save_functions_and_predicates() -> None:
    before = src(
        "def f(m, p):\n"
        "    mylib.write_ckpt(m, p)\n"
        "    if mylib.is_chief_worker():\n"
        "        torch.save(m, p)\n"
    )
    options = {
        "extra_save_functions": ("mylib.write_ckpt",),
        "extra_main_predicates": ("mylib.is_chief_worker",),
    }
    assert [f[:2] for f in findings(before, **options) if f[1] == "CKP001"] == [(4, "CKP001")]


def test_file_handle_write_guards_the_with() -> None:
    before = src('def f(m, p):\n    with open(p, "wb") as fh:\n        torch.save(m, fh)\n')
    after = rewrite(before, **ONLY_001)
    assert '    if is_main_process():\n        try:\n            with open(p, "wb") as fh:\n' in after
    assert "report_save_failure(p, exc)" in after


def test_fix_source_reports_original_findings_with_fixed_flags() -> None:
    before = src("def f(m, p):\n    torch.save(m, p); x = 1\n    torch.save(m, p)\n")
    result = fix_source(before, options=Options(select=frozenset({"CKP001"}), unsafe_fixes=True))
    assert [(f.line, f.fixable) for f in result.findings] == [(4, False), (5, True)]


def test_one_line_bodies_become_blocks() -> None:
    before = (
        "import os; import torch\n"
        "import torch.distributed as dist\n"
        "def f(m, p, epoch):\n"
        "    if epoch % 5 == 0: torch.save(m, p)  # every 5\n"
        "    else: print('skip')\n"
        "    for q in (p,): torch.save(m, q)\n"
        "f(None, 'c.pt', 0)\n"
    )
    after = rewrite(before)
    assert after == (
        "import os; import torch\n"
        "import torch.distributed as dist\n"
        "from ckptfix.runtime import (\n"
        "    atomic_save,\n"
        "    checkpoint_barrier,\n"
        "    is_main_process,\n"
        "    report_save_failure,\n"
        ")\n"
        "def f(m, p, epoch):\n"
        "    if epoch % 5 == 0:\n"
        "        if is_main_process():\n"
        "            try:\n"
        "                atomic_save(m, p)  # every 5\n"
        "            except Exception as exc:\n"
        "                report_save_failure(p, exc)\n"
        "                raise\n"  # f runs once: a one-shot write that no later checkpoint makes up for
        "    else: print('skip')\n"
        "    checkpoint_barrier(timeout=120)\n"
        "    for q in (p,):\n"
        "        if is_main_process():\n"
        "            try:\n"
        "                atomic_save(m, q)\n"
        "            except Exception as exc:\n"
        "                report_save_failure(q, exc)\n"
        "        checkpoint_barrier(timeout=120)\n"
        "f(None, 'c.pt', 0)\n"
    )


def test_import_anchor_on_a_line_with_several_imports() -> None:
    before = "import torch.distributed as dist; import torch\ndef f(m, p):\n    torch.save(m, p)\n"
    after = rewrite(before, select=frozenset({"CKP001"}))
    assert after.startswith("import torch.distributed as dist; import torch\nfrom ckptfix.runtime import")


def test_two_space_indent_is_kept_in_inserted_code() -> None:
    before = src("def f(m, p):\n  for i in range(2):\n    torch.save(m, p)\n")
    after = rewrite(before)
    assert (
        "    if is_main_process():\n"
        "      try:\n"
        "        atomic_save(m, p)\n"
        "      except Exception as exc:\n"
        "        report_save_failure(p, exc)\n"
        "    checkpoint_barrier(timeout=120)\n"
    ) in after


def test_vacuous_launcher_specific_guard_is_not_trusted() -> None:
    """The ImageNet example's guard lets every rank write under torchrun (multiprocessing_distributed
    is False there): it is not proof of one writer, so the write gets a real guard inside it."""
    before = src(
        """
        def main_worker(args, state, ngpus_per_node):
            if not args.multiprocessing_distributed or (
                args.multiprocessing_distributed and args.rank % ngpus_per_node == 0
            ):
                torch.save(state, "checkpoint.pth.tar")
        """
    )
    assert (7, "CKP001", True) in findings(before)
    assert "atomic_save" in guarded_calls(rewrite(before))


# --- CKP008 ---------------------------------------------------------------------------------------------
def test_an_already_guarded_write_gains_only_the_try_except() -> None:
    before = src(
        """
        def train(model, master_process, step):
            if step % 10 == 0 and master_process:
                torch.save(model.state_dict(), "c.pt")
                print("checkpoint saved")
        """
    )
    assert (5, "CKP008", True) in findings(before)
    with_barrier = frozenset({"CKP008", "CKP002"})
    after = rewrite(before, select=with_barrier)
    assert (
        "    if step % 10 == 0 and master_process:\n"
        "        try:\n"
        '            torch.save(model.state_dict(), "c.pt")\n'
        '            print("checkpoint saved")\n'
        "        except Exception as exc:\n"
        '            report_save_failure("c.pt", exc)\n'
    ) in after
    assert "is_main_process" not in after  # never a second guard
    inline = rewrite(before, select=with_barrier, style="inline")
    assert "        except Exception:\n            logging.getLogger(__name__).exception(" in inline


def test_a_guarded_write_no_barrier_follows_is_reported_not_wrapped() -> None:
    # Reporting the failure needs a barrier after it to tell the other ranks; without one (CKP002 off,
    # or no place for it) a try/except of ours could only re-raise: noise, so the finding stays.
    before = src("def train(model, is_master):\n    if is_master:\n        torch.save(model, 'c.pt')\n")
    [found] = [f for f in check_source(before, options=Options(select=frozenset({"CKP008"})))]
    assert not found.fixable and "would be swallowed: no barrier follows it" in found.message
    assert rewrite(before, select=frozenset({"CKP008"})) == before


@pytest.mark.parametrize(
    "code",
    [
        # the user already handles the failure
        'def f(m, rank):\n    if rank == 0:\n        try:\n            torch.save(m, "c.pt")\n'
        "        except OSError:\n            raise\n",
        # save_pretrained decides on the main process itself
        "def f(model, d, acc):\n    model.save_pretrained(d, is_main_process=acc.is_main_process)\n",
        # one writer per model-parallel shard: deliberate, never touched
        'def f(m, dp_rank):\n    if dp_rank == 0:\n        torch.save(m, "c.pt")\n',
    ],
)
def test_handled_delegated_or_sharded_writes_are_not_ckp008(code: str) -> None:
    assert "CKP008" not in codes(src(code))


def test_copy_of_the_written_file_moves_under_the_guard_with_the_write() -> None:
    """imagenet's save_checkpoint: the copy of the file only rank 0 now writes would fail elsewhere."""
    before = src(
        """
        def save_checkpoint(state, is_best, filename="checkpoint.pth.tar"):
            torch.save(state, filename)
            if is_best:
                shutil.copyfile(filename, "model_best.pth.tar")
            shutil.copyfile("other.txt", "copy.txt")
        """,
        HEADER + "import shutil\n",
    )
    after = rewrite(before, **ONLY_001)
    assert "        try:\n            torch.save(state, filename)\n            if is_best:\n" in after
    assert "shutil.copyfile" in guarded_calls(after)
    assert '\n    shutil.copyfile("other.txt", "copy.txt")\n' in after  # not the written file: every rank


def test_another_modules_save_on_master_needs_only_the_barrier() -> None:
    """DETR/MAE/DINO's `utils.save_on_master(state, path)` writes on the main process by itself."""
    before = src(
        """
        import utils

        def train(model, epochs):
            dist.init_process_group("gloo")
            for epoch in range(epochs):
                model.step()
                utils.save_on_master({"model": model.state_dict()}, "checkpoint.pth")
            dist.destroy_process_group()
        """
    )
    assert findings(before) == [(9, "CKP002", True), (10, "CKP004", True)]
    after = rewrite(before)
    assert '        utils.save_on_master({"model": model.state_dict()}, "checkpoint.pth")\n' in after
    assert "        checkpoint_barrier(timeout=120)\n    final_sync(timeout=180)\n" in after


def test_a_save_on_master_the_module_defines_is_analysed_as_written() -> None:
    before = src(
        """
        def save_on_master(*args, **kwargs):
            torch.save(*args, **kwargs)
        """
    )
    assert "CKP001" in codes(before)


def test_a_path_passed_in_args_is_reported_as_unknown() -> None:
    """MAE's save_on_master(*args, **kwargs): the log must not say "failed to save checkpoint None"."""
    before = src(
        "def save_on_master(*args, **kwargs):\n"
        "    if is_main_process():\n"
        "        torch.save(*args, **kwargs)\n"
    )
    assert 'report_save_failure("<unknown path>", exc)' in rewrite(before)
