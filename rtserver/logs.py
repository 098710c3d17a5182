"""Structured log lines: ``key=value`` text or one JSON object per line.

Call sites pass ``extra={"fields": {...}}``; the formatter renders them.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname.lower()} {record.name} {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **(getattr(record, "fields", None) or {}),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _Context(logging.Filter):
    """Adds the same fields to every line (a worker's index)."""

    def __init__(self, fields: dict[str, object]) -> None:
        super().__init__()
        self._fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        record.fields = {**self._fields, **(getattr(record, "fields", None) or {})}
        return True


def setup(level: str, fmt: str, context: dict[str, object] | None = None) -> None:
    """Log lines to stdout; ``context``: fields every line carries."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if context:
        handler.addFilter(_Context(context))
    root = logging.getLogger("rtserver")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
