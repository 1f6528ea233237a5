"""Waits and lifetimes shown to people read as English: "1 second", "2 seconds"."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from bastion.server.services import outbox
from bastion.server.services.clients import create_client
from bastion.server.services.login import TooManyAttempts
from bastion.server.services.throttle import Blocked
from bastion.server.settings import Settings
from support import App, hidden_fields


@pytest.mark.parametrize(("wait", "says"), [(1, "1 second."), (2, "2 seconds."),
                                            (61, "61 seconds.")])
def test_the_sign_in_throttle_names_its_wait(wait: int, says: str) -> None:
    message = str(TooManyAttempts(Blocked(wait, True, "acct:alice")))
    assert message.endswith(f"Try again in {says}"), message


@pytest.mark.parametrize("template", ["sign_in", "email_change"])
@pytest.mark.parametrize(("minutes", "says"), [(1, "1 minute."), (15, "15 minutes.")])
def test_a_links_mail_names_its_lifetime(template: str, minutes: int, says: str) -> None:
    for body in outbox.render(template, link="L", client_name="", username="alice",
                              email="a@example.com", minutes=minutes):
        assert f"expires in {says}" in body, body


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sign_in_link_ttl": 60})


async def test_the_link_sent_page_names_the_links_lifetime(app: App) -> None:
    web = await create_client(app.ctx.storage, name="Web", redirect_uris=["https://app.example/cb"],
                              grant_types=["authorization_code"], scopes=["openid"])
    page = await app.http.get("/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": web.client.client_id, "scope": "openid",
        "redirect_uri": "https://app.example/cb"}))
    fields = hidden_fields(page.text)
    sent = await app.http.post("/login/link/request", data={
        "csrf_token": fields["csrf_token"], "continue": fields["continue"],
        "email": "nobody@example.com"})
    assert sent.status_code == 200, sent.text[:300]
    assert "It works once, for 1 minute." in sent.text
