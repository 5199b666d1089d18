"""CKP002: where the barrier after a checkpoint goes (outside every branch ranks may disagree on, never
inside a guard)."""

from __future__ import annotations

import ast
from itertools import pairwise
from textwrap import indent

from ckptfix.analysis.plan import Edit, Insert
from ckptfix.analysis.rules.context import RuleContext, and_clauses, contains_loop, exits_early
from ckptfix.analysis.saves import Save
from ckptfix.analysis.tree import LOOPS, FunctionNode, exits, walk_local


class BarrierPlacement(RuleContext):
    """Finds or places the one barrier that follows each checkpoint event."""

    def _check_barrier_after(self, save: Save, shown: str) -> None:
        anchors = self._anchors(save.call, frozenset())
        if anchors is not None:
            if all(self._barrier_follows(anchor, save.call) for anchor in anchors):
                return
        elif self._barrier_follows(self._anchor_statement(save.call), save.call):
            return
        edits: list[Edit] = []
        if anchors:
            barrier, symbols = self._barrier(self.options.barrier_timeout, final=False)
            for anchor in anchors:
                condition = self._checkpoint_condition(anchor)
                template = barrier if condition is None else f"if {condition}:\n{indent(barrier, '    ')}"
                edits.append(Insert(self.key(anchor), True, template, symbols, group=self._group(anchor)))
        self._issue(
            "CKP002",
            save.call,
            f"no barrier after the checkpoint written by `{shown}(...)`: the other ranks run ahead and time "
            "out in the next collective while the main process writes"
            + ("" if edits else " (not rewritten automatically: add a barrier every rank reaches)"),
            edits,
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

    def _barrier_follows(self, anchor: ast.stmt, node: ast.AST, depth: int = 0) -> bool:
        start = (node.lineno, node.col_offset)  # type: ignore[attr-defined]
        for child in walk_local(anchor):
            if (
                isinstance(child, ast.Call)
                and (child.lineno, child.col_offset) > start
                and self._is_sync(child)
            ):
                return True
        block, index = self.tree.block_of(anchor)
        for sibling in block[index + 1 :]:
            for child in [sibling, *walk_local(sibling)]:
                if isinstance(child, ast.Call) and self._is_sync(child):
                    return True
        owner = self.tree.parent.get(id(anchor))
        if self._taken_alike(owner):  # the anchor is inside `if step % every == 0:`; so is the barrier
            return self._barrier_follows(owner, node, depth)  # type: ignore[arg-type]
        function = self.tree.function(anchor)
        if depth < 2 and function is not None and block is function.body:
            sites = self.graph.sites[id(function)]
            return bool(sites) and all(
                isinstance(site, ast.Call)
                and self._barrier_follows(self._anchor_statement(site), site, depth + 1)
                for site in sites
            )
        return False


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
