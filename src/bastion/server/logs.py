"""Logging that keeps secrets out: request lines have their query values redacted
(a sign-in link's token, a code, a state) before the access log writes them."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

_QUERY_VALUE = re.compile(r"([?&][^=&\s]+=)[^&\s]*")


def redact(text: str) -> str:
    return _QUERY_VALUE.sub(r"\1***", text)


class RedactQuery(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access records carry (client, method, path with query, version, status)
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = redact(str(args[2]))
            record.args = tuple(args)
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging setup with the access log redacted."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": RedactQuery}
    config["handlers"]["access"].setdefault("filters", []).append("redact_query")
    return config
