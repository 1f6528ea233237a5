"""Request ids and JSON log lines (``server/logs.py``), in process."""

from __future__ import annotations

import json
import logging
from typing import Any

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


async def test_an_unhandled_error_is_logged_with_the_id_its_answer_carries(
        api: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user quoting the X-Request-ID of a 500 leads the operator to its traceback."""
    caplog.handler.addFilter(WithRequestId())
    storage = api.app.ctx.storage

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(storage, "search_users", broken)
    r = await api.app.http.get("/api/v1/users", headers={"X-Request-ID": "quoted-500"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "quoted-500"
    assert r.headers["content-type"] == "application/problem+json"
    (record,) = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert record.request_id == "quoted-500"  # type: ignore[attr-defined]
    assert "GET /api/v1/users" in record.getMessage() and record.exc_info is not None


async def test_a_lost_audit_row_is_logged_without_the_login_typed(
        caplog: pytest.LogCaptureFixture) -> None:
    """The target of a failed sign-in is the login as typed: personal data, and a line
    break in it would forge a log line."""
    from bastion.server.services import audit

    class Down:
        async def add_event(self, _event: Any) -> None:
            raise RuntimeError("the database went away")

    typed = "zoe@example.com\nERROR: forged line"
    await audit.record(Down(), audit.Actor(None, "anonymous", "web", "198.51.100.7"),  # type: ignore[arg-type]
                       "login.failure", typed)
    (record,) = caplog.records
    assert record.getMessage() == ("could not record audit event login.failure by "
                                   "anonymous 198.51.100.7")
    assert "zoe" not in caplog.text and "forged" not in caplog.text


async def test_an_app_that_answers_nothing_gets_a_500_from_request_id(
        caplog: pytest.LogCaptureFixture) -> None:
    import httpx2

    from bastion.server.logs import RequestId

    async def crashing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("before any answer")

    caplog.handler.addFilter(WithRequestId())
    transport = httpx2.ASGITransport(app=RequestId(crashing))
    async with httpx2.AsyncClient(transport=transport, base_url="http://id.test") as http:
        r = await http.get("/a%0AINFO: forged", headers={"X-Request-ID": "q-1"})
    assert (r.status_code, r.headers["x-request-id"]) == (500, "q-1")
    (record,) = caplog.records
    assert record.request_id == "q-1"  # type: ignore[attr-defined]
    assert record.getMessage() == "unhandled error in GET /a%0AINFO%3A%20forged"
