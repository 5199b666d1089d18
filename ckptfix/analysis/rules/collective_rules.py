"""CKP006: collectives, breaks and stop flags that only the main process reaches (issue 4)."""

from __future__ import annotations

import ast

from ckptfix.analysis import catalog
from ckptfix.analysis.guards import Guard, Kind
from ckptfix.analysis.names import dotted
from ckptfix.analysis.plan import Edit, SplitGuard
from ckptfix.analysis.rules.context import RuleContext, and_clauses, exits_early, loop_of
from ckptfix.analysis.tree import LOOPS, SCOPES, walk_local

# Calls an assignment may make and still be moved out of a main-process guard (they only compute a value).
_PURE_CALLS = frozenset(
    {"os.path.join", "str", "int", "float", "len", "max", "min", "round", "format"}
    # the settings objects built before gathering a state dict (`cfg = FullStateDictConfig(...)`)
    | {
        f"torch.distributed.{module}.{name}"
        for module in ("fsdp", "fsdp.api", "checkpoint.state_dict")
        for name in ("FullStateDictConfig", "FullOptimStateDictConfig", "StateDictOptions")
    }
)


class CollectiveRules(RuleContext):
    """Code under a main-process guard that every rank must run."""

    def _check_divergent_exit(self, node: ast.Break | ast.Assign) -> None:
        """A `break`, or a stop flag, set under a main-process guard ends the loop on rank 0 only."""
        flag: str | None = None
        if isinstance(node, ast.Assign):
            flag = dotted(node.targets[0]) if len(node.targets) == 1 else None
            if flag is None or flag not in self._loop_flags()[1]:
                return  # nearly every assignment: no loop ends on that name
        loop = loop_of(self.tree, node)
        if loop is None:
            return
        if flag is None:
            what = "`break`"
        else:
            if flag not in self._loop_flags()[0].get(id(loop), ()):
                return
            what = f"`{flag}`, which ends the loop,"
        guard = self.guards.local_guard(self.tree, node, stop=loop)
        if guard is None or guard.kind == Kind.SHARD or not self._syncs_every_rank(loop):
            return
        if flag is not None and self._broadcast_after(flag, node, loop):
            return  # rank 0 tells the others (`broadcast_object_list([stop], src=0)`): they agree
        self._issue(
            "CKP006",
            node,
            f"{what} is set under the main-process guard at line {getattr(guard.node, 'lineno', '?')}: the "
            "loop ends on the main process only and the other ranks wait in its collectives forever",
        )

    def _broadcast_after(self, flag: str, node: ast.AST, loop: ast.AST) -> bool:
        """The flag goes through a broadcast after its assignment in the loop (`flag = [stop];
        dist.broadcast_object_list(flag, src=0); stop = flag[0]`, `stop = broadcast(stop)`): every
        rank then ends the loop on rank 0's value."""
        start = (node.lineno, node.col_offset)  # type: ignore[attr-defined]
        assigns = [a for a in walk_local(loop) if isinstance(a, ast.Assign)]

        def spelled(node: ast.AST) -> set[str]:
            return {name for n in ast.walk(node) if isinstance(n, ast.expr) and (name := dotted(n))}

        related = {flag}
        for _ in range(3):  # names the flag flows into, and names it is read back from
            for assign in assigns:
                targets = set().union(*(spelled(t) for t in assign.targets))
                values = spelled(assign.value)
                if values & related:
                    related |= targets
                if targets & related:
                    related |= values
        for call in walk_local(loop):
            if not isinstance(call, ast.Call) or (call.lineno, call.col_offset) <= start:
                continue
            name = self._collective(call) or (dotted(call.func) or "")
            if "broadcast" not in name.rsplit(".", 1)[-1]:
                continue
            if spelled(call) & related:
                return True
        return False

    def _loop_flags(self) -> tuple[dict[int, set[str]], set[str]]:
        """Names that end each loop (by id), and all of them: those in its `while` condition, or in
        the test of an `if` that breaks, anywhere in the loop outside nested functions and classes.
        Worked out for all loops at once, from the few `while` and breaking `if` nodes."""
        if self._flags is None:
            flags: dict[int, set[str]] = {}
            for loop in self.tree.of_type(ast.While):
                flags.setdefault(id(loop), set()).update(_spelled_names(loop.test))
            for branch in self.tree.of_type(ast.If):
                if not any(isinstance(s, ast.Break) for s in branch.body):
                    continue
                names = _spelled_names(branch.test)
                for ancestor in self.tree.ancestors(branch):
                    if isinstance(ancestor, SCOPES):
                        break
                    if isinstance(ancestor, LOOPS):
                        flags.setdefault(id(ancestor), set()).update(names)
            self._flags = flags
            self._any_flag = set().union(*flags.values())
        return self._flags, self._any_flag

    def _other_branch_joins(self, guard: ast.AST, call: ast.Call) -> bool:
        """The other ranks make a matching collective in the guard's other branch.

        `if rank == 0: dist.scatter(t, chunks, src=0) else: dist.scatter(t, src=0)` and send/recv
        pairs (`if rank == 0: dist.send(...) elif rank == 1: dist.recv(...)`) are how rooted and
        point-to-point collectives are written: every rank joins, so nothing hangs.
        """
        if not isinstance(guard, ast.If):
            return False
        in_body = any(node is call for stmt in guard.body for node in ast.walk(stmt))
        other = guard.orelse if in_body else guard.body
        return any(
            isinstance(node, ast.Call) and self._collective(node) is not None
            for stmt in other
            for node in ast.walk(stmt)
        )

    def _check_collective(self, call: ast.Call) -> None:
        name = self._collective(call)
        if name is None:
            return
        guard = self.graph.guard(call)
        if guard is None or guard.kind == Kind.SHARD:
            return
        local = self.guards.local_guard(self.tree, call)
        if local is not None and (self._other_branch_joins(local.node, call) or self._balanced(call)):
            return
        if local is not None:
            where = f"under the main-process guard at line {getattr(local.node, 'lineno', '?')}"
        else:
            where = self._guarded_chain(call)
        fact = self.project_fact(call)
        lifted = self._lift(call, frozenset()) if fact is None else "the collective runs in another file"
        if isinstance(lifted, str):
            how = f" (not rewritten automatically: {lifted}; move the guard inward to the write by hand)"
            edits: list[Edit] = []
        else:
            how = ""
            edits = list(lifted)
        short = name.rsplit(".", 1)[-1]
        by_name = name not in catalog.COLLECTIVES and short not in catalog.TORCH_COLLECTIVE_METHODS
        if fact is not None:
            by_name = False
            effect = (
                f"it runs `{fact.collective}`, reached from `{short}` defined at {fact.where} in another "
                "file: the other ranks never join it, so the job hangs"
            )
        elif by_name:  # accelerate's save_state, DeepSpeed's save_checkpoint: collectives when sharded
            effect = (
                f"`{short}` is taken for a collective by its name: it is one where the framework shards "
                "the state (DeepSpeed, FSDP), and then the other ranks never join it and the job hangs; "
                "under plain DDP it may write alone"
            )
        else:
            effect = (
                "the other ranks never join it, so the job hangs or the lone collective is matched with "
                "another one of theirs (a crash, or wrong results)"
            )
        self._issue(
            "CKP006",
            call,
            f"collective `{name}` {where}: {effect}{how}",
            edits,
            unsafe=f"`{short}` is taken for a collective by its name" if by_name and edits else None,
        )

    def _balanced(self, call: ast.Call) -> bool:
        """Every rank meets as many barriers and collectives, in the same order, in the function that
        holds the guarded one: "rank 0 goes first" (`if rank != 0: barrier()` ... `if rank == 0:
        barrier()`) pairs a guarded barrier with the others' own. Asked of the validator's traces."""
        from ckptfix.validation.validator import Program, mismatch  # the validator reads the rules

        scope = self.tree.function(call) or self.tree.module
        if self._program is None:
            self._program = Program(self.tree.source, self.tree.module, self.options, self)
        return mismatch(self._program, scope) is None

    def _guarded_chain(self, node: ast.AST) -> str:
        """ "in `h1` <- `h2`, which only the main process runs (called at line 40 under the guard at
        line 39)": the helpers from the collective up to where the guard is."""
        functions: list[str] = []
        origin = "all its callers are guarded"
        seen: set[int] = set()
        current: ast.AST = node
        while (function := self.tree.function(current)) is not None and id(function) not in seen:
            seen.add(id(function))
            functions.append(f"`{function.name}`")
            if self.guards.decorator_kind(function) is not None:
                origin = f"decorated at line {function.lineno}"
                break
            guarded = [s for s in self.graph.sites[id(function)] if self.graph.guard(s) is not None]
            if not guarded:
                break
            current = guarded[0]
            local = self.guards.local_guard(self.tree, current)
            if local is not None:
                origin = (
                    f"called at line {getattr(current, 'lineno', '?')} under the guard at line "
                    f"{getattr(local.node, 'lineno', '?')}"
                )
                break
        return f"in {' <- '.join(functions)}, which only the main process runs ({origin})"

    # --- the fix ---------------------------------------------------------------------------------------
    def _lift(self, node: ast.AST, seen: frozenset[int]) -> list[SplitGuard] | str:
        """Edits that take `node` out from under every main-process guard it runs under: its own
        guard `if`, and the guarded call sites of the helpers that lead to it. A reason instead when
        some guard cannot be lifted safely (a decorator, an early exit, an else branch, ...)."""
        edits: list[SplitGuard] = []
        local = self.guards.local_guard(self.tree, node)
        if local is not None:
            split = self._split(local, node)
            if isinstance(split, str):
                return split
            edits.append(split)
        function = self.tree.function(node)
        if function is None or self.graph.function_guard(function) is None:
            return edits
        if self.guards.decorator_kind(function) is not None:
            return f"`{function.name}` is decorated to run on the main process only"
        if id(function) in seen:
            return f"`{function.name}` is recursive"
        sites = self.graph.sites[id(function)]
        if not all(isinstance(site, ast.Call) for site in sites):
            return f"`{function.name}` is passed around as a value, not only called"
        for site in sites:
            if self.graph.guard(site) is None:
                continue
            sub = self._lift(site, seen | {id(function)})
            if isinstance(sub, str):
                return sub
            edits.extend(sub)
        return edits

    def _split(self, guard: Guard, node: ast.AST) -> SplitGuard | str:
        """Split the guard `if` so that the statements reaching collectives run on every rank."""
        test = guard.node
        if not isinstance(test, ast.If) or guard.exit is not None:
            return "the guard is an early exit or an expression, not an `if` around the call"
        if test.orelse:
            return f"the guard at line {test.lineno} has an else branch"
        parent = self.tree.parent.get(id(test))
        if isinstance(parent, ast.If) and any(s is test for s in parent.orelse):
            return f"the guard at line {test.lineno} is an elif"
        other_guard = self.guards.local_guard(self.tree, test) or self.guards.local_guard(
            self.tree, node, stop=test
        )
        if other_guard is not None:
            return f"the call is under a second guard at line {getattr(other_guard.node, 'lineno', '?')}"
        clauses = and_clauses(test.test)
        main = [c for c in clauses if self.guards.classify(c) is not None]
        others = [c for c in clauses if self.guards.classify(c) is None]
        if not main:
            return f"the main-process test at line {test.lineno} is not a clause of its own"
        first_main = clauses.index(main[0])
        if any(
            any(isinstance(n, ast.Call) for n in ast.walk(c))
            for c in clauses[first_main + 1 :]
            if c in others
        ):
            return f"the other clauses of the test at line {test.lineno} would run on every rank"
        reaching = [i for i, stmt in enumerate(test.body) if self._reaches_collective(stmt)]
        if not reaching:
            return f"the collective is not in the body of the guard at line {test.lineno}"
        lifted = reaching[-1] + 1
        for stmt in test.body[:lifted]:
            if exits_early(stmt):
                return f"the guarded code at line {stmt.lineno} returns, breaks or continues"
            if not (self._reaches_collective(stmt) or self._computes_only(stmt)):
                return f"line {stmt.lineno}, before the collective in the guard, would run on every rank"
        return SplitGuard(
            key=self.key(test),
            lifted=lifted,
            test=" and ".join(self._clause_text(c) for c in others) or None,
            main_test=" and ".join(self._clause_text(c) for c in main),
        )

    def _reaches_collective(self, stmt: ast.stmt) -> bool:
        def direct(call: ast.Call) -> bool:
            return self._collective(call) is not None

        for node in [stmt, *walk_local(stmt)]:
            if isinstance(node, ast.Call) and (
                direct(node)
                or any(self.graph.reaches(f, direct) is not None for f in self.graph.targets(node))
            ):
                return True
        return False

    def _computes_only(self, stmt: ast.stmt) -> bool:
        """An assignment to names that only computes a value (a path, a step count)."""
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            return False
        return all(isinstance(t, ast.Name) for t in targets) and all(
            self.names.resolve(n.func) in _PURE_CALLS or dotted(n.func) in _PURE_CALLS
            for n in ast.walk(value)
            if isinstance(n, ast.Call)
        )


def _spelled_names(test: ast.expr) -> set[str]:
    """The dotted names spelled in a condition (`self.stop`, `self`, `done`)."""
    return {name for n in ast.walk(test) if isinstance(n, ast.expr) and (name := dotted(n))}
