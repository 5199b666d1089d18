"""CKP006's fix: main-process guards come off collectives; the writes behind them keep a guard.

Call-site guards around helpers that reach a collective are removed (or lose their `rank == 0` clause)
and the helper's writes are guarded inside it; collectives at the head of a guarded block move above
the guard. Where that is not safe the finding stays report-only and says why.
"""

from __future__ import annotations

from ckptfix.api import fix_source
from tests.codemods.helpers import codes, findings, rewrite, src


def test_inline_collective_leaves_the_guard_and_the_other_clause_stays() -> None:
    before = src(
        """
        def train(opt, rank, p):
            for step in range(4):
                opt.step()
                if step % 2 == 0 and rank == 0:
                    # consolidate first
                    opt.consolidate_state_dict(to=0)

                    # then write
                    torch.save(opt.state_dict(), p)
        """
    )
    assert ("CKP006", True) in [(code, fixable) for _, code, fixable in findings(before)]
    after = rewrite(before)
    assert (
        "        if step % 2 == 0:\n"
        "            # consolidate first\n"
        "            opt.consolidate_state_dict(to=0)\n"
        "\n"
        "            # then write\n"
        "            if rank == 0:\n"
        "                try:\n"
        "                    atomic_save(opt.state_dict(), p)\n"
        "                except Exception as exc:\n"
        "                    report_save_failure(p, exc)\n"
        "            checkpoint_barrier(timeout=120)\n"  # `step % 2 == 0` is alike on every rank
    ) in after
    assert codes(after) == []


def test_full_state_dict_gathered_on_every_rank_before_the_guard() -> None:
    before = src(
        """
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        def save(model, p):
            if dist.get_rank() == 0:
                state = get_model_state_dict(model)
                torch.save(state, p)
        """
    )
    after = rewrite(before)
    assert (
        "    state = get_model_state_dict(model)\n"
        "    if dist.get_rank() == 0:\n"
        "        try:\n"
        "            atomic_save(state, p)\n"
        "        except Exception as exc:\n"
        "            report_save_failure(p, exc)\n"
        "            raise\n"  # save runs once: a one-shot write
        "    checkpoint_barrier(timeout=120)\n"
    ) in after


def test_a_helper_called_on_one_line_under_the_guard() -> None:
    before = src(
        """
        def log_and_save(model, metric):
            dist.all_reduce(metric)
            torch.save(model, "c.pt")

        def train(model, metric, rank):
            if rank == 0: log_and_save(model, metric)  # the guide's fix
        """
    )
    after = rewrite(before)
    assert "def train(model, metric, rank):\n    log_and_save(model, metric)  # the guide's fix\n" in after
    assert "    dist.all_reduce(metric)\n    if is_main_process():\n" in after
    assert codes(after) == []


def test_a_collective_save_in_a_guarded_helper_runs_on_every_rank() -> None:
    before = src(
        """
        import torch.distributed.checkpoint as dcp

        def save(state, path):
            dcp.save(state, checkpoint_id=path)

        def train(state, rank):
            for step in range(3):
                if rank == 0:
                    save(state, f"ckpt_{step}")
        """,
    )
    after = rewrite(before)
    assert "        if rank == 0:" not in after
    assert '        save(state, f"ckpt_{step}")\n' in after  # braces survive the template engine
    assert codes(after) == []


def test_the_zero_state_is_built_under_the_guard_it_only_exists_on_rank_zero() -> None:
    before = src(
        """
        def save_checkpoint(model, optimizer, path):
            optimizer.consolidate_state_dict()
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            torch.save(state, path)

        def train(model, optimizer, rank):
            if rank == 0:
                save_checkpoint(model, optimizer, "c.pt")
            dist.barrier()
        """
    )
    after = rewrite(before)
    assert (
        "    optimizer.consolidate_state_dict()\n"
        "    if is_main_process():\n"
        "        try:\n"
        '            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}\n'
        "            atomic_save(state, path)\n"
    ) in after


def test_zero_state_read_again_after_the_write_keeps_the_finding_report_only() -> None:
    before = src(
        """
        def save_checkpoint(optimizer, path):
            optimizer.consolidate_state_dict(to=0)
            state = optimizer.state_dict()
            torch.save(state, path)
            return state

        def train(optimizer, rank):
            if rank == 0:
                save_checkpoint(optimizer, "c.pt")
        """
    )
    # With the guard lifted the write could not be guarded: `check` and `apply` both see it (check
    # applies the plan to the `ast` and runs the rules again, without libcst) and leave the finding.
    assert [f for f in findings(before) if f[1] == "CKP006"] == [(4, "CKP006", False)]
    result = fix_source(before)
    assert result.new_source is not None and "if rank == 0:\n        save_checkpoint" in result.new_source
    [kept] = [f for f in result.findings if f.code == "CKP006"]
    assert not kept.fixable and "a write could not be guarded" in kept.message


def test_guards_that_cannot_be_lifted_say_why() -> None:
    cases = {
        "decorated to run on the main process only": """
            @rank_zero_only
            def save(opt, p):
                opt.consolidate_state_dict(to=0)
            """,
        "has an else branch": """
            def f(rank, t):
                if rank == 0:
                    dist.all_reduce(t)
                else:
                    print("waiting")
            """,
        "is an elif": """
            def f(rank, t, phase):
                if phase:
                    pass
                elif rank == 0:
                    dist.all_reduce(t)
            """,
        "early exit": """
            def f(rank, t):
                if rank != 0:
                    return
                dist.all_reduce(t)
            """,
        "would run on every rank": """
            def f(rank, t):
                if rank == 0:
                    print("reducing")
                    dist.all_reduce(t)
            """,
        "second guard": """
            def f(rank, t, is_master):
                if rank == 0:
                    if is_master:
                        dist.all_reduce(t)
            """,
    }
    from ckptfix.api import check_source

    for reason, body in cases.items():
        before = src(body)
        found = [f for f in check_source(before) if f.code == "CKP006"]
        assert len(found) == 1 and not found[0].fixable, (reason, found)
        assert reason in found[0].message
        assert rewrite(before).count("CKP006") == 0  # nothing moved: the rewrite is a fixed point


def test_a_guard_whose_other_clause_runs_after_it_is_not_reordered() -> None:
    # `rank == 0 and ready(t)`: ready() runs on rank 0 only today; lifting would run it everywhere.
    before = src(
        """
        def f(rank, t):
            if rank == 0 and ready(t):
                dist.all_reduce(t)
        """
    )
    found = [f for f in findings(before) if f[1] == "CKP006"]
    assert found == [(5, "CKP006", False)]
