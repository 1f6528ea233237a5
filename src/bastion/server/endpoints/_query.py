"""Parameters as they arrive: OAuth's query and form parameters (each at most once,
empty = absent) and the fields of the hosted pages' forms. Both refuse text that no
backend can store (``bastion.server.text``)."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_plus

from starlette.exceptions import HTTPException
from starlette.requests import Request

from bastion.oauth.errors import InvalidRequest
from bastion.server.text import storable

MAX_FIELDS = 50


def single_params(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS,
                          errors="strict")
    except UnicodeDecodeError:  # a ValueError too: first
        raise InvalidRequest(_not_utf8(query)) from None
    except ValueError:  # parse_qsl's only other one: over max_num_fields
        raise InvalidRequest(f"Too many parameters: at most {MAX_FIELDS}.") from None
    for key, value in pairs:
        if not storable(key):
            raise InvalidRequest("A parameter name holds a NUL or another character that "
                                 "cannot be stored.")
        if not storable(value):
            raise InvalidRequest(f"Parameter {key!r} holds a NUL or another character that "
                                 "cannot be stored.")
    return oauth_params(pairs)


def _not_utf8(query: str) -> str:
    """What to say of ``query``, whose percent-encoding decodes to invalid UTF-8:
    which parameter, if its name can be told."""
    for field in query.split("&"):
        raw_name, _, raw_value = field.partition("=")
        try:
            name = unquote_plus(raw_name, errors="strict")
        except UnicodeDecodeError:
            return "A parameter name is not percent-encoded UTF-8."
        try:
            unquote_plus(raw_value, errors="strict")
        except UnicodeDecodeError:
            if storable(name):
                return f"Parameter {name!r} is not percent-encoded UTF-8."
            break
    return "A parameter is not percent-encoded UTF-8."


def oauth_params(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """OAuth parameters from ``pairs``: each at most once, and (RFC 6749 section 3.1)
    one sent without a value is treated as omitted."""
    if (key := repeated(pairs)) is not None:
        raise InvalidRequest(f"Parameter {key!r} is repeated.")
    return {k: v for k, v in pairs if v != ""}


async def page_fields(request: Request) -> list[tuple[str, str]] | None:
    """The fields of a form posted to a hosted page in their order, repeats included,
    or ``None`` if the form cannot be read: too many fields, an oversized field, a
    file, or a field that is not storable text (a NUL, a lone surrogate). The page
    then gives its ordinary 400 answer, as for an expired form."""
    try:
        form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    except HTTPException:  # Starlette's refusal of a malformed or oversized form
        return None
    fields: list[tuple[str, str]] = []
    for key, value in form.multi_items():
        if not isinstance(value, str) or not storable(key) or not storable(value):
            return None
        fields.append((key, value))
    return fields


async def page_form(request: Request) -> dict[str, str] | None:
    """``page_fields`` as a dict: a repeated field keeps its last value (our own
    forms never repeat one)."""
    fields = await page_fields(request)
    return None if fields is None else dict(fields)


def repeated(fields: list[tuple[str, str]]) -> str | None:
    """The first field name that occurs twice, if any (OAuth parameters may not)."""
    seen: set[str] = set()
    for key, _ in fields:
        if key in seen:
            return key
        seen.add(key)
    return None
