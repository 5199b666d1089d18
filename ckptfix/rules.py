"""Rule metadata the CLI lists (`ckptfix rules`) and explains (`ckptfix explain CODE`).

Codes are stable: never renumbered, only added.
"""

from __future__ import annotations

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


RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (
        Rule(
            code="CKP001",
            name="unguarded-save",
            summary="a checkpoint save that every rank runs",
            explanation=(
                "What: torch.save, safetensors save_file/save_model, HF save_pretrained, a configured save\n"
                "function, or a helper of this module that reaches one, runs on every rank.\n"
                "Why: all ranks write the same file at once; the writes contend and interleave, a slow or\n"
                "failing rank desynchronises training, and a crash mid-write corrupts the checkpoint.\n"
                "Fix: the innermost write (not the helper call) runs only on the main process, inside\n"
                "try/except that reports the failure. The object to save is computed before the guard on every\n"
                "rank (state gathering such as FSDP state_dict or consolidate_state_dict is collective);\n"
                "statements right after the write that only make sense on success move into the try.\n"
                "save_pretrained gets is_main_process= instead, since it gathers state on every rank.\n"
                "Already guarded: rank comparisons, is_main_process()/is_master/master_process/should_save and\n"
                "friends, `and` clauses, early returns, @rank_zero_only, helpers whose callers are all guarded.\n"
                "Local-rank guards (local_rank in [-1, 0], gpu_id == 0) write once per node: reported, not\n"
                "rewritten. Per-rank files (the rank in the name), temp files and io.BytesIO are not findings.\n"
                "Single-process modules are skipped unless --assume-distributed."
            ),
            before="torch.save({'model': model.state_dict()}, path)\n",
            after=(
                "checkpoint_state = {'model': model.state_dict()}\n"
                "if is_main_process():\n"
                "    try:\n"
                "        atomic_save(checkpoint_state, path)\n"
                "    except Exception as exc:\n"
                "        report_save_failure(path, exc)\n"
                "checkpoint_barrier(timeout=120)\n"
            ),
            fixable=True,
        ),
        Rule(
            code="CKP002",
            name="missing-checkpoint-barrier",
            summary="a main-process save with no barrier before training goes on",
            explanation=(
                "What: a checkpoint written by the main process is not followed by a barrier every rank reaches.\n"
                "Why: the other ranks run ahead into the next collective and wait there for the writer; on a slow\n"
                "file system they hit the collective timeout and the job dies, or state diverges.\n"
                "Fix: one barrier with a real timeout (--barrier-timeout, default 120 s) per checkpoint event,\n"
                "placed after the save and outside every branch of the function holding it (inside the innermost\n"
                "loop), never inside the main-process guard. Several saves in one block share it. When the save\n"
                "is guarded by its callers or by an early return, the barrier goes after each call site.\n"
                "Not rewritten when no such place exists (an early `continue`, unknown callers)."
            ),
            before="if rank == 0:\n    torch.save(state, path)\ntrain_next_epoch()\n",
            after="if rank == 0:\n    torch.save(state, path)\ncheckpoint_barrier(timeout=120)\ntrain_next_epoch()\n",
            fixable=True,
        ),
        Rule(
            code="CKP003",
            name="numeric-barrier-timeout",
            summary="a barrier given a number as timeout",
            explanation=(
                "What: dist.barrier(timeout=120) or monitored_barrier(timeout=120).\n"
                "Why: the timeout must be a datetime.timedelta; a number raises TypeError (and before torch 2.12\n"
                "barrier has no timeout argument at all). Usually a try/except hides the error, so the barrier\n"
                "never runs and ranks are not synchronised.\n"
                "Fix: the runtime's checkpoint_barrier(timeout=120), which waits with a real timeout on every\n"
                "backend (inline style: timeout=datetime.timedelta(seconds=120))."
            ),
            before="dist.barrier(timeout=120)\n",
            after="checkpoint_barrier(timeout=120)\n",
            fixable=True,
        ),
        Rule(
            code="CKP004",
            name="missing-final-sync",
            summary="training ends with no final sync",
            explanation=(
                "What: destroy_process_group() (or, with none in the module, the end of the training function)\n"
                "is reached with no barrier before it, in a module that writes checkpoints.\n"
                "Why: ranks that finish first tear down the process group while the main process may still be\n"
                "writing the last checkpoint; the job can hang or exit before the file is complete.\n"
                "Fix: final_sync(timeout=180) before it (--final-timeout). In the runtime style init_sync() is\n"
                "also inserted right after init_process_group(...) so the runtime's barriers have a group every\n"
                "rank created."
            ),
            before="train()\ndist.destroy_process_group()\n",
            after="train()\nfinal_sync(timeout=180)\ndist.destroy_process_group()\n",
            fixable=True,
        ),
        Rule(
            code="CKP005",
            name="non-atomic-save",
            summary="a non-atomic write to the final checkpoint path",
            explanation=(
                "What: torch.save(obj, path) straight to the final path, with no temp file and rename in the\n"
                "function.\n"
                "Why: a crash, a kill or a full disk leaves a truncated file (torch.save raises RuntimeError, not\n"
                "OSError, on a full disk); saving in place over the last good checkpoint destroys it.\n"
                "Fix: atomic_save(obj, path, ...) (same arguments as torch.save): temp file in the same\n"
                "directory, fsync, os.replace. Inline style writes that sequence out."
            ),
            before="torch.save(obj=state, f=path)\n",
            after="atomic_save(state, path)\n",
            fixable=True,
        ),
        Rule(
            code="CKP006",
            name="collective-under-main-guard",
            summary="a collective that only the main process runs",
            explanation=(
                "What: a collective reached only under a main-process guard: directly, through helpers of the\n"
                "module (any depth), or in a function decorated @rank_zero_only.\n"
                "Why: every rank must make a collective; the main process waits forever for ranks that never\n"
                "come (measured: ZeroRedundancyOptimizer.consolidate_state_dict under `if rank == 0` hangs).\n"
                "Collectives: torch.distributed collectives and group constructors, torch.distributed.checkpoint\n"
                "save/load, the state_dict helpers, FSDP full/optim state dict and summon_full_params.\n"
                "Heuristics (matched by method name on objects of unknown type, unless the module defines that\n"
                "name itself): consolidate_state_dict, full_tensor, redistribute, summon_full_params,\n"
                "optim_state_dict, wait_for_everyone, save_state, load_state, get_state_dict,\n"
                "save_16bit_model, save_checkpoint, load_checkpoint, gather_for_metrics, all_reduce,\n"
                "all_gather(_object), broadcast_object_list, reduce_scatter.\n"
                "Fix: move the guard inward to the write; gather state on every rank. Reported, not rewritten."
            ),
            before="if rank == 0:\n    optimizer.consolidate_state_dict(to=0)\n    torch.save(optimizer.state_dict(), p)\n",
            after=(
                "optimizer.consolidate_state_dict(to=0)\n"
                "if rank == 0:\n"
                "    torch.save(optimizer.state_dict(), p)\n"
            ),
            fixable=False,
        ),
        Rule(
            code="CKP007",
            name="swallowed-barrier-error",
            summary="a try/except that swallows a barrier's error",
            explanation=(
                "What: a barrier inside try/except Exception (or bare except, RuntimeError, ...) whose handler\n"
                "does not re-raise.\n"
                "Why: after a barrier times out the process group is broken; logging and going on makes the next\n"
                "collective fail or hang far from the cause. With a numeric timeout (CKP003) the barrier never\n"
                "even ran.\n"
                "Fix: the try/except is removed and the barrier becomes the runtime's checkpoint_barrier, which\n"
                "raises a clear error on every rank (inline style: dist.barrier with a timedelta timeout).\n"
                "Rewritten only when the try holds nothing but the barrier and log calls."
            ),
            before=(
                "try:\n"
                "    dist.barrier(timeout=120)\n"
                "except Exception as e:\n"
                "    print(f'barrier timeout: {e}')\n"
            ),
            after="checkpoint_barrier(timeout=120)\n",
            fixable=True,
        ),
    )
}
