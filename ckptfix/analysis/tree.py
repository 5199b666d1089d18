"""Tree plumbing the rules share: parent links, character positions, statement blocks."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import TypeVar

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
N = TypeVar("N", bound=ast.AST)
LOOPS = (ast.For, ast.AsyncFor, ast.While)
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
# Statement blocks a compound statement owns, by field name.
BLOCK_FIELDS = ("body", "orelse", "finalbody")

_OTHER_LINE_BREAKS = re.compile("[\f\v\x1c\x1d\x1e\x85\u2028\u2029]")

Pos = tuple[int, int]  # (1-based line, 0-based character column): libcst PositionProvider's convention


# Fields that never lead to a node a rule needs: identifiers, flags, numbers, and the context and
# operator singletons (`ctx`, `op`, `ops`).
_LEAF_FIELDS = frozenset(
    {"ctx", "op", "ops", "id", "attr", "arg", "name", "asname", "module", "level", "kind", "type_comment"}
    | {"simple", "conversion", "is_async"}
)
_child_fields: dict[type, tuple[str, ...]] = {}
# Types that share one list with another type (`Tree.imports`, `Tree.functions`).
_BUCKETS: dict[type, type] = {ast.ImportFrom: ast.Import, ast.AsyncFunctionDef: ast.FunctionDef}


def _node_fields(cls: type) -> tuple[str, ...]:
    if issubclass(cls, ast.expr_context | ast.boolop | ast.operator | ast.unaryop | ast.cmpop):
        return ()
    if cls is ast.Constant:
        return ()
    return tuple(name for name in cls._fields if name not in _LEAF_FIELDS)  # type: ignore[attr-defined]


class Tree:
    """An `ast` module plus the lookups every rule needs, built once per file."""

    def __init__(self, source: str, module: ast.Module) -> None:
        self.source = source
        self.module = module
        self.lines = source.splitlines(keepends=True)
        # One walk, shared by every rule: all nodes (parents before children), parent links, and the
        # nodes of each type, so that a rule looking for one kind of node never walks the rest.
        # Contexts and operators (Load, Add, Eq, ...) are shared leaves no rule looks at: leaving them
        # out, with the fields that only hold names and numbers, makes the walk about a third shorter.
        self.nodes: list[ast.AST] = []
        self.parent: dict[int, ast.AST] = {}
        self._by_type: dict[type, list[ast.AST]] = {}
        parent = self.parent
        nodes = self.nodes
        by_type = self._by_type
        buckets: dict[type, list[ast.AST]] = {}  # each node type's list in by_type
        stack: list[ast.AST] = [module]
        AST = ast.AST
        child_fields = _child_fields
        while stack:
            node = stack.pop()
            nodes.append(node)
            cls = type(node)
            fields = child_fields.get(cls)
            if fields is None:
                fields = child_fields[cls] = _node_fields(cls)
            bucket = buckets.get(cls)
            if bucket is None:
                bucket = buckets[cls] = by_type.setdefault(_BUCKETS.get(cls, cls), [])
            bucket.append(node)
            for name in fields:
                value = getattr(node, name, None)
                if type(value) is list:
                    for item in value:
                        if isinstance(item, AST):
                            parent[id(item)] = node
                            stack.append(item)
                elif isinstance(value, AST):
                    parent[id(value)] = node
                    stack.append(value)
        self._segment_lines: list[str] | None = None

    @property
    def calls(self) -> list[ast.Call]:
        return self.of_type(ast.Call)

    def of_type(self, cls: type[N]) -> list[N]:
        """The nodes of one type, in the order of `nodes` (not for the types `imports` and `functions`
        give: those come in one list each)."""
        return self._by_type.get(cls, [])  # type: ignore[return-value]

    @property
    def imports(self) -> list[ast.Import | ast.ImportFrom]:
        """Both kinds of import in one list, in the order of `nodes` (Names keeps that order)."""
        return self._by_type.get(ast.Import, [])  # type: ignore[return-value]

    @property
    def functions(self) -> list[FunctionNode]:
        """Both kinds of function in one list, in the order of `nodes` (rules report in that order)."""
        return self._by_type.get(ast.FunctionDef, [])  # type: ignore[return-value]

    def block_of(self, stmt: ast.stmt) -> tuple[list[ast.stmt], int]:
        """The statement list holding `stmt` and its index there (([], -1) for the module node)."""
        owner = self.parent.get(id(stmt))
        if owner is None:
            return [], -1
        for block in statement_blocks(owner):
            for index, item in enumerate(block):
                if item is stmt:
                    return block, index
        return [], -1

    # --- positions -------------------------------------------------------------------------------------
    def char_col(self, line: int, byte_col: int) -> int:
        """`ast` columns count UTF-8 bytes; libcst and editors count characters."""
        if line - 1 >= len(self.lines):
            return byte_col
        text = self.lines[line - 1]
        if text.isascii():
            return byte_col
        return len(text.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))

    def start(self, node: ast.AST) -> Pos:
        return (node.lineno, self.char_col(node.lineno, node.col_offset))  # type: ignore[attr-defined]

    def span(self, node: ast.AST) -> tuple[int, int, int, int]:
        """(line, col, end line, end col) in characters: the key of an expression edit."""
        line, col = self.start(node)
        end_line = node.end_lineno  # type: ignore[attr-defined]
        end_col = self.char_col(end_line, node.end_col_offset)  # type: ignore[attr-defined]
        return (line, col, end_line, end_col)

    def text(self, node: ast.AST) -> str:
        """ast.get_source_segment, from lines split once: it splits the whole source (a slow Python
        loop) on every call."""
        lines = self._segment_lines
        if lines is None:
            # The parser breaks lines at \r, \n and \r\n only; str.splitlines also at \f, \v,
            # \x1c-\x1e, \x85, \u2028 and \u2029. Without those, both give the same lines.
            lines = self._segment_lines = [] if _OTHER_LINE_BREAKS.search(self.source) else self.lines
        if not lines:
            return ast.get_source_segment(self.source, node) or ""
        try:
            first, last = node.lineno - 1, node.end_lineno  # type: ignore[attr-defined]
            start, end = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
        except AttributeError:
            return ""
        if last is None or end is None:
            return ""
        last -= 1
        if first == last:
            return lines[first].encode()[start:end].decode()
        head, tail = lines[first].encode()[start:].decode(), lines[last].encode()[:end].decode()
        return "".join([head, *lines[first + 1 : last], tail])

    # --- structure -------------------------------------------------------------------------------------
    def ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        current = self.parent.get(id(node))
        while current is not None:
            yield current
            current = self.parent.get(id(current))

    def statement(self, node: ast.AST) -> ast.stmt:
        """The innermost statement containing `node` (itself if it is one)."""
        current: ast.AST = node
        while not isinstance(current, ast.stmt):
            current = self.parent[id(current)]
        return current

    def function(self, node: ast.AST) -> FunctionNode | None:
        """The function whose body runs `node` (None at module level and in class bodies)."""
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef):
                return ancestor
            if isinstance(ancestor, ast.Lambda | ast.ClassDef):
                return None
        return None

    def enclosing_statements(self, node: ast.AST) -> Iterator[ast.stmt]:
        """Statements from the innermost containing `node` outwards, stopping at the function."""
        stmt = self.statement(node)
        while True:
            yield stmt
            parent = self.parent.get(id(stmt))
            if parent is None or isinstance(parent, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef):
                return
            if isinstance(parent, ast.ClassDef | ast.Lambda):
                return
            while not isinstance(parent, ast.stmt):
                parent = self.parent[id(parent)]
            stmt = parent

    def alone_on_line(self, stmt: ast.stmt) -> bool:
        """True when no other statement shares the statement's lines (`a = 1; torch.save(...)`). The
        one-line body of a compound statement (`if c: torch.save(...)`) is alone: the rewriter turns it
        into an indented block."""
        block, index = self.block_of(stmt)
        if index < 0:
            return False
        if index > 0 and block[index - 1].end_lineno == stmt.lineno:
            return False
        return not (index + 1 < len(block) and block[index + 1].lineno == stmt.end_lineno)

    def line_start(self, stmt: ast.stmt) -> ast.stmt:
        """The first statement of the line `stmt` is on (`import a; import b` -> `import a`)."""
        block, index = self.block_of(stmt)
        while index > 0 and block[index - 1].end_lineno == block[index].lineno:
            index -= 1
        return block[index] if index >= 0 else stmt


def statement_blocks(node: ast.AST) -> list[list[ast.stmt]]:
    """The statement lists directly owned by `node` (bodies, else, finally, handlers, match cases)."""
    blocks: list[list[ast.stmt]] = []
    for name in BLOCK_FIELDS:
        value = getattr(node, name, None)
        if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
            blocks.append(value)
    if isinstance(node, ast.Try | ast.TryStar):
        blocks.extend(handler.body for handler in node.handlers)
    if isinstance(node, ast.Match):
        blocks.extend(case.body for case in node.cases)
    return blocks


def walk_local(node: ast.AST) -> Iterator[ast.AST]:
    """Like ast.walk, but does not descend into nested functions, lambdas or classes (and, like
    Tree.nodes, skips contexts and operators)."""
    stack = _children(node)
    while stack:
        current = stack.pop()
        yield current
        if not isinstance(current, SCOPES):
            stack.extend(_children(current))


def _children(node: ast.AST) -> list[ast.AST]:
    """The child nodes of `node` in ast.iter_child_nodes order, less contexts and operators."""
    fields = _child_fields.get(type(node))
    if fields is None:
        fields = _child_fields[type(node)] = _node_fields(type(node))
    children: list[ast.AST] = []
    for name in fields:
        value = getattr(node, name, None)
        if type(value) is list:
            children.extend(item for item in value if isinstance(item, ast.AST))
        elif isinstance(value, ast.AST):
            children.append(value)
    return children


def exits(stmt: ast.stmt) -> list[ast.stmt]:
    """The statements by which control leaves `stmt` early: its `return`s and `raise`s, and the
    `break`s and `continue`s that leave it (not those of a loop inside it). Nested functions and
    classes are not searched; a definition runs none of its body."""
    found: list[ast.stmt] = []
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return found

    def visit(node: ast.AST, in_loop: bool) -> None:
        loop_exit = isinstance(node, ast.Break | ast.Continue) and not in_loop
        if isinstance(node, ast.Return | ast.Raise) or loop_exit:
            found.append(node)  # type: ignore[arg-type]
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, SCOPES):
                visit(child, in_loop or isinstance(node, LOOPS))

    visit(stmt, False)
    return found
