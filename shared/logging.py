"""Structured logs: one JSON object a line. Never log a plain ID number."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record and its ``extra`` fields as a single JSON line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["error"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


class _LogFileHandler(logging.FileHandler):
    """A log file opened by :func:`configure_logging` (closed again when it is replaced)."""


def configure_logging(
    service: str,
    level: str = "INFO",
    *,
    console_level: str | None = None,
    log_file: Path | None = None,
) -> None:
    """JSON log lines: records at ``level`` and above, to stderr and to ``log_file``.

    ``console_level`` raises the bar for stderr alone: ``returnloop up`` passes WARNING
    and a file, so a person at the console sees warnings and errors while the file
    keeps everything. Without either, this is the services' stderr-only set-up.
    """
    threshold = _level_number(level)
    formatter = JsonFormatter(service)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    handlers: list[logging.Handler] = [console]
    if console_level is not None:
        console.setLevel(_level_number(console_level))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = _LogFileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(formatter)
        handlers.append(file_handler)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, _LogFileHandler):
            old.close()
    root.handlers[:] = handlers
    root.setLevel(threshold)
    for noisy in ("aiokafka", "kafka", "faust", "mode", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, threshold))


def _level_number(name: str) -> int:
    try:
        return logging.getLevelNamesMapping()[name.upper()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}") from None
