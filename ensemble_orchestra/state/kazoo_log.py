"""kazoo's stdlib logging into twisted.logger, so its connection warnings never go to raw stderr.

kazoo logs through ``logging`` (``kazoo.client``, ``kazoo.protocol.connection``, ``kazoo.recipe.watchers``)
from its own threads; with no handler configured, Python's last-resort handler printed every "Connection
dropped" to stderr, past our output and --verbose. One handler on the ``kazoo`` logger (not propagating)
hands each record to the reactor with ``callFromThread`` and emits it there on a ``Logger`` named after the
record's logger. Which records come is still ``logging``'s level for ``kazoo`` (WARNING unless configured).
"""

from __future__ import annotations

import logging

from twisted.logger import Logger, LogLevel

from .bridge import ReactorThread

__all__ = ["KazooLogHandler", "install_kazoo_logging"]

KAZOO_LOGGER = "kazoo"

_LEVELS = (
    (logging.CRITICAL, LogLevel.critical),
    (logging.ERROR, LogLevel.error),
    (logging.WARNING, LogLevel.warn),
    (logging.INFO, LogLevel.info),
)


# kazoo warns of every dropped connection and retry while it reconnects; our layer bounds those waits and
# says in one line what failed, so these stay at info: in an agent's log, not on the CLI's terminal.
_RECONNECT_CHATTER = (
    "Connection dropped",
    "Transition to CONNECTING",
    "Failed connecting to Zookeeper",
    "Session has expired",
)


def twisted_level(levelno: int) -> LogLevel:
    """The twisted.logger level of a stdlib level number (kazoo's BLATHER, 5, is debug)."""
    for threshold, level in _LEVELS:
        if levelno >= threshold:
            return level
    return LogLevel.debug


class KazooLogHandler(logging.Handler):
    """A stdlib handler that re-emits records as twisted.logger events, in the reactor thread."""

    def __init__(self, reactor: ReactorThread) -> None:
        super().__init__()
        self.reactor = reactor

    def emit(self, record: logging.LogRecord) -> None:  # any thread
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text = f"{text}: {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            level = twisted_level(record.levelno)
            if level == LogLevel.warn and text.startswith(_RECONNECT_CHATTER):
                level = LogLevel.info
            self.reactor.callFromThread(
                Logger(namespace=record.name).emit, level, "{kazoo_message}", kazoo_message=text
            )
        except Exception:
            self.handleError(record)


def install_kazoo_logging(reactor: ReactorThread) -> KazooLogHandler:
    """Route the ``kazoo`` logger to twisted.logger through *reactor* (once per process; later calls reuse it)."""
    kazoo_logger = logging.getLogger(KAZOO_LOGGER)
    for handler in kazoo_logger.handlers:
        if isinstance(handler, KazooLogHandler):
            return handler
    handler = KazooLogHandler(reactor)
    kazoo_logger.addHandler(handler)
    kazoo_logger.propagate = False
    return handler
