"""The service's own loggers: the bare message, one a line, on stderr, apart from the root."""
from __future__ import annotations

import logging
import sys


def to_stderr(logger: logging.Logger,
              handler_class: type[logging.StreamHandler] = logging.StreamHandler) -> None:
    """Give ``logger`` (once) a stderr handler that writes each message as it is, at INFO."""
    if logger.handlers:
        return
    handler = handler_class(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
