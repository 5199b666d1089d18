"""Suppression comments: `# ckptfix: ignore`, `# ckptfix: ignore[CKP001,CKP002]`, `# noqa: CKP001`
(a bare `# noqa` suppresses everything, as in flake8 and ruff), on any line of the statement or alone
on the line just above it."""

from __future__ import annotations

import io
import re
import tokenize

_IGNORE = re.compile(r"#\s*ckptfix:\s*ignore(?:\[([^\]]*)\])?", re.IGNORECASE)
_NOQA = re.compile(r"#\s*noqa(?::\s*([A-Za-z0-9, ]+))?", re.IGNORECASE)

# line -> codes suppressed there (None: all codes)
Table = dict[int, frozenset[str] | None]


class Suppressions:
    def __init__(self, source: str) -> None:
        self.table: Table = {}
        self.comment_only: set[int] = set()
        if "ckptfix" not in source and "noqa" not in source:
            return
        try:
            comments = [
                (tok.start[0], tok.string, tok.line)
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT
            ]
        except (tokenize.TokenError, SyntaxError):
            comments = [
                (n, line[line.index("#") :], line)
                for n, line in enumerate(source.splitlines(), 1)
                if "#" in line
            ]
        for line, text, physical in comments:
            codes = _codes(text)
            if codes is not None and not codes:
                continue
            self.table[line] = codes
            if physical.lstrip().startswith("#"):
                self.comment_only.add(line)

    def suppressed(self, code: str, first: int, last: int) -> bool:
        def hit(line: int) -> bool:
            if line not in self.table:
                return False
            codes = self.table[line]
            return codes is None or code in codes

        if any(hit(line) for line in range(first, last + 1)):
            return True
        return first - 1 in self.comment_only and hit(first - 1)


def _codes(comment: str) -> frozenset[str] | None:
    """Codes a comment suppresses: a set (empty when it suppresses nothing of ours), None for all."""
    match = _IGNORE.search(comment)
    if match is not None:
        if match.group(1) is None:
            return None
        return frozenset(code.strip().upper() for code in match.group(1).split(",") if code.strip())
    match = _NOQA.search(comment)
    if match is not None:
        if match.group(1) is None:
            return None
        codes = frozenset(
            c.strip().upper() for c in match.group(1).split(",") if c.strip().upper().startswith("CKP")
        )
        return codes
    return frozenset()
