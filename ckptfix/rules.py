"""Rule metadata the CLI lists (`ckptfix rules`) and explains (`ckptfix explain CODE`).

Codes are stable: never renumbered, only added.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    summary: str
    explanation: str
    before: str
    after: str
    fixable: bool


def _text(block: str) -> str:
    return textwrap.dedent(block).strip("\n") + "\n"


RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (
        Rule(
            code="CKP001",
            name="unguarded-save",
            summary="a checkpoint save that every rank runs",
            explanation=_text(
                """\
                What: torch.save, safetensors save_file/save_model, HF save_pretrained, a configured save
                function, or a helper of this module that reaches one, runs on every rank.
                Why: all ranks write the same file at once; the writes contend and interleave, a slow or
                failing rank desynchronises training, and a crash mid-write corrupts the checkpoint.
                Fix: the innermost write (not the helper call) runs only on the main process, inside
                try/except that reports the failure. The object to save is computed before the guard on
                every rank (state gathering such as FSDP state_dict or consolidate_state_dict is
                collective); statements right after the write that only make sense on success move into
                the try. Where no barrier follows to carry the failure to the other ranks, the handler
                re-raises after reporting. Every fix is validated before it is written (README: "apply
                never makes working code worse").
                Unsafe (written only with --unsafe-fixes): a path that comes from a parameter whose callers
                are not in the file, or from the items of a loop not proved alike on every rank (a per-rank
                work list); save_pretrained (it gathers a sharded model's state: FSDP, ZeRO-3; its
                is_main_process= keyword gates only the config, every rank still writes the weights); the
                global guard for a launcher-dependent one.
                Already guarded: rank comparisons, is_main_process()/is_master/master_process/should_save
                and friends, `and` clauses, early returns, @rank_zero_only, helpers whose callers are all
                guarded, in this file or in any other file of the project (predicates, rank flags and
                decorators defined in another module count too; README: "Facts that cross files").
                Local-rank guards (local_rank in [-1, 0], gpu_id == 0) write once per node:
                reported, not rewritten. One writer other than rank 0 (is_last_rank(), rank == 3, a
                group's rank()) is deliberate: left alone. Per-rank files (the rank in the name, or passed
                by a caller), temp files, files read back by the code that wrote them (caches), and
                io.BytesIO are not findings. Single-process modules are skipped unless
                --assume-distributed: no torch.distributed use, accelerate without an Accelerator,
                Fabric(devices=1), a script that refuses world_size > 1, a JAX program.
                """
            ),
            before=_text(
                """\
                torch.save({'model': model.state_dict()}, path)
                """
            ),
            after=_text(
                """\
                checkpoint_state = {'model': model.state_dict()}
                if is_main_process():
                    try:
                        atomic_save(checkpoint_state, path)
                    except Exception as exc:
                        report_save_failure(path, exc)
                checkpoint_barrier(timeout=120)
                """
            ),
            fixable=True,
        ),
        Rule(
            code="CKP002",
            name="missing-checkpoint-barrier",
            summary="a main-process save with no barrier before training goes on",
            explanation=_text(
                """\
                What: a checkpoint written by the main process is not followed by a barrier every rank
                reaches.
                Why: the other ranks run ahead into the next collective and wait there for the writer; on
                a slow file system they hit the collective timeout and the job dies, or state diverges.
                Fix: one barrier with a real timeout (--barrier-timeout, default 120 s) per checkpoint
                event, placed after the save and outside every branch of the function holding it that
                ranks may disagree on (inside the innermost loop), never inside the main-process guard.
                A branch every rank takes alike (`if step % save_every == 0:` with a loop counter, a
                constant or an `args.` setting) keeps the barrier inside: one barrier per checkpoint, not
                one per step. Several saves in one block share it. When the save is guarded by its
                callers or by an early return, or its helper is called inside a branch
                (`if is_best: self.save_best()`: ranks may disagree), the barrier goes after each call
                site, outside the caller's branches; a save followed by `break` gets it after the loop.
                Not rewritten when no such place exists (an early `return` or `continue`), nor inside a
                function whose callers ckptfix cannot see (nothing in the file calls it, it is passed as a
                value or registered as a hook, it is a method of a framework's class, a public function
                of a packaged library): the barrier is its callers' to place, and the finding says so.
                Across files: a function called under a guard (or passed around) in another file of the
                project never gets a barrier inside; the call sites there get it, as checkpoint events
                of their own (the message names the file and line of the write: "the write is in another
                file, at utils.py:10"). Where its calls in other files are unguarded but not provably
                made by every rank, a barrier inside it is an unsafe fix.
                Which style: with --style runtime (the default) the timeout is a stall timeout. The
                barrier keeps waiting while the main process's atomic_save makes progress, or while the
                main process is alive and busy with something else under its guard (validation, an
                upload) up to the process group's own timeout, as the job waited before the rewrite; it
                fails on every rank, saying how far the write got, when the write stops for the timeout,
                when the main process dies, or at a hard ceiling (CKPTFIX_BARRIER_CEILING, 6 h). With
                --style inline it is a fixed deadline: dist.barrier(timeout=...) fails a healthy write
                that takes longer, so pick runtime for large checkpoints or slow shared storage, and with
                inline set --barrier-timeout above the longest write plus whatever else runs under the
                guard.
                """
            ),
            before=_text(
                """\
                if rank == 0:
                    torch.save(state, path)
                train_next_epoch()
                """
            ),
            after=_text(
                """\
                if rank == 0:
                    torch.save(state, path)
                checkpoint_barrier(timeout=120)
                train_next_epoch()
                """
            ),
            fixable=True,
        ),
        Rule(
            code="CKP003",
            name="numeric-barrier-timeout",
            summary="a barrier given a number as timeout",
            explanation=_text(
                """\
                What: dist.barrier(timeout=120) or monitored_barrier(timeout=120).
                Why: the timeout must be a datetime.timedelta; a number raises TypeError (and before torch
                2.12 barrier has no timeout argument at all). Usually a try/except hides the error, so the
                barrier never runs and ranks are not synchronised.
                Fix: the runtime's checkpoint_barrier(timeout=120), which waits with a real timeout on
                every backend (inline style: timeout=datetime.timedelta(seconds=120)). A barrier that ends
                training (after the training loop, or right before destroy_process_group()) becomes
                final_sync(timeout=...).
                """
            ),
            before=_text(
                """\
                dist.barrier(timeout=120)
                """
            ),
            after=_text(
                """\
                checkpoint_barrier(timeout=120)
                """
            ),
            fixable=True,
        ),
        Rule(
            code="CKP004",
            name="missing-final-sync",
            summary="training ends with no final sync",
            explanation=_text(
                """\
                What: destroy_process_group() (or, with none in the module, the end of the training
                function) is reached with no barrier before it, in a module that writes checkpoints.
                Why: ranks that finish first tear down the process group while the main process may still
                be writing the last checkpoint; the job can hang or exit before the file is complete.
                Fix: final_sync(timeout=180) before it (--final-timeout). In the runtime style init_sync()
                is also inserted right after init_process_group(...) so the runtime's barriers have a
                group every rank created.
                """
            ),
            before=_text(
                """\
                if rank == 0:
                    torch.save(model, 'final.pt')
                dist.destroy_process_group()
                """
            ),
            after=_text(
                """\
                if rank == 0:
                    torch.save(model, 'final.pt')
                final_sync(timeout=180)
                dist.destroy_process_group()
                """
            ),
            fixable=True,
        ),
        Rule(
            code="CKP005",
            name="non-atomic-save",
            summary="a non-atomic write to the final checkpoint path",
            explanation=_text(
                """\
                What: torch.save(obj, path) straight to the final path, with no temp file and rename in
                the function.
                Why: a crash, a kill or a full disk leaves a truncated file (torch.save raises
                RuntimeError, not OSError, on a full disk); saving in place over the last good checkpoint
                destroys it.
                Fix: atomic_save(obj, path, ...) (same arguments as torch.save): temp file in the same
                directory, fsync, os.replace. Inline style writes that sequence out.
                """
            ),
            before=_text(
                """\
                torch.save(obj=state, f=path)
                """
            ),
            after=_text(
                """\
                atomic_save(state, path)
                """
            ),
            fixable=True,
        ),
        Rule(
            code="CKP006",
            name="collective-under-main-guard",
            summary="a collective that only the main process runs",
            explanation=_text(
                """\
                What: a collective reached only under a main-process guard: directly, through helpers of
                the module (any depth), or in a function decorated @rank_zero_only.
                Why: every rank must make a collective; the main process waits forever for ranks that
                never come (measured: ZeroRedundancyOptimizer.consolidate_state_dict and dcp.save under
                `if rank == 0` hang), or its lone collective is paired with the others' next one (measured
                on gloo: an all_reduce of a metric, or FSDP2's full state dict gather, under the guard
                aborts with a size mismatch against the next step's gradient all-reduce; with equal
                sizes the sums would silently be wrong).
                Collectives: torch.distributed collectives and group constructors,
                torch.distributed.checkpoint save/load, the state_dict helpers, FSDP full/optim state dict,
                summon_full_params and FSDP1's state_dict_type (state_dict() inside it gathers every
                shard). Heuristics (matched by method name on objects of unknown type, unless the module
                defines that name itself): consolidate_state_dict, full_tensor, redistribute,
                summon_full_params, state_dict_type, optim_state_dict, wait_for_everyone, save_state,
                load_state, get_state_dict, save_16bit_model, save_checkpoint, load_checkpoint,
                gather_for_metrics, all_reduce, all_gather(_object), broadcast_object_list,
                reduce_scatter; and, on a receiver named for what it is, accelerator.save_model /
                gather / reduce / barrier, trainer.save_model, fabric.save / barrier, strategy.barrier.
                Fix: the guard moves inward to the write. A guarded call of a helper of the module that
                reaches a collective loses its guard (or the guard's `rank == 0` clause, keeping
                `step % N == 0`), and the writes inside the helper get CKP001's guard; collectives at the
                head of a guarded block move above the guard, the rest stays under it. State that exists
                on rank 0 only (a consolidated ZeroRedundancyOptimizer's state_dict()) is built under
                the guard. Report only, with the reason, when the guard is a decorator, an early exit,
                has an else branch or an elif, when code before the collective would then run on every
                rank (a deletion, a write, a print, a call on an object built on rank 0 only), and for
                rank-divergent `break`s and stop flags. A lift of a collective recognised by its method
                name only (save_state, save_checkpoint, ...) is an unsafe fix: under plain DDP it may be no
                collective at all.
                Across files: a guarded call of a function of another file of the project that reaches a
                collective is reported with where the collective is ("it runs
                torch.distributed.all_gather_object (utils.py:6)"), not rewritten; a function of the
                project that reaches none is no collective, whatever its name.
                Not findings: a guarded collective balanced by the other ranks' own ("rank 0 goes first":
                `if rank != 0: barrier()` ... `if rank == 0: barrier()`), a method of an object built on
                rank 0 only (`saver.save_checkpoint()` with `saver = None` elsewhere), a stop flag rank 0
                sets and then broadcasts, a function passed as an argument under a guard.
                """
            ),
            before=_text(
                """\
                if step % 100 == 0 and rank == 0:
                    optimizer.consolidate_state_dict(to=0)
                    torch.save(optimizer.state_dict(), p)
                """
            ),
            after=_text(
                """\
                if step % 100 == 0:
                    optimizer.consolidate_state_dict(to=0)
                    if rank == 0:
                        atomic_save(optimizer.state_dict(), p)
                checkpoint_barrier(timeout=120)
                """
            ),
            fixable=True,
        ),
        Rule(
            code="CKP007",
            name="swallowed-barrier-error",
            summary="a try/except that swallows a barrier's error",
            explanation=_text(
                """\
                What: a barrier inside try/except Exception (or bare except, RuntimeError, ...) whose
                handler does not re-raise.
                Why: after a barrier times out the process group is broken; logging and going on makes the
                next collective fail or hang far from the cause. With a numeric timeout (CKP003) the
                barrier never even ran.
                Fix: the try/except is removed and the barrier becomes the runtime's checkpoint_barrier,
                which raises a clear error on every rank (inline style: dist.barrier with a timedelta
                timeout). Rewritten only when the try holds nothing but the barrier and log calls.
                """
            ),
            before=_text(
                """\
                try:
                    dist.barrier(timeout=120)
                except Exception as e:
                    print(f'barrier timeout: {e}')
                """
            ),
            after=_text(
                """\
                checkpoint_barrier(timeout=120)
                """
            ),
            fixable=True,
        ),
        Rule(
            code="CKP008",
            name="unhandled-save-failure",
            summary="a main-process write whose failure stops the writer alone",
            explanation=_text(
                """\
                What: a checkpoint write that is already guarded on the main process (so CKP001 does not
                fire) and sits in no try/except of its function.
                Why: when the write fails (full disk, quota, a network file system error) the main
                process raises and stops or leaves the loop, while the other ranks wait for it in the next
                barrier or collective until their timeout; the job loses its progress.
                Fix: the write (and the statements after it that only make sense on success) goes into
                try/except that reports the failure: report_save_failure logs it, and the next
                checkpoint_barrier tells every rank, which then go on or all raise together
                (CKPTFIX_ON_SAVE_ERROR). The inline style logs it with logging.exception. Only where a
                barrier follows (already, or CKP002's): without one a try/except could only re-raise, so
                the finding stays report-only. Writes through save_pretrained(..., is_main_process=...,
                save_function=accelerator.save) are left alone.
                """
            ),
            before=_text(
                """\
                if master_process:
                    torch.save(checkpoint, path)
                """
            ),
            after=_text(
                """\
                if master_process:
                    try:
                        atomic_save(checkpoint, path)
                    except Exception as exc:
                        report_save_failure(path, exc)
                checkpoint_barrier(timeout=120)
                """
            ),
            fixable=True,
        ),
    )
}
