"""Apply an edit plan with libcst, losslessly: only planned statements and calls change; every other
byte (comments, blank lines, quotes, tabs, CRLF) is reproduced by libcst as it was.

Statements are matched by the position of their first token and calls by their span, the same
positions the `ast` analysis computed (PositionProvider's convention: 1-based lines, character columns).
Templates are written with four-space indents and "\\n"; they are adapted to the module's own indent
and newline before parsing, so inserted code matches its surroundings.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from ckptfix.analysis.plan import CallEdit, InlineAtomic, Key, Plan, Span, SplitGuard, WrapGuard
from ckptfix.analysis.saves import ArgRef


def apply_plan(source: str, plan: Plan, symbols: dict[str, str]) -> tuple[str, set[Key | Span]]:
    """Rewrite `source`; return the new text and the keys/spans of the edits that were applied."""
    module = cst.parse_module(source)
    applier = _Applier(plan, symbols, module.config_for_parsing)
    new_module = MetadataWrapper(module, unsafe_skip_copy=True).visit(applier)
    return new_module.code, applier.applied


class _Substitute(cst.CSTTransformer):
    """Replace placeholder names (`__path__`, `__value__`) by real expressions."""

    def __init__(self, nodes: dict[str, cst.BaseExpression]) -> None:
        super().__init__()
        self.nodes = nodes

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        replacement = self.nodes.get(original_node.value)
        return replacement.deep_clone() if replacement is not None else updated_node


Statement = cst.SimpleStatementLine | cst.BaseCompoundStatement


def _arg_index(args: Sequence[cst.Arg], ref: ArgRef) -> int | None:
    index, keyword = ref
    position = 0
    for i, arg in enumerate(args):
        if arg.keyword is None and not arg.star:
            if position == index:
                return i
            position += 1
    for i, arg in enumerate(args):
        if arg.keyword is not None and arg.keyword.value == keyword:
            return i
    return None


def _no_space_equal() -> cst.AssignEqual:
    return cst.AssignEqual(
        whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
    )


class _Applier(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, plan: Plan, symbols: dict[str, str], config: cst.PartialParserConfig) -> None:
        super().__init__()
        self.plan = plan
        self.symbols = symbols
        self.config = config
        self.keys = plan.statement_keys()
        self.applied: set[Key | Span] = set()

    # --- templates -------------------------------------------------------------------------------------
    def _adapt(self, template: str, extra: dict[str, str]) -> str:
        code = template.format(**self.symbols, **extra)
        indent = str(self.config.default_indent)
        lines = []
        for line in code.split("\n"):
            stripped = line.lstrip(" ")
            depth = (len(line) - len(stripped)) // 4
            lines.append(indent * depth + stripped)
        code = "\n".join(lines)
        if not code.endswith("\n"):
            code += "\n"
        return code.replace("\n", str(self.config.default_newline))

    def _statements(
        self,
        template: str,
        nodes: dict[str, cst.BaseExpression] | None = None,
        extra: dict[str, str] | None = None,
    ) -> list[Statement]:
        module = cst.parse_module(self._adapt(template, extra or {}), config=self.config)
        statements: list[Statement] = list(module.body)
        if nodes:
            statements = [s.visit(_Substitute(nodes)) for s in statements]  # type: ignore[misc]
        return statements

    def _expression(
        self, template: str, nodes: dict[str, cst.BaseExpression] | None = None
    ) -> cst.BaseExpression:
        expr = cst.parse_expression(template.format(**self.symbols), config=self.config)
        if nodes:
            expr = expr.visit(_Substitute(nodes))  # type: ignore[assignment]
        return expr

    # --- calls -----------------------------------------------------------------------------------------
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        position = self.get_metadata(PositionProvider, original_node)
        span = (position.start.line, position.start.column, position.end.line, position.end.column)
        edit = self.plan.calls.get(span)
        if edit is None:
            return updated_node
        self.applied.add(span)
        return self._edit_call(updated_node, edit)

    def _edit_call(self, call: cst.Call, edit: CallEdit) -> cst.Call:
        args = list(call.args)
        if edit.positional:
            indexes = [_arg_index(args, ref) for ref in edit.positional]
            # Reorder unless they already are the first positional arguments: `torch.save(obj=s,
            # f=p)` has them at indexes 0 and 1 too, as keywords the new callee may not take.
            if None not in indexes and (
                indexes != list(range(len(indexes))) or any(args[i].keyword is not None for i in indexes)  # type: ignore[index]
            ):
                picked = [args[i] for i in indexes if i is not None]
                rest = [a for i, a in enumerate(args) if i not in indexes]
                args = [
                    a.with_changes(
                        keyword=None, equal=cst.MaybeSentinel.DEFAULT, comma=cst.MaybeSentinel.DEFAULT
                    )
                    for a in picked
                ] + [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in rest]
        if edit.keep_keywords is not None:
            kept = [a for a in args if a.keyword is None or a.keyword.value in edit.keep_keywords]
            if len(kept) != len(args):
                args = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in kept]
        if edit.wrap_timeout is not None:
            args = [
                a.with_changes(value=self._expression(edit.wrap_timeout, {"__value__": a.value}))
                if a.keyword is not None and a.keyword.value == "timeout"
                else a
                for a in args
            ]
        if edit.add_keyword is not None:
            name, value = edit.add_keyword
            if not any(a.keyword is not None and a.keyword.value == name for a in args):
                args = self._append_keyword(call, args, name, self._expression(value))
        changes: dict[str, object] = {"args": args}
        if edit.func is not None:
            changes["func"] = self._expression(edit.func)
        return call.with_changes(**changes)

    def _append_keyword(
        self, call: cst.Call, args: list[cst.Arg], name: str, value: cst.BaseExpression
    ) -> list[cst.Arg]:
        new = cst.Arg(value=value, keyword=cst.Name(name), equal=_no_space_equal())
        if not args:
            return [new]
        last = args[-1]
        if isinstance(last.comma, cst.Comma):
            # A trailing comma (often before a newline): the new argument takes over that comma, the
            # previous last one gets the separator its predecessor used.
            if len(args) > 1 and isinstance(args[-2].comma, cst.Comma):
                separator = args[-2].comma
            else:
                separator = cst.Comma(whitespace_after=call.whitespace_before_args)
            return [*args[:-1], last.with_changes(comma=separator), new.with_changes(comma=last.comma)]
        return [*args, new]

    # --- blocks ----------------------------------------------------------------------------------------
    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        if not self.keys:
            return updated_node
        keys = [self._key(stmt) for stmt in original_node.body]
        return updated_node.with_changes(body=self._block(keys, updated_node.body))  # type: ignore[arg-type]

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        if not self.keys:
            return updated_node
        keys = [self._key(stmt) for stmt in original_node.body]
        return updated_node.with_changes(body=self._block(keys, updated_node.body))

    def leave_SimpleStatementSuite(
        self, original_node: cst.SimpleStatementSuite, updated_node: cst.SimpleStatementSuite
    ) -> cst.BaseSuite:
        """`if c: torch.save(m, p)`: a planned statement in a one-line body becomes an indented block."""
        if len(original_node.body) != 1 or self._key(original_node.body[0]) not in self.keys:
            return updated_node
        line = cst.SimpleStatementLine(
            body=updated_node.body, trailing_whitespace=updated_node.trailing_whitespace
        )
        return cst.IndentedBlock(body=self._block([self._key(original_node.body[0])], [line]))

    def _key(self, node: cst.CSTNode) -> Key:
        start = self.get_metadata(PositionProvider, node).start
        return (start.line, start.column)

    def _block(self, keys: Sequence[Key], updated: Sequence[Statement]) -> list[Statement]:
        out: list[Statement] = []
        index = 0
        while index < len(keys):
            key = keys[index]
            stmt = updated[index]
            if key not in self.keys:
                out.append(stmt)
                index += 1
                continue
            self.applied.add(key)
            leading = list(stmt.leading_lines)
            stmt = stmt.with_changes(leading_lines=())
            wrap = self.plan.wraps.get(key)
            hoisted: list[Statement] = []
            path: cst.BaseExpression | None = None
            if wrap is not None:
                path = self._argument(stmt, wrap.dest) if wrap.dest or isinstance(stmt, cst.With) else None
                if wrap.hoist_name is not None and wrap.obj is not None:
                    hoisted, stmt = self._hoist(stmt, wrap.obj, wrap.hoist_name)
            produced: list[Statement]
            if key in self.plan.tests and isinstance(stmt, cst.If):
                produced = [stmt.with_changes(test=self._expression(self.plan.tests[key].test))]
            elif key in self.plan.splits and isinstance(stmt, cst.If):
                produced = self._split(stmt, self.plan.splits[key])
            elif key in self.plan.unwraps and isinstance(stmt, cst.Try):
                produced = list(stmt.body.body)  # type: ignore[arg-type]
            elif key in self.plan.atomics:
                produced = self._atomic(stmt, self.plan.atomics[key])
            else:
                produced = [stmt]
            consumed = 1
            if wrap is not None:
                followers = list(updated[index + 1 : index + 1 + wrap.followers])
                consumed += len(followers)
                preceders = out[len(out) - wrap.preceders :] if wrap.preceders else []
                if preceders:
                    del out[-len(preceders) :]
                    leading = [*preceders[0].leading_lines, *leading]
                    preceders[0] = preceders[0].with_changes(leading_lines=())
                produced = [*hoisted, self._guard([*preceders, *produced, *followers], wrap, path)]
            result = [
                *(s for insert in self.plan.before.get(key, []) for s in self._statements(insert.template)),
                *produced,
                *(s for insert in self.plan.after.get(key, []) for s in self._statements(insert.template)),
            ]
            result[0] = result[0].with_changes(leading_lines=[*leading, *result[0].leading_lines])
            out.extend(result)
            index += consumed
        return out

    # --- statement rewrites ----------------------------------------------------------------------------
    @staticmethod
    def _call_of(stmt: Statement) -> cst.Call | None:
        if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
            small = stmt.body[0]
            if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
                return small.value
        return None

    def _argument(self, stmt: Statement, ref: ArgRef | None) -> cst.BaseExpression | None:
        if isinstance(stmt, cst.With):  # `with open(path, "wb") as f: torch.save(x, f)`: report `path`
            for item in stmt.items:
                if isinstance(item.item, cst.Call) and item.item.args and not item.item.args[0].star:
                    return item.item.args[0].value
            return None
        call = self._call_of(stmt)
        if call is None or ref is None:
            return None
        index = _arg_index(call.args, ref)
        return call.args[index].value if index is not None else None

    def _replace_argument(self, stmt: Statement, ref: ArgRef, value: cst.BaseExpression) -> Statement:
        call = self._call_of(stmt)
        assert call is not None and isinstance(stmt, cst.SimpleStatementLine)
        index = _arg_index(call.args, ref)
        assert index is not None
        args = list(call.args)
        args[index] = args[index].with_changes(value=value)
        expr = stmt.body[0]
        assert isinstance(expr, cst.Expr)
        return stmt.with_changes(body=[expr.with_changes(value=call.with_changes(args=args))])

    def _hoist(self, stmt: Statement, ref: ArgRef, name: str) -> tuple[list[Statement], Statement]:
        value = self._argument(stmt, ref)
        if value is None:
            return [], stmt
        assign = self._statements(f"{name} = __value__", {"__value__": value})
        return assign, self._replace_argument(stmt, ref, cst.Name(name))

    def _atomic(self, stmt: Statement, edit: InlineAtomic) -> list[Statement]:
        dest = self._argument(stmt, edit.dest)
        if dest is None:
            return [stmt]
        self.applied.add(edit.key)
        names = {"tmp": edit.tmp_name, "fh": edit.handle_name}
        produced: list[Statement] = []
        path: cst.BaseExpression = dest
        if edit.path_name is not None:
            produced += self._statements(f"{edit.path_name} = __path__", {"__path__": dest})
            path = cst.Name(edit.path_name)
        produced += self._statements(
            '{tmp} = {os}.fspath(__path__) + ".tmp"', {"__path__": path}, extra=names
        )
        with_stmt = self._statements('with open({tmp}, "wb") as {fh}:\n    pass', extra=names)[0]
        assert isinstance(with_stmt, cst.With)
        body = [
            self._replace_argument(stmt, edit.dest, cst.Name(edit.handle_name)),
            *self._statements("{fh}.flush()\n{os}.fsync({fh}.fileno())", extra=names),
        ]
        write = [
            with_stmt.with_changes(body=with_stmt.body.with_changes(body=body)),
            *self._statements("{os}.replace({tmp}, __path__)", {"__path__": path}, extra=names),
        ]
        # A failed write must not leave its temp file behind (a full disk would keep it full).
        template = "try:\n    pass\nfinally:\n    if {os}.path.exists({tmp}):\n        {os}.remove({tmp})"
        cleanup = self._statements(template, extra=names)[0]
        assert isinstance(cleanup, cst.Try)
        produced.append(cleanup.with_changes(body=cleanup.body.with_changes(body=write)))
        return produced

    def _split(self, stmt: cst.If, edit: SplitGuard) -> list[Statement]:
        """`if A and main: lifted...; rest...` -> `if A: lifted...; if main: rest...` (no `A`: the
        lifted statements and the smaller guard take the `if`'s place)."""
        body: list[Statement]
        if isinstance(stmt.body, cst.SimpleStatementSuite):  # `if rank == 0: save(...)`
            body = [cst.SimpleStatementLine(body=[small]) for small in stmt.body.body]
            body[-1] = body[-1].with_changes(trailing_whitespace=stmt.body.trailing_whitespace)
        else:
            body = list(stmt.body.body)  # type: ignore[arg-type]
        self.applied.add(edit.key)
        lifted, rest = body[: edit.lifted], body[edit.lifted :]
        if rest:
            leading = rest[0].leading_lines
            rest[0] = rest[0].with_changes(leading_lines=())
            lifted.append(
                cst.If(
                    test=self._expression(edit.main_test),
                    body=cst.IndentedBlock(body=rest),
                    leading_lines=leading,
                )
            )
        if edit.test is None:
            return lifted
        block = stmt.body if isinstance(stmt.body, cst.IndentedBlock) else cst.IndentedBlock(body=[])
        return [stmt.with_changes(test=self._expression(edit.test), body=block.with_changes(body=lifted))]

    def _guard(self, inner: list[Statement], wrap: WrapGuard, path: cst.BaseExpression | None) -> Statement:
        binding = " as {exc}" if wrap.exc_name else ""
        # The path is unknown when it travels in `*args` or in an open file handle.
        nodes = {"__path__": path if path is not None else cst.SimpleString('"<unknown path>"')}
        handler = wrap.handler + ("\nraise" if wrap.reraise else "")
        handler = handler.replace("\n", "\n    " + ("" if wrap.test is None else "    "))
        if wrap.test is None:  # already guarded: only the try/except
            template = f"try:\n    pass\nexcept Exception{binding}:\n    {handler}"
            bare = self._statements(template, nodes, {"exc": wrap.exc_name or ""})[0]
            assert isinstance(bare, cst.Try)
            return bare.with_changes(body=bare.body.with_changes(body=inner))
        template = (
            f"if {wrap.test}:\n    try:\n        pass\n    except Exception{binding}:\n        {handler}"
        )
        guard = self._statements(template, nodes, {"exc": wrap.exc_name or ""})[0]
        assert isinstance(guard, cst.If) and isinstance(guard.body, cst.IndentedBlock)
        try_stmt = guard.body.body[0]
        assert isinstance(try_stmt, cst.Try)
        try_stmt = try_stmt.with_changes(body=try_stmt.body.with_changes(body=inner))
        return guard.with_changes(body=guard.body.with_changes(body=[try_stmt]))
