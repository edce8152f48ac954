"""One structlog set-up for every process of the project.

JSON lines when stderr is not a terminal (containers, CI, log shippers), a readable
console renderer when it is. Modules call ``structlog.get_logger()`` and bind key-values.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

from detector.errors import ConfigError

__all__ = ["LIBRDKAFKA_LOG", "LibrdkafkaLog", "LogFormat", "configure_logging"]

LogFormat = Literal["auto", "json", "console"]


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto") -> None:
    """Configure structlog (and the stdlib root logger) for this process.

    Args:
        level: minimum level name, e.g. ``"INFO"`` or ``"DEBUG"``.
        fmt: ``"json"``, ``"console"``, or ``"auto"`` (console on a tty, JSON otherwise).
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"unknown log level {level!r}")
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=True)
        if use_console
        else structlog.processors.JSONRenderer()
    )
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if not use_console:
        processors.append(structlog.processors.dict_tracebacks)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # No caching: a module-level logger used once would keep this configuration (and this
        # stderr) for good, even after a later configure(); logs are per batch, so the
        # re-binding costs nothing that shows.
        cache_logger_on_first_use=False,
    )
    _route_stdlib(numeric, processors, renderer)


class _StdlibHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root logger's handler that :func:`configure_logging` installs (and replaces)."""


def _route_stdlib(
    level: int, processors: list[structlog.typing.Processor], renderer: structlog.typing.Processor
) -> None:
    """Render records of stdlib loggers (libraries: absl, TensorFlow's Python side, Python
    warnings) like structlog's own events, so stderr stays one JSON object per line."""
    handler = _StdlibHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *processors],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn(...) of libraries: a log event, not a raw line


class LibrdkafkaLog:
    """confluent-kafka's ``logger`` setting: librdkafka's own lines as structlog events.

    Without it librdkafka writes ``%3|1795...|FAIL|rdkafka#producer-1| ...`` straight to stderr,
    outside the JSON log stream. confluent-kafka calls ``log(level, "%s [%s] %s", facility,
    client name, text)`` from the client's poll/consume calls.
    """

    def __init__(self) -> None:
        self._log = structlog.get_logger("librdkafka")

    def log(self, level: int, msg: str, *args: object) -> None:
        if msg == "%s [%s] %s" and len(args) == 3:
            facility, client, text = (str(a) for a in args)
        else:
            facility, client, text = "", "", msg % args if args else msg
        self._log.log(level, "librdkafka", facility=facility, client=client, message=text)


LIBRDKAFKA_LOG = LibrdkafkaLog()
