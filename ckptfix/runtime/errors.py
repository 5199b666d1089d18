"""Errors the runtime raises on every rank, worded so an operator can act on them from any rank's log."""

from __future__ import annotations


class CheckpointSyncError(RuntimeError):
    """A checkpoint barrier did not complete: a rank was late past the timeout, died, or left early.

    After this the process group is unusable (gloo breaks its connections on timeout), so the only
    sound reaction is to stop the job; the message says which barrier, how long, and which ranks.
    """

    def __init__(
        self,
        message: str,
        *,
        barrier: str,
        timeout: float,
        missing_ranks: tuple[int, ...] | None = (),
    ) -> None:
        super().__init__(message)
        self.barrier = barrier
        self.timeout = timeout
        self.missing_ranks = missing_ranks  # None: the backend could not tell


class CheckpointSaveError(RuntimeError):
    """The main process failed to write a checkpoint and the policy is `raise`.

    Raised on every rank at the same barrier, so no rank is left waiting for one that gave up.
    """

    def __init__(self, message: str, *, path: str, writer_rank: int, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.writer_rank = writer_rank
        self.reason = reason
