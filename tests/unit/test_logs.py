"""common/logs.py: the text and JSON line formats, and the request id every line
written while serving a request carries."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from amphorae.common import logs


@pytest.fixture
def root() -> Iterator[None]:
    """logs.setup replaces the root logger's handlers: put pytest's back afterwards."""
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(level)


def test_a_json_line_has_time_level_logger_message_request_id_and_fields(root, capsys):
    logs.setup(log_format="json")
    token = logs.REQUEST_ID.set("req-1")
    try:
        logging.getLogger("amphorae.test").warning("member %s is %s", "m1", "ERROR",
                                                   extra={"load_balancer_id": "lb-1"})
    finally:
        logs.REQUEST_ID.reset(token)
    logging.getLogger("amphorae.test").info("outside any request")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "request_id",
                                  "load_balancer_id")} == {
        "level": "WARNING", "logger": "amphorae.test", "message": "member m1 is ERROR",
        "request_id": "req-1", "load_balancer_id": "lb-1"}
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert "request_id" not in second and second["message"] == "outside any request"


def test_a_json_line_carries_the_traceback(root, capsys):
    logs.setup(log_format="json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("amphorae.test").exception("it failed")
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and "ValueError: boom" in record["exception"]


def test_text_is_the_default_and_debug_leaves_sqlalchemy_quiet(root, capsys):
    logs.setup(debug=True)
    logging.getLogger("amphorae.test").debug("shown")
    logging.getLogger("sqlalchemy.engine.Engine").info("SELECT 1")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(" DEBUG amphorae.test: shown")
