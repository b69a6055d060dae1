"""The library's loggers: structlog's key-value API on top of the standard ``logging`` module.

sleapflow never configures structlog globally (that belongs to the program that imports it) and
never prints log lines itself: every line goes to the ``logging`` logger of the module that emits
it (``sleapflow.<module>``). So a program controls sleapflow's logs the ordinary way
(``logging.getLogger("sleapflow").setLevel(logging.ERROR)``, handlers, ``caplog`` in tests); with
no configuration at all, Python shows warnings and errors on stderr and nothing on stdout. The
``sleapflow`` command installs its own stderr handler (:func:`configure_cli_logging`).

Each record's message is the rendered line (``event key=value ...``); the structured fields are on
the record too, as ``record.sleapflow`` (a dict with ``event``, ``log_level`` and the key-values).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ("FIELDS_ATTRIBUTE", "configure_cli_logging", "fields_of", "get_logger")

#: The ``LogRecord`` attribute that carries a record's structured fields.
FIELDS_ATTRIBUTE = "sleapflow"

_render_line = structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)


_LEVEL_NAMES = {"warn": "warning", "exception": "error", "fatal": "critical"}


def _to_logging_call(logger: Any, method: str,
                     event_dict: MutableMapping[str, Any]) -> tuple[tuple[str], dict[str, Any]]:
    """The last processor: a rendered message, with the fields kept on the record (the level is
    the record's own, so the message does not repeat it)."""
    fields = {**event_dict, "log_level": _LEVEL_NAMES.get(method, method)}
    return (_render_line(logger, method, dict(event_dict)),), {"extra": {FIELDS_ATTRIBUTE: fields}}


def get_logger(name: str) -> Any:
    """A structlog logger that writes through ``logging.getLogger(name)``."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[structlog.stdlib.filter_by_level, _to_logging_call],
        cache_logger_on_first_use=True,
    )


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    """The structured fields of a record from :func:`get_logger` (empty for any other record)."""
    return getattr(record, FIELDS_ATTRIBUTE, {})


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (tests and GUIs replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_cli_logging(level: int) -> None:
    """The command line's set-up: sleapflow's records at ``level`` and above, one line each on
    stderr (``HH:MM:SS [level] event key=value``); stdout stays for what a command prints."""
    logger = logging.getLogger("sleapflow")
    for handler in [h for h in logger.handlers if isinstance(h, _CurrentStderrHandler)]:
        logger.removeHandler(handler)
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)-7s] %(message)s",
                                           datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)
    # The command owns its output: a root handler that a dependency installed (Ray does) must not
    # print each line a second time.
    logger.propagate = False
