"""Parameters as they arrive: OAuth's query and form parameters (each at most once,
empty = absent) and the fields of the hosted pages' forms. Both refuse text that no
backend can store (``bastion.server.text``)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request

from bastion.oauth.errors import InvalidRequest
from bastion.server.text import storable

MAX_FIELDS = 50


def single_params(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS,
                          errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("Malformed parameters.") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if not storable(key):
            raise InvalidRequest("Malformed parameters.")
        if key in params:
            raise InvalidRequest(f"Parameter {key!r} is repeated.")
        if not storable(value):
            raise InvalidRequest(f"Parameter {key!r} is malformed.")
        params[key] = value
    # RFC 6749 section 3.1: parameters sent without a value are treated as omitted.
    return {k: v for k, v in params.items() if v != ""}


async def page_form(request: Request) -> dict[str, str] | None:
    """The fields of a form posted to a hosted page (a repeated field keeps its last
    value), or ``None`` if the form cannot be read: too many fields, an oversized
    field, a file, or a field that is not storable text (a NUL, a lone surrogate).
    The page then gives its ordinary 400 answer, as for an expired form."""
    try:
        form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    except HTTPException:  # Starlette's refusal of a malformed or oversized form
        return None
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str) or not storable(key) or not storable(value):
            return None
        fields[key] = value
    return fields
