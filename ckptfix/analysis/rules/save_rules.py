"""CKP001 (guard the innermost write) and CKP005 (write atomically); CKP002 comes from placement."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

from ckptfix.analysis.guards import Guard, Kind, is_job_wide_test
from ckptfix.analysis.names import dotted, last_name
from ckptfix.analysis.plan import CallEdit, Edit, GuardTest, InlineAtomic, WrapGuard
from ckptfix.analysis.rules.context import LOG_CALLS, and_clauses
from ckptfix.analysis.rules.destinations import Destinations
from ckptfix.analysis.rules.placement import BarrierPlacement
from ckptfix.analysis.saves import Save, argument
from ckptfix.analysis.tree import walk_local

_SUCCESS_TEXT = re.compile(r"saved|success|✅|complete|written|wrote|done", re.IGNORECASE)


_SUCCESS_TARGET = re.compile(r"last_|saved|checkpoint|ckpt", re.IGNORECASE)
# Operations on the file just written (`shutil.copyfile(filename, "model_best.pth")`): they belong to
# the write, on the rank that writes.
_FILE_OPERATIONS = frozenset(
    {"shutil.copyfile", "shutil.copy", "shutil.copy2", "shutil.move", "os.link", "os.symlink", "os.chmod"}
)


class SaveRules(BarrierPlacement, Destinations):
    """Every checkpoint save: is it guarded, atomic, followed by a barrier?"""

    def _check_save(self, save: Save) -> None:
        call = save.call
        shown = dotted(call.func) or save.target
        if save.is_delegated:
            self._check_barrier_after(save, shown)  # guarded, atomic or not: the helper's business
            return
        if save.is_hf and self._hf_main_only(call):
            guard: Guard | None = Guard(Kind.GLOBAL, call)
        else:
            guard = self.graph.guard(call)
        if guard is not None and guard.kind == Kind.SHARD:
            return  # one writer per model-parallel shard: deliberate
        if guard is not None and guard.kind == Kind.LOCAL:
            edits = self._global_guard_edits(guard) if self.options.rewrite_local_rank_guards else []
            self._issue(
                "CKP001",
                call,
                f"`{shown}(...)` is guarded by a local-rank test ({_where(guard)}):"
                " one writer per node on shared storage; use the global rank"
                + (
                    ""
                    if edits or not self.options.rewrite_local_rank_guards
                    else " (not rewritten automatically)"
                ),
                edits,
            )
            return
        source = self._path_source(save)
        if guard is None and source.per_rank is not None:
            return  # a caller passes a per-rank path (line `source.per_rank`): one file per rank
        # Whether a barrier will carry a failed write to the other ranks, and a later checkpoint can
        # make up for it, decides whether the handler re-raises.
        followed = self._check_barrier_after(save, shown)
        carried = followed and self._recoverable(save)
        if guard is None:
            edits = self._guard_edits(save, reraise=not carried)
            launcher = self._launcher_guard(call)
            self._issue(
                "CKP001",
                call,
                f"`{shown}(...)` runs on every rank: all ranks write the same checkpoint"
                + (f" ({launcher})" if launcher else "")
                + ("" if edits else " (not rewritten automatically: guard the write by hand)"),
                edits,
                unsafe="; ".join(
                    reason
                    for reason in (
                        "save_pretrained gathers a sharded model's state on every rank (FSDP, DeepSpeed "
                        "ZeRO-3): guarding it assumes the model is not sharded"
                        if save.is_hf
                        else None,
                        source.unseen,
                        "the launcher decides what the code's own guard means: one writer in all assumes "
                        "the checkpoint directory is shared by the nodes"
                        if launcher
                        else None,
                    )
                    if reason
                )
                or None,
            )
        elif not save.is_hf and not self._in_try(call):
            # Written where a barrier follows to carry the reported failure (re-raised after a one-shot
            # write, which no later checkpoint makes up for); with no barrier after it, a try/except
            # could only re-raise, and the validator refuses one that would swallow the failure.
            edits = self._guard_edits(save, guarded=True, reraise=followed and not carried)
            self._issue(
                "CKP008",
                call,
                f"`{shown}(...)` runs on the main process with no try/except: a failed write (full disk, "
                "quota, network file system) stops the writer alone while the other ranks wait for it"
                + (
                    f" (main process through its callers in another file: {guard.where})"
                    if guard.where
                    else ""
                )
                + ("" if edits else " (not rewritten automatically: report the failure by hand)"),
                edits,
            )
        writes_a_path = save.handle_with is None and not source.handle
        if save.is_torch_save and writes_a_path and not self._atomic_already(call):
            self._issue(
                "CKP005",
                call,
                f"`{shown}(...)` writes the final path in place: a crash or full disk leaves a truncated "
                "checkpoint; write a temp file and rename it",
                self._atomic_edits(save),
            )

    def _launcher_guard(self, call: ast.Call) -> str | None:
        """What a launcher-dependent guard around the write (or around its helper's call) means under
        each launcher: pytorch/examples' `if not args.multiprocessing_distributed or (... args.rank %
        ngpus_per_node == 0):` is one writer per node under mp.spawn with the setting, and no guard at
        all under torchrun (the setting is off: every rank writes)."""
        sites: list[ast.AST] = [call]
        function = self.tree.function(call)
        if function is not None:
            sites += [s for s in self.graph.sites[id(function)] if isinstance(s, ast.Call)]
        for site in sites:
            for owner in self.tree.ancestors(site):
                if isinstance(owner, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                    break
                if not (isinstance(owner, ast.If) and isinstance(owner.test, ast.BoolOp)):
                    continue
                if not isinstance(owner.test.op, ast.Or):
                    continue
                setting = next(
                    (
                        v.operand
                        for v in owner.test.values
                        if isinstance(v, ast.UnaryOp)
                        and isinstance(v.op, ast.Not)
                        and isinstance(v.operand, ast.Attribute | ast.Name)
                        and is_job_wide_test(v.operand)
                    ),
                    None,
                )
                if setting is not None:
                    name = self.tree.text(setting)
                    return (
                        f"the guard at line {owner.lineno} depends on the launcher: with `{name}` set "
                        f"(mp.spawn) it keeps one writer per node, without it (torchrun) every rank writes"
                    )
        return None

    def _hf_main_only(self, call: ast.Call) -> bool:
        """`save_pretrained(..., is_main_process=..., save_function=accelerator.save)`: the weights go
        through accelerate's save, which writes on the main process only. transformers and diffusers
        themselves gate only the config and the cleanup of old shards with `is_main_process`: without
        such a save function every rank still writes the weights."""
        keywords = {kw.arg: kw.value for kw in call.keywords if kw.arg is not None}
        saver = keywords.get("save_function")
        return (
            "is_main_process" in keywords
            and saver is not None
            and "accelerator" in (dotted(saver) or "").lower()
        )

    def _in_try(self, call: ast.Call) -> bool:
        """The write sits in the body of a try/except of its own function (the user handles it)."""
        child: ast.AST = call
        for ancestor in self.tree.ancestors(call):
            if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                return False
            if isinstance(ancestor, ast.Try | ast.TryStar) and ancestor.handlers and child in ancestor.body:
                return True
            child = ancestor
        return False

    def _guard_edits(self, save: Save, guarded: bool = False, reraise: bool = False) -> list[Edit]:
        """CKP001: guard the write and report its failure (and re-raise it where no barrier follows to
        carry it); `guarded` (CKP008): the write is already guarded, it only gains the try/except."""
        call = save.call
        test, symbols = self._main_test()
        if guarded:
            test, symbols = "", frozenset()
        stmt: ast.stmt = save.handle_with or self.tree.statement(call)
        if save.handle_with is None and not (isinstance(stmt, ast.Expr) and stmt.value is call):
            return []
        if not self.tree.alone_on_line(stmt):
            return []
        obj = argument(call, save.obj)
        main_only = self._main_only_state(call)
        # The object may gather state collectively (FSDP state_dict): it keeps running on every rank,
        # unless it reads state that exists on the main process only (then it may not gather).
        hoist = (
            not guarded
            and save.handle_with is None
            and obj is not None
            and any(isinstance(n, ast.Call) for n in ast.walk(obj))
            and not main_only(obj)
        )
        if self._collective_outside(stmt, obj if hoist else None):
            return []
        preceders = 0 if guarded else self._preceders(stmt, main_only)
        if preceders is None:
            return []
        dest = argument(call, save.dest)
        followers = self._success_followers(stmt, self.tree.text(dest) if dest is not None else None)
        if not guarded and self._main_only_read_outside(stmt, preceders, followers, main_only):
            return []
        scope = self.tree.function(call) or self.tree.module
        if self.runtime:
            symbols |= {"report_save_failure"}
            handler = "{report_save_failure}(__path__, {exc})"
        else:
            symbols |= {"logging"}
            handler = (
                '{logging}.getLogger(__name__).exception("rank 0: failed to save checkpoint %s", __path__)'
            )
        return [
            WrapGuard(
                key=self.key(stmt),
                followers=followers,
                dest=save.dest
                if argument(call, save.dest) is not None and save.handle_with is None
                else None,
                obj=save.obj if hoist else None,
                hoist_name=self._fresh_local(scope, "checkpoint_state") if hoist else None,
                preceders=preceders,
                exc_name=self.names.fresh("exc") if self.runtime else None,
                test=test or None,
                handler=handler,
                symbols=symbols,
                reraise=reraise,
            )
        ]

    def _global_guard_edits(self, guard: Guard) -> list[Edit]:
        """`if step % 2 == 0 and local_rank == 0:` -> `if step % 2 == 0 and is_main_process():`.
        Only an `if` whose local-rank test is a clause of its own (not an early exit, a decorator or
        an `or`) is rewritten."""
        node = guard.node
        if not isinstance(node, ast.If) or guard.exit is not None:
            return []
        clauses = and_clauses(node.test)
        local = [c for c in clauses if self.guards.classify(c) == Kind.LOCAL]
        if not local or any(self.guards.classify(c) == Kind.GLOBAL for c in clauses):
            return []
        main, symbols = self._main_test()
        if " or " in main:
            main = f"({main})"
        parts = []
        for clause in clauses:
            if clause in local:
                if main not in parts:
                    parts.append(main)
                continue
            parts.append(self._clause_text(clause))
        return [GuardTest(self.key(node), " and ".join(parts), symbols)]

    def _main_only_state(self, call: ast.Call) -> Callable[[ast.AST], bool]:
        """A test for code that reads state only the main process has: `opt.state_dict()` after
        `opt.consolidate_state_dict()` (to rank 0, the default) in the same function. On any other rank
        ZeroRedundancyOptimizer.state_dict() raises, so that code must move under the guard."""
        scope = self.tree.function(call) or self.tree.module
        consolidated = {
            receiver
            for node in walk_local(scope)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "consolidate_state_dict"
            and _to_rank_zero(node)
            and (receiver := dotted(node.func.value)) is not None
        }

        def reads(node: ast.AST) -> bool:
            return bool(consolidated) and any(
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr == "state_dict"
                and dotted(n.func.value) in consolidated
                for n in ast.walk(node)
            )

        return reads

    def _main_only_read_outside(
        self, stmt: ast.stmt, preceders: int, followers: int, main_only: Callable[[ast.AST], bool]
    ) -> bool:
        """Main-process-only state is read in this function outside what the new guard will cover
        and outside any guard: guarding this write would leave that read failing on the other ranks."""
        block, index = self.tree.block_of(stmt)
        covered = {id(s) for s in block[index - preceders : index + followers + 1]}
        scope = self.tree.function(stmt) or self.tree.module
        for top in walk_local(scope):
            if not isinstance(top, ast.stmt) or id(top) in covered or not main_only(top):
                continue
            reads = [n for n in walk_local(top) if isinstance(n, ast.Call) and main_only(n)]
            if any(
                not any(id(s) in covered for s in self.tree.enclosing_statements(n))
                and self.guards.local_guard(self.tree, n) is None
                for n in reads
            ):
                return True
        return False

    def _preceders(self, stmt: ast.stmt, main_only: Callable[[ast.AST], bool]) -> int | None:
        """How many statements just before `stmt` must move under its guard because they read
        main-process-only state (and only feed the write); None when such a statement cannot move
        (it is not a plain assignment right before the write, or it makes a collective)."""
        block, index = self.tree.block_of(stmt)
        needed = [i for i, prev in enumerate(block[:index]) if main_only(prev)]
        if not needed:
            return 0
        moved = block[needed[0] : index]
        for prev in moved:
            if not (
                isinstance(prev, ast.Assign)
                and all(isinstance(t, ast.Name) for t in prev.targets)
                and self.tree.alone_on_line(prev)
                and not self._contains_collective(prev)
            ):
                return None
        assigned = {
            t.id
            for prev in moved
            if isinstance(prev, ast.Assign)
            for t in prev.targets
            if isinstance(t, ast.Name)
        }
        scope = self.tree.function(stmt) or self.tree.module
        end = (stmt.end_lineno or stmt.lineno, stmt.end_col_offset or 0)
        if any(
            isinstance(n, ast.Name) and n.id in assigned and (n.lineno, n.col_offset) > end
            for n in walk_local(scope)
        ):
            return None  # read again after the write, on every rank
        return len(moved)

    def _collective_outside(self, node: ast.AST, skip: ast.AST | None) -> bool:
        """A collective in `node` other than inside `skip` (the hoisted object argument)."""
        stack = [node]
        while stack:
            current = stack.pop()
            if current is skip:
                continue
            if isinstance(current, ast.Call) and self._collective(current):
                return True
            stack.extend(ast.iter_child_nodes(current))
        return False

    def _success_followers(self, stmt: ast.stmt, dest: str | None) -> int:
        """How many statements after the write belong to it and move under the guard with it: success
        messages and flags, the rename of a hand-written atomic write, and file operations on the
        written path (`if is_best: shutil.copyfile(filename, "best.pt")`), which would fail on the
        ranks that no longer write it."""
        block, index = self.tree.block_of(stmt)
        count = 0
        for follower in block[index + 1 :]:
            if not self.tree.alone_on_line(follower) or not self._success_only(follower, dest):
                break
            count += 1
        return count

    def _success_only(self, stmt: ast.stmt, dest: str | None) -> bool:
        if self._contains_collective(stmt):
            return False
        if isinstance(stmt, ast.If) and not any(isinstance(n, ast.Call) for n in ast.walk(stmt.test)):
            return all(self._success_only(s, dest) for s in (*stmt.body, *stmt.orelse))
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            if self._is_rename(stmt.value) or self._uses_written_file(stmt.value, dest):
                return True  # the rename of a hand-written atomic write, a copy of the written file
            if last_name(stmt.value.func) not in LOG_CALLS:
                return False
            texts = [
                n.value
                for n in ast.walk(stmt.value)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
            ]
            return any(_SUCCESS_TEXT.search(text) for text in texts)
        if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
            if stmt.value is None or any(isinstance(n, ast.Call) for n in ast.walk(stmt.value)):
                return False
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            return any(_SUCCESS_TARGET.search(self.tree.text(t)) for t in targets)
        return False

    def _uses_written_file(self, call: ast.Call, dest: str | None) -> bool:
        """A file operation (copy, move, link) whose source is the path just written."""
        return (
            dest is not None
            and self.names.resolve(call.func) in _FILE_OPERATIONS
            and bool(call.args)
            and self.tree.text(call.args[0]) == dest
        )

    def _is_rename(self, call: ast.Call) -> bool:
        """os.replace / os.rename / shutil.move, or Path.replace/rename (one argument, unlike str's)."""
        if self.names.resolve(call.func) in {"os.replace", "os.rename", "shutil.move"}:
            return True
        return (
            isinstance(call.func, ast.Attribute)
            and call.func.attr in {"replace", "rename"}
            and len(call.args) == 1
            and not call.keywords
        )

    def _atomic_already(self, call: ast.Call) -> bool:
        scope = self.tree.function(call) or self.tree.module
        return any(isinstance(node, ast.Call) and self._is_rename(node) for node in walk_local(scope))

    def _atomic_edits(self, save: Save) -> list[Edit]:
        call = save.call
        if any(isinstance(a, ast.Starred) for a in call.args) or any(kw.arg is None for kw in call.keywords):
            return []
        obj, dest = argument(call, save.obj), argument(call, save.dest)
        if obj is None or dest is None or save.obj is None or save.dest is None:
            return []
        if self.runtime:
            return [
                CallEdit(
                    self.tree.span(call),
                    func="{atomic_save}",
                    positional=(save.obj, save.dest),
                    symbols=frozenset({"atomic_save"}),
                )
            ]
        stmt = self.tree.statement(call)
        if not (isinstance(stmt, ast.Expr) and stmt.value is call and self.tree.alone_on_line(stmt)):
            return []
        scope = self.tree.function(call) or self.tree.module
        simple = isinstance(dest, ast.Name | ast.Attribute) or (
            isinstance(dest, ast.Constant) and isinstance(dest.value, str)
        )
        return [
            InlineAtomic(
                key=self.key(stmt),
                dest=save.dest,
                path_name=None if simple else self._fresh_local(scope, "checkpoint_path"),
                tmp_name=self._fresh_local(scope, "tmp_path"),
                handle_name=self._fresh_local(scope, "checkpoint_file"),
            )
        ]


def _where(guard: Guard) -> str:
    """`line 12`, or `train.py:27` for a guard around the calls in another file of the project."""
    return guard.where or f"line {getattr(guard.node, 'lineno', '?')}"


def _to_rank_zero(call: ast.Call) -> bool:
    """`consolidate_state_dict()` / `(0)` / `(to=0)`: the state lands on rank 0."""
    target = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "to"), None)
    return target is None or (isinstance(target, ast.Constant) and target.value == 0)
