"""Structured logs: one JSON object a line on stderr, for Loki.

Pass exposure context as `extra={"image_name": ..., "day_obs": ...}`; every extra field lands in
the JSON object. Nothing here knows about secrets: they are `Secret` objects, which print as `***`.
"""
from __future__ import annotations

import logging
import sys
import time

import orjson

# Attributes every LogRecord has; everything else came from `extra=`.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "INFO", component: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    if component:
        handler.addFilter(_ComponentFilter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter at INFO (botocore credentials, RQ's per-job lines) is not for operators.
    # httpx/httpx2: the Schema Registry client's per-request lines.
    for noisy in ("botocore", "boto3", "urllib3", "rq.worker", "rq.scheduler", "werkzeug", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class _ComponentFilter(logging.Filter):
    def __init__(self, component: str):
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        return True
