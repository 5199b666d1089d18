"""Reading a source file exactly and writing it back safely.

A rewrite must change only what the codemod changed: the encoding (PEP 263 cookie or BOM), the
newline style and the file mode survive, and the write is all or nothing (temp file in the same
directory, then os.replace), so an interrupted run or a full disk never leaves half a file. A file
that someone changed while ckptfix was working is left alone rather than clobbered.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import stat
from dataclasses import dataclass


class FileError(Exception):
    """A per-file problem to report in one line; the run goes on with the other files."""


@dataclass(frozen=True)
class SourceFile:
    path: str
    data: bytes
    text: str
    encoding: str  # a codec name; "utf-8-sig" when the file starts with a BOM


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except IsADirectoryError:
        raise FileError("is a directory, not a Python file") from None
    except OSError as exc:
        raise FileError(f"cannot read: {exc.strerror or exc}") from None


def decode(path: str, data: bytes) -> SourceFile:
    """Decode as Python itself would: BOM, then a PEP 263 coding cookie, then UTF-8."""
    if b"\0" in data:
        raise FileError("contains NUL bytes: not Python source (Python refuses to compile it too)")
    second_newline = data.find(b"\n", data.find(b"\n") + 1)
    first_two_lines = data if second_newline < 0 else data[:second_newline]
    if not data.startswith(codecs.BOM_UTF8) and b"coding" not in first_two_lines:
        encoding = "utf-8"  # the common case, without tokenize's overhead
    else:
        import io
        import tokenize

        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError as exc:
            raise FileError(f"bad encoding declaration: {exc.msg}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileError(
            f"not valid {encoding} (byte {data[exc.start]:#04x} on line {line}); "
            "declare the encoding with a `# -*- coding: ... -*-` line"
        ) from None
    return SourceFile(path, data, text, encoding)


def _keep_newlines(original: str, new: str) -> str:
    """Lines a codemod inserts into a CRLF file get CRLF too (a lone `\\n` would mix styles)."""
    if "\r\n" in original and re.search(r"(?<!\r)\n", original) is None:
        return re.sub(r"(?<!\r)\n", "\r\n", new)
    return new


def encode(source: SourceFile, new_text: str) -> bytes:
    new_text = _keep_newlines(source.text, new_text)
    try:
        return new_text.encode(source.encoding)
    except UnicodeEncodeError as exc:
        raise FileError(f"the rewrite cannot be encoded as {source.encoding}: {exc.reason}") from None


def _is_read_only(st: os.stat_result) -> bool:
    # Mode bits, not os.access: root may write anything, but a read-only file says "do not touch".
    return not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def write_back(source: SourceFile, new_text: str) -> None:
    """Replace the file's content atomically, unless it changed since `source` was read.

    Symbolic links are written through (the link stays a link). The last check and the replace are
    not one atomic step (no portable way exists), but the window is microseconds, not the minutes a
    run over a large tree takes.
    """
    data = encode(source, new_text)
    target = os.path.realpath(source.path)
    try:
        st = os.stat(target)
    except OSError as exc:
        raise FileError(f"cannot write: {exc.strerror}") from None
    if _is_read_only(st):
        raise FileError("file is read-only; not rewritten")
    import tempfile  # with shutil, bz2 and lzma: only paid for by runs that write

    directory, name = os.path.split(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".ckptfix-tmp", dir=directory)
    except OSError as exc:
        raise FileError(f"cannot write a temporary file next to it: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            os.chown(tmp, st.st_uid, st.st_gid)
        if read_bytes(target) != source.data:
            raise FileError("changed on disk while ckptfix was working on it; not rewritten")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise FileError(f"cannot write: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def unified_diff(path: str, old: str, new: str) -> str:
    """A diff `git apply` and `patch -p1` accept, so a reviewed diff can be applied as it is. An
    absolute path under the working directory is shown relative to it (`a/train.py`, not
    `a//home/me/train.py`, which `patch -p1` would turn into an absolute path)."""
    import difflib

    if os.path.isabs(path):
        relative = os.path.relpath(path)
        if not relative.startswith(os.pardir):
            path = relative
    posix = path.replace(os.sep, "/")
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{posix}", f"b/{posix}"
    )
    out = []
    for line in lines:
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        out.append(line)
    return "".join(out)
