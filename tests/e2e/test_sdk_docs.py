"""Every ```python block of docs/sdk.md runs against the real server."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from bastion import configure
from support import ServerProcess

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_runs(
    source: str, bastion_server: ServerProcess, web_app: Any, account: Any, sign_in: Any
) -> None:
    namespace = {
        "ISSUER": bastion_server.url,
        "CLIENT_ID": bastion_server.client_id,
        "CLIENT_SECRET": bastion_server.client_secret,
        "ADMIN_CLIENT_ID": bastion_server.admin_client_id,
        "ADMIN_CLIENT_SECRET": bastion_server.admin_client_secret,
        "WEB_CLIENT_ID": web_app.client_id,
        "WEB_CLIENT_SECRET": web_app.client_secret,
        "REDIRECT_URI": web_app.redirect_uri,
        "POST_LOGOUT_URI": web_app.post_logout_uri,
        "STATE_KEY": secrets.token_urlsafe(32),
        "USERNAME": account.username,
        "PASSWORD": account.password,
        "USER_ID": account.id,
        # The user's browser: signs in at the URL, returns where it is sent back to.
        "browser_signs_in": lambda url: sign_in(url, account),
        "__name__": "sdk_doc_example",
    }
    try:
        exec(compile(source, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    finally:
        configure()
