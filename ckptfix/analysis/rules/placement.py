"""CKP002: where the barrier after a checkpoint goes (outside every branch ranks may disagree on, never
inside a guard)."""

from __future__ import annotations

import ast
from itertools import pairwise
from textwrap import indent

from ckptfix.analysis.names import last_name
from ckptfix.analysis.plan import Edit, Insert
from ckptfix.analysis.rules.context import (
    LOG_CALLS,
    RuleContext,
    and_clauses,
    contains_loop,
    exits_early,
    loop_of,
)
from ckptfix.analysis.saves import Save
from ckptfix.analysis.tree import LOOPS, FunctionNode, exits, walk_local


class BarrierPlacement(RuleContext):
    """Finds or places the one barrier that follows each checkpoint event."""

    def _check_barrier_after(self, save: Save, shown: str) -> bool:
        """CKP002 when no barrier follows the save; whether a barrier that carries a failed save to every
        rank follows it (already, or once the fix is applied)."""
        if self._callers_elsewhere(save.call) is not None:
            # Every way to this write comes from other files: each call there gets its barrier (their
            # analysis sees a call of a function that saves), none goes in here.
            return False
        if save.syncs is not None:
            return False  # the helper meets a barrier itself, after its write (ckptfix.project)
        anchors = self._anchors(save.call, frozenset())
        if anchors is not None:
            if all(self._barrier_follows(anchor, save.call) for anchor in anchors):
                return all(self._barrier_follows(anchor, save.call, carrier=True) for anchor in anchors)
        elif self._barrier_follows(self._anchor_statement(save.call), save.call):
            return self._barrier_follows(self._anchor_statement(save.call), save.call, carrier=True)
        edits: list[Edit] = []
        busy = next((c for a in anchors or () if (c := self._other_main_work(a, save.call))), None)
        if busy is not None:
            shown_work = self.tree.text(busy.func)
            self._issue(
                "CKP002",
                save.call,
                f"no barrier after the checkpoint written by `{shown}(...)`: the other ranks run ahead and "
                "time out in the next collective while the main process writes (not rewritten "
                f"automatically: a barrier after the guard would also wait for the main process's other "
                f"work there, `{shown_work}(...)` at line {busy.lineno}, which may take longer than any "
                "checkpoint timeout; put the barrier right after the write by hand)" + _through(save),
            )
            return False
        # An anchor the code already follows with a barrier (`dist.barrier()` after the final save)
        # keeps it alone: a second one there adds nothing but a stricter timeout.
        followed = [a for a in anchors or () if self._barrier_follows(a, save.call)]
        if anchors:
            barrier, symbols = self._barrier(self.options.barrier_timeout, final=False)
            for anchor in anchors:
                if anchor in followed:
                    continue
                condition = self._checkpoint_condition(anchor)
                template = barrier if condition is None else f"if {condition}:\n{indent(barrier, '    ')}"
                edits.append(Insert(self.key(anchor), True, template, symbols, group=self._group(anchor)))
        function = self.tree.function(save.call)
        unseen = self.graph.callers_unseen(function) if function is not None and not edits else None
        why = unseen or "add a barrier every rank reaches"
        self._issue(
            "CKP002",
            save.call,
            f"no barrier after the checkpoint written by `{shown}(...)`: the other ranks run ahead and time "
            "out in the next collective while the main process writes"
            + _through(save)
            + ("" if edits else f" (not rewritten automatically: {why})"),
            edits,
        )
        return (
            bool(edits)
            and "CKP002" in self.options.select
            and all(self._barrier_follows(a, save.call, carrier=True) for a in followed)
        )

    def _recoverable(self, save: Save) -> bool:
        """Whether a later checkpoint can still make up for this one failing: the barrier after it runs
        in a loop (a periodic checkpoint), so training may go on once the failure is reported. After
        a one-shot write (the final model, a conversion tool's output) it cannot: the handler must
        re-raise, or the job would exit 0 without its output where it used to fail."""
        anchors = self._anchors(save.call, frozenset())
        statements = anchors if anchors is not None else [self._anchor_statement(save.call)]
        return bool(statements) and all(self._repeats(s) for s in statements)

    def _repeats(self, stmt: ast.stmt, depth: int = 0) -> bool:
        """`stmt` runs in a loop: its own function's, or every caller's (a `save_checkpoint` method
        called from the training loop)."""
        if loop_of(self.tree, stmt) is not None:
            return True
        function = self.tree.function(stmt)
        if function is None or depth >= 3:
            return False
        sites = self.graph.sites[id(function)]
        return bool(sites) and all(
            isinstance(site, ast.Call) and self._repeats(self.tree.statement(site), depth + 1)
            for site in sites
        )

    def _callers_elsewhere(self, node: ast.AST) -> str | None:
        """Where another file calls the function holding `node`, when every way to `node` comes from
        other files' calls (through this file's helpers, if any), all of them seen as calls."""
        where: str | None = None
        pending: list[FunctionNode | None] = [self.tree.function(node)]
        seen: set[int] = set()
        while pending:
            function = pending.pop()
            if function is None:
                return None  # module-level code of this file reaches it
            if id(function) in seen:
                continue
            seen.add(id(function))
            external = self.graph.external_sites(function)
            if not all(site.call for site in external):
                return None
            where = where or (external[0].where if external else None)
            local = self.graph.sites[id(function)]
            if not local and not external:
                return None  # an entry point of its own (or called from where ckptfix cannot see)
            for site in local:
                if not isinstance(site, ast.Call):
                    return None
                pending.append(self.tree.function(site))
        return where

    def _other_main_work(self, anchor: ast.stmt, save: ast.Call) -> ast.Call | None:
        """Main-process work after the write (or after the call that leads to it) and before the end
        of `anchor`, where the barrier would go: a final validation, sampling, an upload. Every rank
        would wait for it too, under a checkpoint timeout."""
        start = self._leading_call(anchor, save)
        if start is None:
            return None
        return self._main_work_between(anchor, (start.end_lineno or 0, start.end_col_offset or 0), None)

    def _leading_call(self, anchor: ast.stmt, save: ast.Call) -> ast.Call | None:
        """The save itself if `anchor` holds it, else the call in `anchor` that leads to it (a call of
        its helper, of the helper's caller, ...)."""
        leads: list[ast.AST] = [save]
        seen: set[int] = set()
        for node in leads:
            function = self.tree.function(node)
            if function is not None and id(function) not in seen and len(seen) < 8:
                seen.add(id(function))
                leads.extend(s for s in self.graph.sites[id(function)] if isinstance(s, ast.Call))
        inside = {id(n) for n in [anchor, *walk_local(anchor)]}
        return next((n for n in leads if id(n) in inside and isinstance(n, ast.Call)), None)

    def _main_work_between(
        self, scope: ast.AST, after: tuple[int, int], before: tuple[int, int] | None
    ) -> ast.Call | None:
        """The first call in `scope` between two positions that only the main process makes and that
        is no part of writing a checkpoint."""
        calls = sorted((n for n in walk_local(scope) if isinstance(n, ast.Call)), key=_position)
        for node in calls:
            where = _position(node)
            if where <= after or (before is not None and where >= before):
                continue
            if self.graph.guard(node) is None:
                continue  # every rank runs it: no one waits for it
            if not self._checkpoint_work(node):
                return node
        return None

    def _checkpoint_work(self, call: ast.Call) -> bool:
        """Writing, naming, logging or tidying files, or plain Python: what a checkpoint event does
        besides the write, in no time that matters."""
        name = last_name(call.func) or ""
        resolved = self.names.resolve(call.func) or ""
        return (
            name in LOG_CALLS
            or name in _CHECKPOINT_CALLS
            or name in _CHEAP_METHODS
            or "save" in name.lower()
            or resolved.startswith(("os.", "shutil.", "json.", "pathlib.", "glob.", "time.", "logging."))
            or (isinstance(call.func, ast.Name) and call.func.id in _BUILTINS)
        )

    def _checkpoint_condition(self, anchor: ast.stmt) -> str | None:
        """For `if step % every == 0 and master_process:` (nanoGPT), `step % every == 0`: the barrier
        after the `if` then runs on checkpoint steps only, on every rank, not on every step. Only when
        every other clause is the same on every rank (RankUniform) and the guarded code does not
        rebind what the clauses read, so that the test means the same after it."""
        if not isinstance(anchor, ast.If) or anchor.orelse:
            return None
        clauses = and_clauses(anchor.test)
        others = [c for c in clauses if self.guards.classify(c) is None]
        if len(others) == len(clauses) or not others or not all(self.uniform.test(c) for c in others):
            return None
        read = {n.id for c in others for n in ast.walk(c) if isinstance(n, ast.Name)}
        written = {
            n.id
            for stmt in anchor.body
            for n in [stmt, *walk_local(stmt)]
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del)
        }
        if read & written:
            return None
        # A setting the clause reads could be changed by a call in the block (`setattr`, a method
        # that updates its config): then only a test of names alone is trusted.
        reads_attributes = any(isinstance(n, ast.Attribute) for c in others for n in ast.walk(c))
        stores = (ast.Attribute, ast.Subscript)
        if reads_attributes and any(
            isinstance(n, ast.Call) or (isinstance(n, stores) and isinstance(n.ctx, ast.Store))
            for stmt in anchor.body
            for n in [stmt, *walk_local(stmt)]
        ):
            return None
        return " and ".join(self._clause_text(c) for c in others)

    def _group(self, anchor: ast.stmt) -> tuple[int, ...]:
        """Anchors in one block with no loop between them share one barrier."""
        block, index = self.tree.block_of(anchor)
        loops = sum(1 for stmt in block[:index] if contains_loop(stmt))
        return (block[0].lineno, block[0].col_offset, loops)

    def _anchor_statement(self, node: ast.AST) -> ast.stmt:
        """The statement around `node` after which the barrier goes: outside every branch ranks may
        disagree on (ranks that took different branches still meet) inside the innermost loop body or
        function body, but inside the branches every rank takes alike (`if step % every == 0:`: one
        barrier per checkpoint, not one per step). A loop that itself sits in such a branch
        (`if rank == 0: for ...`) is no place for it: the barrier goes after that branch."""
        chain: list[ast.stmt] = []
        loop: ast.AST | None = None
        for stmt in self.tree.enclosing_statements(node):
            chain.append(stmt)
            parent = self.tree.parent.get(id(stmt))
            if isinstance(parent, LOOPS):
                loop = parent
                break
            if isinstance(parent, ast.If) and _is_main_block(parent):
                break
        if loop is not None:
            branch = self._divergent_branch(loop)
            if branch is not None:
                return self._anchor_statement(branch)
        chain.reverse()  # outermost first
        for outer, inner in pairwise(chain):
            if not (isinstance(outer, ast.If) and self._taken_alike(outer) and _directly_in(inner, outer)):
                return outer
        return chain[-1]

    def _divergent_branch(self, loop: ast.AST) -> ast.stmt | None:
        """The outermost branch around `loop`, up to its function, that ranks may disagree on: an
        `if` not taken alike, a `try`'s handler, a `match`."""
        found: ast.stmt | None = None
        child = loop
        for ancestor in self.tree.ancestors(loop):
            if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                break
            if _divides(ancestor, child) and not self._taken_alike(ancestor):
                found = ancestor  # type: ignore[assignment]
            child = ancestor
        return found

    def _taken_alike(self, node: ast.AST | None) -> bool:
        """`node` is an `if` every rank takes or skips together."""
        return isinstance(node, ast.If) and (_is_main_block(node) or self.uniform.test(node.test))

    def _anchors(self, node: ast.AST, seen: frozenset[int]) -> list[ast.stmt] | None:
        """Statements after which every rank passes once the write at `node` is done; None when no
        such place can be found safely (early `continue`, recursion, unknown callers)."""
        local = self.guards.local_guard(self.tree, node)
        if local is not None and local.exit in {"continue", "break"}:
            return None
        for ancestor in self.tree.ancestors(node):
            if isinstance(ancestor, ast.Lambda):
                return None  # runs whenever the lambda is called: no statement to follow
            if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef):
                break
        escapes = local is not None and local.exit in {"return", "raise"}
        function = self.tree.function(node)
        elsewhere = function is not None and self.graph.external_sites(function)
        if elsewhere and self.graph.callers_unseen(function):  # type: ignore[arg-type]
            return None  # called under a guard (or passed around) in other files: theirs to place
        if function is not None and (
            escapes
            or self.graph.function_guard(function) is not None
            or self.graph.has_guarded_site(function)
            or self._called_conditionally(function)
        ):
            sites = self.graph.sites[id(function)]
            if id(function) in seen or not sites or not all(isinstance(s, ast.Call) for s in sites):
                return None
            found: list[ast.stmt] = []
            for site in sites:
                sub = self._anchors(site, seen | {id(function)})
                if sub is None:
                    return None
                found.extend(a for a in sub if all(a is not b for b in found))
            return found
        if escapes:
            return None
        if function is not None and self.graph.callers_unseen(function) is not None:
            return None  # the barrier is its callers' to place (the validator would refuse it here)
        anchor = self._anchor_statement(node)
        if exits_early(anchor):
            # `if done: save(); break`: no place after the write inside the loop, but every rank that
            # leaves the loop passes the statement after it.
            loop = self.tree.parent.get(id(anchor))
            if isinstance(loop, LOOPS) and _leaves_only_its_loop(anchor) and _directly_in_body(anchor, loop):
                return self._anchors(loop, seen)
            return None
        if not self.tree.alone_on_line(anchor):
            return None
        return [anchor]

    def _called_conditionally(self, function: FunctionNode) -> bool:
        """Some call of `function` sits in a branch of its caller (`if is_best: self.save_best()`):
        ranks may disagree on that branch, so a barrier inside the helper could wait for ranks that
        never call it; the barrier goes after the caller's branch instead."""
        return any(
            isinstance(site, ast.Call) and self._anchor_statement(site) is not self.tree.statement(site)
            for site in self.graph.sites[id(function)]
        )

    def _barrier_follows(
        self, anchor: ast.stmt, node: ast.AST, depth: int = 0, carrier: bool = False
    ) -> bool:
        start = (node.lineno, node.col_offset)  # type: ignore[attr-defined]
        for child in walk_local(anchor):
            if (
                isinstance(child, ast.Call)
                and (child.lineno, child.col_offset) > start
                and self._is_sync(child, carrier)
            ):
                return True
        block, index = self.tree.block_of(anchor)
        for sibling in block[index + 1 :]:
            for child in [sibling, *walk_local(sibling)]:
                if isinstance(child, ast.Call) and self._is_sync(child, carrier):
                    return True
        owner = self.tree.parent.get(id(anchor))
        if self._taken_alike(owner):  # the anchor is inside `if step % every == 0:`; so is the barrier
            return self._barrier_follows(owner, node, depth, carrier)  # type: ignore[arg-type]
        function = self.tree.function(anchor)
        if depth < 2 and function is not None and block is function.body:
            sites = self.graph.sites[id(function)]
            return bool(sites) and all(
                isinstance(site, ast.Call)
                and self._barrier_follows(self._anchor_statement(site), site, depth + 1, carrier)
                for site in sites
            )
        return False


# Calls a checkpoint event makes besides its writes (state to save, paths, cleanup, bookkeeping).
_CHECKPOINT_CALLS = frozenset(
    {
        "state_dict",
        "unwrap_model",
        "get_state_dict",
        "join",
        "exists",
        "makedirs",
        "mkdir",
        "remove",
        "rmtree",
        "copyfile",
        "copy",
        "copy2",
        "move",
        "replace",
        "rename",
        "listdir",
        "sorted",
        "glob",
        "dump",
        "dumps",
        "write",
        "write_text",
        "open",
        "cpu",
        "item",
        "format",
        "update",
        "append",
    }
)
_BUILTINS = frozenset(
    {"len", "str", "int", "float", "bool", "dict", "list", "tuple", "set", "max", "min", "sorted", "print"}
    | {"open", "enumerate", "range", "zip", "isinstance", "hasattr", "getattr", "setattr", "repr", "type"}
    | {"any", "all", "sum", "abs", "round", "iter", "next", "map", "filter", "reversed", "vars", "id"}
)
# Container and tensor methods that take no time worth a barrier's notice.
_CHEAP_METHODS = frozenset(
    {"pop", "get", "items", "keys", "values", "extend", "insert", "clear", "setdefault", "add", "discard"}
    | {"detach", "clone", "to", "numpy", "tolist", "strip", "split", "endswith", "startswith", "lower"}
)


def _through(save: Save) -> str:
    """Where a function of another file writes the checkpoint a call saves, for the message."""
    return f" (the write is in another file, at {save.through})" if save.through else ""


def _position(node: ast.AST) -> tuple[int, int]:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def _divides(node: ast.AST, child: ast.AST) -> bool:
    """Ranks may split at `node` on the way to `child`: an `if`'s branches, a `match`'s cases, a `try`'s
    handlers (for an `if`, RankUniform may still prove the split never happens)."""
    if isinstance(node, ast.If):
        return child is not node.test
    if isinstance(node, ast.Try | ast.TryStar):
        return any(child is handler for handler in node.handlers)
    return isinstance(node, ast.Match)


def _leaves_only_its_loop(stmt: ast.stmt) -> bool:
    """`stmt`'s early exits are `break`s: it ends the loop after the write. (After a `continue` the
    loop goes on, so a barrier after the loop would come too late; after a `return`, never.)"""
    return all(isinstance(node, ast.Break) for node in exits(stmt))


def _directly_in_body(stmt: ast.stmt, loop: ast.AST) -> bool:
    return any(item is stmt for item in getattr(loop, "body", []))


def _directly_in(stmt: ast.stmt, branch: ast.If) -> bool:
    return any(item is stmt for item in (*branch.body, *branch.orelse))


def _is_main_block(node: ast.If) -> bool:
    test = node.test
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )
