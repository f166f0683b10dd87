"""JSON logs: one object a line, with the `extra=` fields."""
from __future__ import annotations

import io
import json
import logging

import pytest
from dtm.common import logs
from dtm.common.settings import Secret


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_formatter_writes_one_object_a_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("dtm.test.logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("exposure decided\nwith a newline", extra={
            "image_name": "MC_O_20251203_000123", "day_obs": "2025-12-03", "late_files": ["a", "b"],
            "password": Secret("hunter2")})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed", extra={"image_name": "MC_O_20251203_000124"})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["message"] == "exposure decided\nwith a newline"
    assert first["level"] == "warning" and first["logger"] == "dtm.test.logs"
    assert first["image_name"] == "MC_O_20251203_000123" and first["day_obs"] == "2025-12-03"
    assert first["late_files"] == ["a", "b"]
    assert first["time"].endswith("Z") and len(first["time"]) == len("2025-12-04T05:12:35.318Z")
    assert "hunter2" not in lines[0]
    for internal in ("args", "msg", "levelno", "pathname", "exc_info", "thread"):
        assert internal not in first
    assert second["image_name"] == "MC_O_20251203_000124"
    assert "RuntimeError: boom" in second["exception"]


def test_configure_adds_the_component(capsys, restore_root_logger):
    logs.configure("INFO", component="worker")
    logging.getLogger("dtm.test.configure").info("hello", extra={"day_obs": "2025-12-03"})
    logging.getLogger("dtm.test.configure").debug("not shown")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["component"] == "worker" and entry["day_obs"] == "2025-12-03" and entry["message"] == "hello"
