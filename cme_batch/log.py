"""Logging: structlog configured once. JSON lines for the journal, readable lines on a terminal.

Logs go to standard error (which systemd also sends to the journal), so that a command's own
output on standard output, such as `--format json`, stays clean for scripts.

Pupils appear in logs only by internal id or case reference. ``bind_run`` attaches a run id
(and the stage) to every line of one run; ``cme_batch.app.new_run_id`` makes it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_configured = False


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's root logger. Safe to call again."""
    global _configured, _last
    _last = (level, fmt, stream)
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (structlog.processors.JSONRenderer(sort_keys=True) if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,  # before the filters: a traceback's text is checked too
        *extra_processors,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_library_lines)  # the same object each time: added once
    _configured = True


class _LibraryLines(logging.Filter):
    """Libraries' own log lines (SQLAlchemy, urllib3...) bypass structlog, and so its filter:
    each is checked here against the pupils' identities (``cme_batch.logfilter.scrub``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from cme_batch.logfilter import scrub

        text = record.getMessage()
        clean = scrub(text)
        if clean != text:
            record.msg, record.args = clean, ()
        if record.exc_info:  # a traceback's text can quote a row too
            trace = logging.Formatter().formatException(record.exc_info)
            if scrub(trace) != trace:
                record.exc_info, record.exc_text = None, None
                record.msg = f"{record.msg} (its traceback named a pupil and was withheld)"
        return True


_library_lines = _LibraryLines()


#: Processors inserted before rendering (the personal-data filter, ``cme_batch.logfilter``).
extra_processors: list[Any] = []
_last: tuple[str, str, TextIO | None] = ("info", "auto", None)


def reconfigure() -> None:
    """Apply a change to ``extra_processors`` with the settings last configured."""
    configure(*_last)


def bind_run(run_id: str, **kw: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(run_id=run_id, **kw)


def get(name: str | None = None) -> Any:
    if not _configured:
        configure()
    return structlog.get_logger(name)
