"""CKP002 placement, CKP003 numeric timeouts, CKP007 swallowed barrier errors."""

from __future__ import annotations

import ast

import pytest

from ckptfix.api import fix_source
from ckptfix.options import Options
from tests.codemods.helpers import codes, findings, guarded_calls, rewrite, src


def _barrier_lines(source: str) -> list[str]:
    return [line for line in source.splitlines() if "barrier(" in line]


def test_guarded_save_without_barrier_gets_one_after_the_guard() -> None:
    before = src(
        """
        def train(model, rank, scores):
            for step in range(100):
                loss = model(step)
                if scores[step] > 0.5:
                    if rank == 0:
                        torch.save(model.state_dict(), "ckpt.pt")
                loss.backward()
        """
    )
    assert findings(before, select=frozenset({"CKP002"})) == [(8, "CKP002", True)]
    after = rewrite(before, select=frozenset({"CKP002"}))
    lines = after.splitlines()
    at = lines.index("        checkpoint_barrier(timeout=120)")
    assert lines[at - 1].strip() == 'torch.save(model.state_dict(), "ckpt.pt")'
    assert lines[at + 1] == "        loss.backward()"  # inside the loop, outside both ifs


def test_barrier_goes_inside_a_branch_every_rank_takes_alike() -> None:
    """`if step % 10 == 0:` is the same on every rank: one barrier per checkpoint, not one per step."""
    before = src(
        """
        def train(model, rank):
            for step in range(100):
                loss = model(step)
                if step % 10 == 0:
                    if rank == 0:
                        torch.save(model.state_dict(), "ckpt.pt")
                loss.backward()
        """
    )
    after = rewrite(before, select=frozenset({"CKP002"}))
    lines = after.splitlines()
    at = lines.index("            checkpoint_barrier(timeout=120)")
    assert lines[at - 1].strip() == 'torch.save(model.state_dict(), "ckpt.pt")'
    assert lines[at - 2] == "            if rank == 0:"
    assert lines[at + 1] == "        loss.backward()"
    assert len(_barrier_lines(after)) == 1


def test_existing_barrier_after_a_uniform_branch_is_kept() -> None:
    before = src(
        """
        def train(model, rank):
            for step in range(100):
                if (step + 1) % 10 == 0:
                    if rank == 0:
                        torch.save(model.state_dict(), "ckpt.pt")
                dist.barrier()
        """
    )
    assert findings(before, select=frozenset({"CKP002"})) == []


def test_several_saves_in_one_block_share_one_barrier() -> None:
    before = src(
        """
        def save(model, is_best):
            torch.save(model, "last.pt")
            if is_best:
                torch.save(model, "best.pt")
            print("done")
        """
    )
    after = rewrite(before)
    assert _barrier_lines(after) == ["    checkpoint_barrier(timeout=120)"]
    assert after.index("checkpoint_barrier(") > after.index('"best.pt"')


def test_barrier_never_inside_the_guard() -> None:
    before = src(
        """
        def save(model, path, rank):
            if rank == 0:
                torch.save(model, path)
        """
    )
    after = rewrite(before)
    assert "checkpoint_barrier" not in guarded_calls(after, ("rank == 0", "is_main_process"))
    assert "    checkpoint_barrier(timeout=120)" in after.splitlines()


def test_early_return_guard_puts_barrier_after_each_call_site() -> None:
    before = src(
        """
        def save(model, path, rank):
            if rank != 0:
                return
            torch.save(model, path)

        def train(model, rank):
            for epoch in range(3):
                save(model, "a.pt", rank)
                model.step()
        """
    )
    after = rewrite(before, select=frozenset({"CKP002"}))
    lines = after.splitlines()
    at = lines.index("        checkpoint_barrier(timeout=120)")
    assert lines[at - 1] == '        save(model, "a.pt", rank)'
    assert lines[at + 1] == "        model.step()"


def test_guarded_call_site_barrier_goes_after_the_guard() -> None:
    before = src(
        """
        class T:
            def save_training_checkpoint(self, val_loss, is_best):
                torch.save({"loss": val_loss}, "ckpt.pt")

            def train(self):
                for epoch in range(3):
                    if is_main_process():
                        self.save_training_checkpoint(1.0, False)
                    self.step()
        """
    )
    after = rewrite(before, select=frozenset({"CKP002"}))
    lines = after.splitlines()
    at = lines.index("            checkpoint_barrier(timeout=120)")
    assert lines[at - 1].strip() == "self.save_training_checkpoint(1.0, False)"
    assert lines[at + 1] == "            self.step()"


def test_existing_barrier_after_save_or_after_call_site_is_enough() -> None:
    direct = src("def f(m, rank):\n    if rank == 0:\n        torch.save(m, 'p')\n    dist.barrier()\n")
    via_caller = src(
        """
        def write(m):
            torch.save(m, "p")

        def train(m):
            write(m)
            accelerator.wait_for_everyone()
        """
    )
    via_helper = src(
        """
        def sync():
            dist.barrier()

        def f(m, rank):
            if rank == 0:
                torch.save(m, "p")
            sync()
        """
    )
    assert "CKP002" not in codes(direct)
    assert "CKP002" not in codes(via_caller)
    assert "CKP002" not in codes(via_helper)


def test_barrier_under_a_guard_does_not_count() -> None:
    before = src("def f(m, rank):\n    if rank == 0:\n        torch.save(m, 'p')\n        dist.barrier()\n")
    assert "CKP002" in codes(before)


def test_continue_guard_is_reported_not_rewritten() -> None:
    before = src(
        """
        def f(m, rank):
            for step in range(3):
                if rank != 0:
                    continue
                torch.save(m, "p")
        """
    )
    assert (7, "CKP002", False) in findings(before)


def test_inline_style_barrier() -> None:
    before = src("def f(m, rank):\n    if rank == 0:\n        torch.save(m, 'p')\n    m.step()\n")
    after = rewrite(before, style="inline", select=frozenset({"CKP002"}))
    assert after == src(
        "import datetime\n"
        "def f(m, rank):\n"
        "    if rank == 0:\n"
        "        torch.save(m, 'p')\n"
        "    if dist.is_initialized():\n"
        "        dist.barrier(timeout=datetime.timedelta(seconds=120))\n"
        "    m.step()\n"
    )


def test_barrier_timeout_option() -> None:
    before = src("def f(m, rank):\n    if rank == 0:\n        torch.save(m, 'p')\n")
    assert "checkpoint_barrier(timeout=300)" in rewrite(before, barrier_timeout=300.0)
    assert "checkpoint_barrier(timeout=2.5)" in rewrite(before, barrier_timeout=2.5)


# --- CKP003 ---------------------------------------------------------------------------------------------


def test_numeric_timeouts_are_found() -> None:
    before = src(
        """
        TIMEOUT = 120
        def f():
            dist.barrier(timeout=120)
            dist.monitored_barrier(timeout=TIMEOUT * 2)
            dist.barrier(timeout=datetime.timedelta(seconds=120))
            dist.barrier()
            other.barrier(timeout=5)
        """
    )
    assert [f[:2] for f in findings(before)] == [(5, "CKP003"), (6, "CKP003")]


def test_numeric_timeout_runtime_and_inline() -> None:
    before = src(
        "def f():\n"
        "    dist.barrier(timeout=120)\n"
        "    dist.monitored_barrier(timeout=30, wait_all_ranks=True)\n"
    )
    runtime = rewrite(before, select=frozenset({"CKP003"}))
    assert "    checkpoint_barrier(timeout=120)\n    checkpoint_barrier(timeout=30)\n" in runtime
    inline = rewrite(before, style="inline", select=frozenset({"CKP003"}))
    assert "    dist.barrier(timeout=datetime.timedelta(seconds=120))\n" in inline
    assert (
        "    dist.monitored_barrier(timeout=datetime.timedelta(seconds=30), wait_all_ranks=True)\n" in inline
    )
    assert inline.count("import datetime") == 1


def test_barrier_with_group_is_reported_not_rewritten_in_runtime_style() -> None:
    before = src("def f(g):\n    dist.barrier(group=g, timeout=60)\n")
    assert findings(before) == [(4, "CKP003", False)]


# --- CKP007 ---------------------------------------------------------------------------------------------

GUIDE = src(
    """
    class T:
        def finish(self):
            # Synchronize all processes after checkpointing
            if self.config.world_size > 1:
                try:
                    dist.barrier(timeout=120)  # 2 minute timeout
                    print(f"Rank {self.config.rank}: sync done")
                except Exception as e:
                    print(f"Checkpoint barrier timeout on rank {self.config.rank}: {e}")
            self.go_on()
    """
)


def test_guide_barrier_gets_ckp003_and_ckp007() -> None:
    assert [f[:2] for f in findings(GUIDE)] == [(7, "CKP007"), (8, "CKP003")]


def test_swallowed_barrier_is_unwrapped_runtime() -> None:
    after = rewrite(GUIDE)
    assert (
        "        # Synchronize all processes after checkpointing\n"
        "        if self.config.world_size > 1:\n"
        "            checkpoint_barrier(timeout=120)  # 2 minute timeout\n"
        '            print(f"Rank {self.config.rank}: sync done")\n'
        "        self.go_on()\n"
    ) in after
    assert "except" not in after


def test_swallowed_barrier_is_unwrapped_inline() -> None:
    after = rewrite(GUIDE, style="inline")
    assert "            dist.barrier(timeout=datetime.timedelta(seconds=120))  # 2 minute timeout\n" in after
    assert "except" not in after


def test_reraising_handler_is_fine_and_busy_try_is_report_only() -> None:
    reraise = src(
        "def f():\n    try:\n        dist.barrier()\n    except Exception:\n        log()\n        raise\n"
    )
    assert "CKP007" not in codes(reraise)
    busy = src(
        "def f(m):\n    try:\n        m.step()\n        dist.barrier()\n    except Exception:\n        pass\n"
    )
    assert findings(busy) == [(4, "CKP007", False)]
    assert rewrite(busy) == busy


def test_unwrapped_output_parses_to_the_same_body() -> None:
    after = rewrite(GUIDE, select=frozenset({"CKP007"}))
    [body] = [stmt for stmt in ast.parse(after).body if isinstance(stmt, ast.ClassDef)]
    assert "try" not in ast.unparse(body)


def test_save_in_a_lambda_gets_no_barrier_at_definition() -> None:
    before = src("save_cb = lambda m: torch.save(m, 'l.pt')\n")
    assert (3, "CKP002", False) in findings(before)
    assert "checkpoint_barrier" not in rewrite(before)


def test_helper_called_in_a_branch_gets_the_barrier_after_the_callers_branch() -> None:
    before = src(
        """
        class T:
            def save_best(self, model):
                torch.save(model, "best.pt")

            def train(self, model):
                for epoch in range(3):
                    val_loss = self.validate()
                    if val_loss < self.best:
                        self.save_best(model)
                    model.step()
        """
    )
    after = rewrite(before, select=frozenset({"CKP002"}))
    lines = after.splitlines()
    at = lines.index("            checkpoint_barrier(timeout=120)")
    assert lines[at - 1] == "                self.save_best(model)"
    assert lines[at + 1] == "            model.step()"
    assert after.count("checkpoint_barrier(") == 1


def test_unrelated_method_calls_of_the_same_name_are_not_call_sites() -> None:
    before = src(
        """
        class Trainer:
            def save(self, model):
                torch.save(model, "ckpt.pt")

            def train(self, model, img):
                for epoch in range(3):
                    self.save(model)
                    if epoch == 0:
                        img.save("first.png")
        """
    )
    after = rewrite(before, select=frozenset({"CKP002"}))
    assert after.count("checkpoint_barrier(") == 1
    assert '        torch.save(model, "ckpt.pt")\n        checkpoint_barrier(timeout=120)\n' in after


def test_saves_sharing_a_barrier_are_all_reported_fixed() -> None:
    before = src(
        """
        def save(m, best):
            torch.save(m, "a.pt")
            if best:
                torch.save(m, "b.pt")
        """
    )
    result = fix_source(before, options=Options(select=frozenset({"CKP002"})))
    assert [(f.line, f.fixable) for f in result.findings] == [(4, True), (6, True)]


def test_barrier_ending_training_becomes_final_sync() -> None:
    before = src(
        """
        def train(model):
            for epoch in range(3):
                model.step()
                try:
                    dist.barrier(timeout=120)
                except Exception as e:
                    print(e)
            try:
                dist.barrier(timeout=180)
            except Exception as e:
                print(e)

        def main():
            dist.barrier()
            dist.barrier(timeout=30)
            dist.destroy_process_group()
        """
    )
    after = rewrite(before, select=frozenset({"CKP003", "CKP007"}))
    assert "        checkpoint_barrier(timeout=120)\n    final_sync(timeout=180)\n" in after
    assert "    dist.barrier()\n    final_sync(timeout=30)\n    dist.destroy_process_group()\n" in after


def test_loop_inside_the_guard_gets_its_barrier_after_the_guard() -> None:
    """`if rank == 0: for ...: save`: a barrier in the loop would be one only rank 0 reaches."""
    before = src(
        """
        def train(model, rank):
            if rank == 0:
                for step in range(10):
                    if step % 2 == 0:
                        torch.save(model.state_dict(), "ckpt.pt")
            model.step()
        """
    )
    after = rewrite(before, select=frozenset({"CKP002"}))
    lines = after.splitlines()
    at = lines.index("    checkpoint_barrier(timeout=120)")
    assert lines[at + 1] == "    model.step()"
    assert len(_barrier_lines(after)) == 1
    assert codes(after, select=frozenset({"CKP002"})) == []


@pytest.mark.parametrize(
    ("test", "barrier"),
    [
        # nanoGPT: the barrier keeps the step clause, so it runs on checkpoint steps only
        ("iter_num % eval_interval == 0 and master_process", "if iter_num % eval_interval == 0:"),
        ("master_process and (iter_num + 1) % 100 == 0", "if (iter_num + 1) % 100 == 0:"),
        # a clause ranks may disagree on: the barrier runs every step, after the `if`
        ("loss < best and master_process", None),
        # a setting the guarded code could change (the save is a call): not tested again after it
        ("iter_num % args.eval_interval == 0 and master_process", None),
    ],
)
def test_barrier_after_a_guard_keeps_its_rank_independent_clause(test: str, barrier: str | None) -> None:
    before = src(
        f"""
        def train(model, master_process, args, best):
            eval_interval = args.eval_interval
            for iter_num in range(1000):
                loss = model(iter_num)
                if {test}:
                    torch.save(model.state_dict(), "ckpt.pt")
                loss.backward()
        """
    )
    after = rewrite(before, select=frozenset({"CKP002"}))
    lines = after.splitlines()
    at = lines.index("        loss.backward()")
    if barrier is None:
        assert lines[at - 1] == "        checkpoint_barrier(timeout=120)"
    else:
        assert lines[at - 2 : at] == [f"        {barrier}", "            checkpoint_barrier(timeout=120)"]
    assert codes(after, select=frozenset({"CKP002"})) == []


def test_a_clause_the_guarded_code_rebinds_is_not_kept() -> None:
    """`step` changes inside the `if`: testing it again after would not mean the same."""
    before = src(
        """
        def train(model, master_process):
            step = 0
            for i in range(1000):
                step += 1
                if step % 100 == 0 and master_process:
                    torch.save(model.state_dict(), "ckpt.pt")
                    step = 0
                model(i)
        """
    )
    after = rewrite(before, select=frozenset({"CKP002"}))
    assert "        checkpoint_barrier(timeout=120)\n        model(i)" in after


def test_save_then_break_gets_its_barrier_after_the_loop() -> None:
    before = src(
        """
        def train(model, rank, max_steps):
            step = 0
            while True:
                step += 1
                if step > max_steps:
                    if rank == 0:
                        torch.save(model.state_dict(), "final.pt")
                    break
                model.step()
            print("done")
        """
    )
    assert findings(before, select=frozenset({"CKP002"})) == [(9, "CKP002", True)]
    after = rewrite(before, select=frozenset({"CKP002"}))
    assert '        model.step()\n    checkpoint_barrier(timeout=120)\n    print("done")' in after


def test_save_then_return_is_not_rewritten() -> None:
    before = src(
        """
        def train(model, rank, max_steps):
            for step in range(max_steps):
                if step == max_steps - 1:
                    if rank == 0:
                        torch.save(model.state_dict(), "final.pt")
                    return
                model.step()
        """
    )
    assert findings(before, select=frozenset({"CKP002"})) == [(7, "CKP002", False)]


def test_imagenet_shape_gets_one_barrier_per_epoch() -> None:
    """main_worker runs on every process (spawned, or called in the other branch of a setting); the
    helper is called under a guard that is vacuous under torchrun: the barrier follows that `if`."""
    before = src(
        """
        import torch.multiprocessing as mp

        def main(parser):
            args = parser.parse_args()
            if args.multiprocessing_distributed:
                mp.spawn(main_worker, nprocs=2, args=(args,))
            else:
                main_worker(0, args)

        def main_worker(gpu, args):
            dist.init_process_group("gloo")
            for epoch in range(args.epochs):
                if not args.multiprocessing_distributed or args.rank % args.ngpus == 0:
                    save_checkpoint({"epoch": epoch})

        def save_checkpoint(state, filename="checkpoint.pth.tar"):
            torch.save(state, filename)
        """
    )
    assert (19, "CKP002", True) in findings(before)
    after = rewrite(before)
    assert '            save_checkpoint({"epoch": epoch})\n        checkpoint_barrier(timeout=120)\n' in after
