"""An issuer with a path (``http://127.0.0.1:PORT/tenant-a``): the real server serves
discovery, the OAuth endpoints and the hosted pages under it, and the SDK signs in
through them. A proxy in front that strips the path works too (requests without it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest

from bastion import Client
from support import ServerProcess, free_port, running_server

PATH = "/tenant-a"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}{PATH}"
    data_dir: Path = tmp_path_factory.mktemp("issuer-path")
    with running_server(data_dir, None, port=port, issuer=issuer,
                        password_hash_memory_kib="8192", password_hash_time_cost="1") as s:
        yield s, issuer


def test_discovery_at_the_paths_both_specifications_give(server: Any) -> None:
    process, issuer = server
    oidc = httpx2.get(issuer + "/.well-known/openid-configuration")  # OIDC Discovery 4
    rfc8414 = httpx2.get(process.url + "/.well-known/oauth-authorization-server" + PATH)
    assert oidc.status_code == rfc8414.status_code == 200
    assert oidc.json() == rfc8414.json()
    meta = oidc.json()
    assert meta["issuer"] == issuer
    assert meta["authorization_endpoint"] == issuer + "/oauth/authorize"
    assert httpx2.get(meta["jwks_uri"]).json()["keys"]
    # Outside the path: only what a proxy that strips it would send (the same server).
    assert httpx2.get(process.url + PATH + "x/.well-known/openid-configuration"
                      ).status_code == 404


def test_the_sdk_signs_in_through_the_hosted_pages_under_the_path(
        server: Any, make_app: Callable[..., Any], account_on: Callable[..., Any],
        sign_in: Callable[..., str]) -> None:
    process, issuer = server
    app, account = make_app(process), account_on(process)
    with Client(url=issuer, client_id=app.client_id, client_secret=app.client_secret,
                redirect_uri=app.redirect_uri, state_key="k" * 43) as client:
        state, url = client.start_authorization("openid profile")
        assert url.startswith(issuer + "/oauth/authorize?")
        with httpx2.Client(follow_redirects=False, timeout=10) as browser:
            page = browser.get(url)
            assert f'action="{PATH}/login"' in page.text
            cookies = page.headers.get_list("set-cookie")
            assert cookies and all(f"Path={PATH}" in c for c in cookies), cookies
            # Named for the path too: a root issuer's cookies (Path=/) reach this path.
            assert all(c.startswith("bastion_csrf-") for c in cookies), cookies
            callback = sign_in(url, account, browser)
            names = {cookie.name for cookie in browser.cookies.jar}
            assert any(n.startswith("bastion_session-") for n in names), names
            assert not names & {"bastion_session", "bastion_csrf"}, names
        assert dict(parse_qsl(urlsplit(callback).query))["iss"] == issuer
        tokens = client.finish_authorization_response(callback, expected_state=state)
        assert tokens.id_token_claims is not None and tokens.id_token_claims["iss"] == issuer
        assert client.userinfo(tokens.access_token)["sub"] == account.id
        assert client.verify_token(tokens.access_token)["sub"] == account.id
        assert client.refresh(tokens).access_token != tokens.access_token
        back = "https://app.example/bye"  # the post-logout URI make_app registers
        logout = httpx2.get(client.logout_url(tokens, back, state="bye"))
        assert logout.status_code == 303  # a hint of ours, no session here: at once
        assert logout.headers["location"] == back + "?state=bye"
