"""Logging of a server process: the server's messages and its access log on stderr."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "info") -> None:
    """Log to stderr with the process id (``--workers`` interleave their lines)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s[%(process)d]: "
                                   "%(message)s")
