"""Request ids and JSON log lines (``server/logs.py``), in process."""

from __future__ import annotations

import json
import logging

import pytest

from bastion.server.logs import REQUEST_ID, JsonFormatter, WithRequestId, uvicorn_log_config
from support import App


async def test_each_answer_carries_a_request_id(app: App) -> None:
    first = (await app.http.get("/healthz")).headers["x-request-id"]
    second = (await app.http.get("/healthz")).headers["x-request-id"]
    assert len(first) == 16 and first != second
    r = await app.http.get("/healthz", headers={"X-Request-ID": "lb-7f3a.1:x"})
    assert r.headers["x-request-id"] == "lb-7f3a.1:x"  # the caller's, when it is plain
    for hostile in ("a b", "x" * 129, "id\u00e9", "a\r\nSet-Cookie: x=1"):
        r = await app.http.get("/healthz", headers={"X-Request-ID": hostile.encode("utf-8")})
        assert r.headers["x-request-id"] != hostile and len(r.headers["x-request-id"]) == 16
    r = await app.http.post("/oauth/token", data={"grant_type": "nope"})  # the lean path too
    assert r.status_code == 400 and len(r.headers["x-request-id"]) == 16


def test_a_line_names_the_request_it_was_logged_in(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(WithRequestId())
    logging.getLogger("bastion.test").warning("outside a request")
    assert caplog.records[-1].request_id == "-"  # type: ignore[attr-defined]
    token = REQUEST_ID.set("abc")  # what RequestId does for each request
    try:
        logging.getLogger("bastion.test").warning("inside")
    finally:
        REQUEST_ID.reset(token)
    assert caplog.records[-1].request_id == "abc"  # type: ignore[attr-defined]


def test_json_lines_hold_the_fields_and_the_traceback() -> None:
    record = logging.LogRecord("bastion", logging.ERROR, __file__, 1, "mail %s failed: %s",
                               ("m1", "down"), None)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    WithRequestId().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR" and line["logger"] == "bastion"
    assert line["message"] == "mail m1 failed: down" and line["request_id"] == "-"
    assert "RuntimeError: boom" in line["error"] and line["time"].endswith("+00:00")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_uvicorn_config_tags_every_handler_and_keeps_bastions_lines(log_format) -> None:
    config = uvicorn_log_config(log_format)  # applied by the real server: e2e/test_operations
    assert all("request_id" in h["filters"] for h in config["handlers"].values())
    assert "redact_query" in config["handlers"]["access"]["filters"]
    assert config["loggers"]["bastion"]["handlers"] == ["default"]
    json_formatted = config["formatters"]["default"].get("()") is JsonFormatter
    assert json_formatted == (log_format == "json")
