"""Apply an edit plan to the `ast` instead of the source: the program a rewrite would produce, for the
validator to check without libcst (so that `check` can say which fixes `apply` would refuse at the
cost of an `ast` pass, not of a libcst rewrite).

It mirrors `ckptfix.rewrite` edit for edit, on nodes instead of text; tests keep the two in step by
comparing this module's result with `ast.parse` of libcst's. Unchanged statements are shared with the
original tree, changed ones are copies; new statements carry the position of the statement they were
placed next to, so that messages about them name a line of the original file.
"""

from __future__ import annotations

import ast
import copy
from bisect import bisect_left

from ckptfix.analysis.plan import CallEdit, InlineAtomic, Key, Plan, SplitGuard, WrapGuard
from ckptfix.analysis.saves import ArgRef, argument
from ckptfix.analysis.tree import Tree


class _Substitute(ast.NodeTransformer):
    def __init__(self, nodes: dict[str, ast.expr]) -> None:
        self.nodes = nodes

    def visit_Name(self, node: ast.Name) -> ast.expr:
        replacement = self.nodes.get(node.id)
        return copy.deepcopy(replacement) if replacement is not None else node


def _locate(nodes: list[ast.stmt], anchor: ast.AST) -> list[ast.stmt]:
    for stmt in nodes:
        for node in ast.walk(stmt):
            if hasattr(node, "lineno"):
                node.lineno = anchor.lineno  # type: ignore[attr-defined]
                node.col_offset = anchor.col_offset  # type: ignore[attr-defined]
                node.end_lineno = anchor.lineno  # type: ignore[attr-defined]
                node.end_col_offset = anchor.col_offset  # type: ignore[attr-defined]
    return nodes


class AstApplier:
    """`apply(plan)` on `tree`'s module: a new module sharing every untouched statement."""

    def __init__(self, tree: Tree, plan: Plan, symbols: dict[str, str]) -> None:
        self.tree = tree
        self.plan = plan
        self.symbols = symbols
        self.keys = plan.statement_keys()
        self._edit_lines = sorted({key[0] for key in self.keys} | {span[0] for span in plan.calls})

    def module(self) -> ast.Module:
        module = self.tree.module
        return ast.Module(body=self._block(module.body), type_ignores=module.type_ignores)

    # --- templates ---------------------------------------------------------------------------------
    def _statements(
        self,
        template: str,
        anchor: ast.AST,
        nodes: dict[str, ast.expr] | None = None,
        extra: dict[str, str] | None = None,
    ) -> list[ast.stmt]:
        body = ast.parse(template.format(**self.symbols, **(extra or {}))).body
        if nodes:
            body = [_Substitute(nodes).visit(stmt) for stmt in body]
        return _locate(body, anchor)

    def _expression(
        self, template: str, anchor: ast.AST, nodes: dict[str, ast.expr] | None = None
    ) -> ast.expr:
        expr = ast.parse(template.format(**self.symbols), mode="eval").body
        if nodes:
            expr = _Substitute(nodes).visit(expr)
        _locate([ast.Expr(value=expr)], anchor)
        return expr

    # --- which statements change --------------------------------------------------------------------
    def _touched(self, stmt: ast.stmt) -> bool:
        """An edit starts on one of the statement's lines."""
        lines = self._edit_lines
        index = bisect_left(lines, stmt.lineno)
        return index < len(lines) and lines[index] <= (stmt.end_lineno or stmt.lineno)

    def _rebuilt(self, stmt: ast.stmt) -> ast.stmt:
        """`stmt` with the edits inside it applied: the same node when there are none."""
        if not self._touched(stmt):
            return stmt
        new = copy.copy(stmt)
        for name, value in ast.iter_fields(stmt):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                setattr(new, name, self._block(value))
            elif (
                isinstance(value, list) and value and isinstance(value[0], ast.excepthandler | ast.match_case)
            ):
                parts = []
                for part in value:
                    part_copy = copy.copy(part)
                    part_copy.body = self._block(part.body)
                    parts.append(part_copy)
                setattr(new, name, parts)
            elif isinstance(value, ast.expr | list) and self._has_call_edit(value):
                setattr(new, name, self._edit_calls(value))
        return new

    def _has_call_edit(self, value: ast.AST | list[ast.AST]) -> bool:
        items = value if isinstance(value, list) else [value]
        return any(
            isinstance(node, ast.Call) and self.tree.span(node) in self.plan.calls
            for item in items
            if isinstance(item, ast.AST)
            for node in ast.walk(item)
        )

    def _edit_calls(self, value: ast.AST | list[ast.AST]) -> ast.AST | list[ast.AST]:
        if isinstance(value, list):
            return [self._edit_calls(item) if isinstance(item, ast.AST) else item for item in value]  # type: ignore[misc]
        applier = self

        class _Calls(ast.NodeTransformer):
            def visit_Call(self, node: ast.Call) -> ast.expr:
                span = applier.tree.span(node)
                self.generic_visit(node)
                edit = applier.plan.calls.get(span)
                return applier._edit_call(node, edit) if edit is not None else node

        # Spans are computed on the original positions, which the copy keeps.
        return _Calls().visit(copy.deepcopy(value))

    def _edit_call(self, call: ast.Call, edit: CallEdit) -> ast.Call:
        args, keywords = list(call.args), list(call.keywords)
        if edit.positional:
            picked: list[ast.expr] = []
            for ref in edit.positional:
                value = argument(ast.Call(func=call.func, args=args, keywords=keywords), ref)
                if value is None:
                    picked = []
                    break
                picked.append(value)
            if picked:
                args = [*picked, *(a for a in args if all(a is not p for p in picked))]
                keywords = [k for k in keywords if all(k.value is not p for p in picked)]
        if edit.keep_keywords is not None:
            keywords = [k for k in keywords if k.arg is None or k.arg in edit.keep_keywords]
        if edit.wrap_timeout is not None:
            keywords = [
                ast.keyword(
                    arg=k.arg, value=self._expression(edit.wrap_timeout, call, {"__value__": k.value})
                )
                if k.arg == "timeout"
                else k
                for k in keywords
            ]
        if edit.add_keyword is not None:
            keyword, template = edit.add_keyword
            if not any(k.arg == keyword for k in keywords):
                keywords.append(ast.keyword(arg=keyword, value=self._expression(template, call)))
        func = self._expression(edit.func, call) if edit.func is not None else call.func
        return ast.Call(func=func, args=args, keywords=keywords, **_position(call))

    # --- blocks ------------------------------------------------------------------------------------
    def _block(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        index = 0
        while index < len(stmts):
            original = stmts[index]
            key = self.tree.start(original)
            stmt = self._rebuilt(original)
            if key not in self.keys:
                out.append(stmt)
                index += 1
                continue
            wrap = self.plan.wraps.get(key)
            hoisted: list[ast.stmt] = []
            path: ast.expr | None = None
            if wrap is not None:
                path = self._argument(stmt, wrap.dest) if wrap.dest or isinstance(stmt, ast.With) else None
                if wrap.hoist_name is not None and wrap.obj is not None:
                    hoisted, stmt = self._hoist(stmt, wrap.obj, wrap.hoist_name, original)
            produced = self._statement_edit(key, stmt, original)
            consumed = 1
            if wrap is not None:
                followers = [self._rebuilt(s) for s in stmts[index + 1 : index + 1 + wrap.followers]]
                consumed += len(followers)
                preceders = out[len(out) - wrap.preceders :] if wrap.preceders else []
                if preceders:
                    del out[-len(preceders) :]
                produced = [*hoisted, self._guard([*preceders, *produced, *followers], wrap, path, original)]
            out.extend(
                [
                    *(
                        s
                        for i in self.plan.before.get(key, [])
                        for s in self._statements(i.template, original)
                    ),
                    *produced,
                    *(
                        s
                        for i in self.plan.after.get(key, [])
                        for s in self._statements(i.template, original)
                    ),
                ]
            )
            index += consumed
        return out

    def _statement_edit(self, key: Key, stmt: ast.stmt, original: ast.stmt) -> list[ast.stmt]:
        if key in self.plan.tests and isinstance(stmt, ast.If):
            new = copy.copy(stmt)
            new.test = self._expression(self.plan.tests[key].test, original)
            return [new]
        if key in self.plan.splits and isinstance(stmt, ast.If):
            return self._split(stmt, self.plan.splits[key], original)
        if key in self.plan.unwraps and isinstance(stmt, ast.Try):
            return list(stmt.body)
        if key in self.plan.atomics:
            return self._atomic(stmt, self.plan.atomics[key], original)
        return [stmt]

    # --- statement rewrites ------------------------------------------------------------------------
    @staticmethod
    def _call_of(stmt: ast.stmt) -> ast.Call | None:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            return stmt.value
        return None

    def _argument(self, stmt: ast.stmt, ref: ArgRef | None) -> ast.expr | None:
        if isinstance(stmt, ast.With):
            for item in stmt.items:
                if (
                    isinstance(item.context_expr, ast.Call)
                    and item.context_expr.args
                    and not isinstance(item.context_expr.args[0], ast.Starred)
                ):
                    return item.context_expr.args[0]
            return None
        call = self._call_of(stmt)
        if call is None or ref is None:
            return None
        return argument(call, ref)

    def _replace_argument(self, stmt: ast.stmt, ref: ArgRef, value: ast.expr) -> ast.stmt:
        call = self._call_of(stmt)
        assert call is not None
        old = argument(call, ref)
        new_call = ast.Call(
            func=call.func,
            args=[value if a is old else a for a in call.args],
            keywords=[ast.keyword(arg=k.arg, value=value) if k.value is old else k for k in call.keywords],
            **_position(call),
        )
        return ast.Expr(value=new_call, **_position(stmt))

    def _hoist(
        self, stmt: ast.stmt, ref: ArgRef, name: str, anchor: ast.AST
    ) -> tuple[list[ast.stmt], ast.stmt]:
        value = self._argument(stmt, ref)
        if value is None:
            return [], stmt
        assign = self._statements(f"{name} = __value__", anchor, {"__value__": value})
        return assign, self._replace_argument(
            stmt, ref, ast.Name(id=name, ctx=ast.Load(), **_position(value))
        )

    def _atomic(self, stmt: ast.stmt, edit: InlineAtomic, anchor: ast.AST) -> list[ast.stmt]:
        dest = self._argument(stmt, edit.dest)
        if dest is None:
            return [stmt]
        names = {"tmp": edit.tmp_name, "fh": edit.handle_name}
        produced: list[ast.stmt] = []
        path: ast.expr = dest
        if edit.path_name is not None:
            produced += self._statements(f"{edit.path_name} = __path__", anchor, {"__path__": dest})
            path = ast.Name(id=edit.path_name, ctx=ast.Load())
        produced += self._statements(
            '{tmp} = {os}.fspath(__path__) + ".tmp"', anchor, {"__path__": path}, names
        )
        with_stmt = self._statements('with open({tmp}, "wb") as {fh}:\n    pass', anchor, extra=names)[0]
        assert isinstance(with_stmt, ast.With)
        handle = ast.Name(id=edit.handle_name, ctx=ast.Load())
        with_stmt.body = [
            self._replace_argument(stmt, edit.dest, handle),
            *self._statements("{fh}.flush()\n{os}.fsync({fh}.fileno())", anchor, extra=names),
        ]
        write = [
            with_stmt,
            *self._statements("{os}.replace({tmp}, __path__)", anchor, {"__path__": path}, names),
        ]
        template = "try:\n    pass\nfinally:\n    if {os}.path.exists({tmp}):\n        {os}.remove({tmp})"
        cleanup = self._statements(template, anchor, extra=names)[0]
        assert isinstance(cleanup, ast.Try)
        cleanup.body = write
        produced.append(cleanup)
        return produced

    def _split(self, stmt: ast.If, edit: SplitGuard, anchor: ast.AST) -> list[ast.stmt]:
        lifted, rest = list(stmt.body[: edit.lifted]), list(stmt.body[edit.lifted :])
        if rest:
            guard = ast.If(test=self._expression(edit.main_test, anchor), body=[], orelse=[])
            _locate([guard], anchor)
            guard.body = rest  # the original statements keep their own positions
            lifted.append(guard)
        if edit.test is None:
            return lifted
        new = copy.copy(stmt)
        new.test = self._expression(edit.test, anchor)
        new.body = lifted
        return [new]

    def _guard(
        self, inner: list[ast.stmt], wrap: WrapGuard, path: ast.expr | None, anchor: ast.AST
    ) -> ast.stmt:
        binding = " as {exc}" if wrap.exc_name else ""
        nodes = {"__path__": path if path is not None else ast.Constant(value="<unknown path>")}
        handler = wrap.handler + ("\nraise" if wrap.reraise else "")
        handler = handler.replace("\n", "\n    " + ("" if wrap.test is None else "    "))
        extra = {"exc": wrap.exc_name or ""}
        if wrap.test is None:
            template = f"try:\n    pass\nexcept Exception{binding}:\n    {handler}"
            bare = self._statements(template, anchor, nodes, extra)[0]
            assert isinstance(bare, ast.Try)
            bare.body = inner
            return bare
        template = (
            f"if {wrap.test}:\n    try:\n        pass\n    except Exception{binding}:\n        {handler}"
        )
        guard = self._statements(template, anchor, nodes, extra)[0]
        assert isinstance(guard, ast.If) and isinstance(guard.body[0], ast.Try)
        guard.body[0].body = inner
        return guard


def _position(node: ast.AST) -> dict[str, int]:
    return {
        name: getattr(node, name)
        for name in ("lineno", "col_offset", "end_lineno", "end_col_offset")
        if getattr(node, name, None) is not None
    }


def apply_plan_ast(tree: Tree, plan: Plan, symbols: dict[str, str]) -> ast.Module:
    """The module `plan` turns `tree`'s module into."""
    return AstApplier(tree, plan, symbols).module()
