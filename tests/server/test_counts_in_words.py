"""Waits and lifetimes shown to people read as English: "1 second", "2 seconds"."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from bastion.server.services import outbox
from bastion.server.services.clients import create_client
from bastion.server.services.login import TooManyAttempts
from bastion.server.services.throttle import Blocked
from bastion.server.settings import Settings
from bastion.server.text import duration
from support import App, hidden_fields


@pytest.mark.parametrize(("wait", "says"), [(1, "1 second."), (2, "2 seconds."),
                                            (61, "61 seconds.")])
def test_the_sign_in_throttle_names_its_wait(wait: int, says: str) -> None:
    message = str(TooManyAttempts(Blocked(wait, True, "acct:alice")))
    assert message.endswith(f"Try again in {says}"), message


@pytest.mark.parametrize(("seconds", "says"), [
    (1, "1 second"), (45, "45 seconds"), (60, "1 minute"), (61, "1 minute and 1 second"),
    (90, "1 minute and 30 seconds"), (900, "15 minutes"), (3599, "59 minutes and 59 seconds")])
def test_a_lifetime_reads_in_minutes_and_seconds(seconds: int, says: str) -> None:
    assert duration(seconds) == says


@pytest.mark.parametrize("template", ["sign_in", "email_change"])
@pytest.mark.parametrize(("seconds", "says"), [(60, "1 minute."), (90, "1 minute and 30 seconds."),
                                               (900, "15 minutes.")])
def test_a_links_mail_names_its_lifetime(template: str, seconds: int, says: str) -> None:
    for body in outbox.render(template, link="L", client_name="", username="alice",
                              email="a@example.com", expires_in=duration(seconds)):
        assert f"expires in {says}" in body, body


@pytest.fixture(params=[(60, "1 minute"), (90, "1 minute and 30 seconds")])
def lifetime(request: pytest.FixtureRequest) -> tuple[int, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def settings(settings: Settings, lifetime: tuple[int, str]) -> Settings:
    return settings.model_copy(update={"sign_in_link_ttl": lifetime[0]})


async def test_the_link_sent_page_names_the_links_lifetime(app: App,
                                                          lifetime: tuple[int, str]) -> None:
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
    assert f"It works once, for {lifetime[1]}." in sent.text
