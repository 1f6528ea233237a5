"""Protect your own routes with the provider's access tokens (RFC 6750, RFC 9068).

``bearer`` is framework-free: the ``Principal`` a valid token stands for, the
``Guard`` that reads an ``Authorization`` header, verifies the token locally with
an ``AsyncClient`` (its JWKS cache: no request to the provider once the keys are
known) and checks the required scopes and permissions, and ``challenge``, the
``WWW-Authenticate`` value of a refusal. The framework modules are thin:

- ``fastapi``: ``require_token(scopes=..., permissions=...)``, a dependency;
- ``starlette``: ``BearerBackend``, for Starlette's ``AuthenticationMiddleware``.

Importing this package needs nothing beyond the plain install; only the
framework modules import Starlette (which FastAPI is built on).
"""
