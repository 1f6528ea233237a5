"""Query and form parameters as OAuth wants them: each at most once, empty = absent."""

from __future__ import annotations

from urllib.parse import parse_qsl

from bastion.oauth.errors import InvalidRequest

MAX_FIELDS = 50


def single_params(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS,
                          errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("Malformed parameters.") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise InvalidRequest(f"Parameter {key!r} is repeated.")
        if "\x00" in value:
            raise InvalidRequest(f"Parameter {key!r} is malformed.")
        params[key] = value
    # RFC 6749 section 3.1: parameters sent without a value are treated as omitted.
    return {k: v for k, v in params.items() if v != ""}
