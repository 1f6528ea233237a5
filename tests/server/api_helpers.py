"""The REST API's test handle (the ``api`` fixture of tests/server/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from support import App

PASSWORD = "a long enough password"


@dataclass
class Api:
    app: App
    admin: dict[str, str]
    web_id: str
    web_secret: str

    async def user_token(self, username: str, **extra: str) -> dict[str, str]:
        r = await self.app.http.post("/oauth/token", auth=(self.web_id, self.web_secret), data={
            "grant_type": "password", "username": username, "password": PASSWORD,
            "scope": "openid", **extra})
        assert r.status_code == 200, r.text
        return r.json()

    def bearer(self, token: dict[str, str]) -> dict[str, str]:
        return {"Authorization": "Bearer " + token["access_token"]}
