"""Atomic checkpoint writes: the file at `path` is always either the previous checkpoint or the new one.

`torch.save` straight to the final path truncates it first: a full disk (torch raises RuntimeError,
not OSError), a crash or a SIGKILL mid-write leaves a corrupt file where the last good checkpoint
was. Writing a temp file in the same directory (same file system), fsyncing it, renaming it over the
target and fsyncing the directory makes the swap all-or-nothing and durable.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import IO, Any

from ckptfix.runtime import progress
from ckptfix.runtime.logs import get_logger

TEMP_SUFFIX = ".ckptfix-tmp"


def _describe(path: str) -> str:
    return "best checkpoint" if "best" in os.path.basename(path).lower() else "checkpoint"


def _new_file_mode(path: str) -> int:
    """The mode the file would get from a plain open(): the old file's, or 0o666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself; some file systems (and all of Windows) cannot open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: object, path: str | os.PathLike[str] | IO[bytes], **torch_save_kwargs: Any) -> None:
    """`torch.save(obj, path, **kwargs)` that never leaves a partial file at `path`.

    On any failure the temp file is removed, the previous file at `path` is untouched, and the
    original exception propagates (the caller's `except` reports it). A file object (e.g. BytesIO)
    cannot be replaced atomically and is passed straight to torch.save.

    On rank 0 of a process group, the bytes written so far are published in the store while the
    write runs (see ckptfix.runtime.progress), so the ranks waiting at the next barrier keep waiting
    while the write progresses, and give up soon after it stops.
    """
    import torch

    if not isinstance(path, (str, os.PathLike)):
        torch.save(obj, path, **torch_save_kwargs)
        return

    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    what = _describe(target)
    logger = get_logger()
    logger.info("Saving %s: %s", what, target)
    started = time.monotonic()
    from ckptfix.runtime.sync import ensure_progress_publisher

    ensure_progress_publisher()
    mode = _new_file_mode(target)
    fd, temp_path = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=TEMP_SUFFIX, dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as handle, progress.writing(target, handle) as tracked:
            torch.save(obj, tracked, **torch_save_kwargs)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_path, mode)
        os.replace(temp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise
    _fsync_directory(directory)
    size_mb = os.path.getsize(target) / 1e6
    logger.info(
        "%s saved successfully: %s (%.1f MB in %.2f s)",
        what.capitalize(),
        target,
        size_mb,
        time.monotonic() - started,
    )
