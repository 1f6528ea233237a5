"""Named connections: ``configure(default={...}, test={...})`` and ``using=``.

Only options are stored here, validated at ``configure`` time; each ``Client``
or ``AsyncClient`` built with ``using=`` owns its own connection pool, so an
async client is never shared across event loops by accident.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ._config import Settings
from .exceptions import ConfigurationError

__all__ = ["DEFAULT", "configure", "configured", "get_settings", "resolve"]

DEFAULT = "default"

_lock = threading.Lock()
_connections: dict[str, Settings] = {}


def configure(**connections: Mapping[str, Any]) -> None:
    """Replace every named connection: ``configure(default={"url": ...}, test={...})``."""
    parsed: dict[str, Settings] = {}
    for name, options in connections.items():
        if not isinstance(options, Mapping):
            raise ConfigurationError(f"connection {name!r} must be a mapping of options")
        parsed[name] = Settings.from_options(options, name=name)
    with _lock:
        _connections.clear()
        _connections.update(parsed)


def configured() -> tuple[str, ...]:
    """The names of the configured connections."""
    with _lock:
        return tuple(_connections)


def current(name: str) -> Settings | None:
    """The settings of connection ``name`` now, or ``None`` if there is none."""
    with _lock:
        return _connections.get(name)


def get_settings(using: str | None = None) -> Settings:
    """The settings of connection ``using`` (``"default"`` when ``None``; an empty
    name is a mistake, not the default)."""
    name = DEFAULT if using is None else using
    with _lock:
        settings = _connections.get(name)
    if settings is None:
        raise ConfigurationError(
            f"no connection named {name!r}: pass option 'url' or call configure() first"
        )
    return settings


def resolve(url: str | None, using: str | None, options: Mapping[str, Any]) -> Settings:
    """Settings for a new client: explicit options over a named connection.

    ``Client(url=...)`` stands alone; ``Client()`` and ``Client(using="test")``
    read the connection, and any option passed alongside overrides it.
    """
    explicit = dict(options)
    if url is not None:
        explicit["url"] = url
    if using is None and url is not None:
        return Settings.from_options(explicit)
    base = get_settings(using)
    merged = {name: getattr(base, name) for name in Settings.__dataclass_fields__}
    # Reject unknown names before merging, so the error names the caller's typo.
    Settings.from_options({**explicit, "url": merged["url"] if url is None else url})
    merged.update(explicit)
    return Settings.from_options(merged, name=using or DEFAULT)
