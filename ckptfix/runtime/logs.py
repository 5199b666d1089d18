"""The runtime's logger: every record carries the rank, in its text and as `record.rank`.

Training scripts often never configure logging, and Python then drops INFO records; the guide's
"saving / saved / final synchronization completed" lines are the operator's evidence, so the runtime
attaches one stderr handler of its own unless the application configured logging itself.
Set CKPTFIX_LOG_LEVEL (e.g. WARNING) to quieten it.
"""

from __future__ import annotations

import logging
import os
import sys

LOG_LEVEL_ENV = "CKPTFIX_LOG_LEVEL"
_LOGGER_NAME = "ckptfix.runtime"


class _RankFilter(logging.Filter):
    """Stamps the current global rank onto each record and into its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ckptfix.runtime.ranks import global_rank

        rank = global_rank()
        record.rank = rank
        if not getattr(record, "_ckptfix_prefixed", False):
            record.msg = f"[rank {rank}] {record.msg}"
            record._ckptfix_prefixed = True
        return True


def get_logger() -> logging.Logger:
    """The configured runtime logger (configured once, on first use)."""
    logger = logging.getLogger(_LOGGER_NAME)
    if not getattr(logger, "_ckptfix_configured", False):
        logger.addFilter(_RankFilter())
        level = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
        if level:
            logger.setLevel(level)
        if not logging.getLogger().handlers and not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("ckptfix %(levelname)s %(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
            if not level:
                logger.setLevel(logging.INFO)
        logger._ckptfix_configured = True  # type: ignore[attr-defined]
    return logger
