"""``reencrypt``: every signing key and every queued mail, in one transaction (the
storage side of ``bastion secret-key rotate``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_contract import NOW, key

from bastion.server.models import OutgoingMail, SigningKey
from bastion.server.storage import SQLStorage


def mail(mail_id: str) -> OutgoingMail:
    return OutgoingMail(id=mail_id, to="a@example.com", subject="s", text=f"t-{mail_id}",
                        html=f"h-{mail_id}", created_at=NOW)


async def settled(storage: SQLStorage) -> None:
    """m1 and m4 queued (each after a failed attempt), m2 sent, m3 given up."""
    for n in (1, 2, 3, 4):
        await storage.enqueue_mail(mail(f"m{n}"))
    later = NOW + timedelta(seconds=1)
    retry = later + timedelta(minutes=1)
    for claimed in await storage.claim_mail(later, limit=4):
        assert claimed.claimed_until is not None
        if claimed.id == "m2":
            assert await storage.mail_sent("m2", later, claimed_until=claimed.claimed_until)
        else:
            assert await storage.mail_failed(claimed.id, "boom", None if claimed.id == "m3"
                                             else retry, later,
                                             claimed_until=claimed.claimed_until)


async def test_reencrypt_rewrites_every_key_and_the_queued_mail_only(
        storage: SQLStorage) -> None:
    await storage.rotate_signing_key(key("a1"))
    await storage.rotate_signing_key(key("a2", at=NOW + timedelta(seconds=1)))  # a1 retired
    await storage.publish_signing_key(key("a3"))
    await settled(storage)
    seen: list[str] = []

    def new_key(stored: SigningKey) -> bytes:
        seen.append(stored.kid)
        return stored.private_key_enc if stored.kid == "a2" else b"new " + stored.kid.encode()

    def new_mail(queued: OutgoingMail) -> tuple[str, str]:
        seen.append(queued.id)
        return queued.text.upper(), queued.html.upper()

    assert await storage.reencrypt(new_key, new_mail) == (2, 2)  # a2 came back as it was
    assert sorted(seen) == ["a1", "a2", "a3", "m1", "m4"]  # not the sent, not the given up
    stored = {k.kid: k.private_key_enc for k in await storage.signing_keys()}
    assert stored == {"a1": b"new a1", "a2": b"\x01secret", "a3": b"new a3"}
    for mail_id, text in (("m1", "T-M1"), ("m4", "T-M4"), ("m2", ""), ("m3", "")):
        found = await storage.get_mail(mail_id)
        assert found is not None and found.text == text
    m1 = await storage.get_mail("m1")
    assert m1 is not None and m1.html == "H-M1" and m1.attempts == 1  # nothing else moved


async def test_a_failure_half_way_changes_nothing(storage: SQLStorage) -> None:
    await storage.rotate_signing_key(key("a1"))
    await storage.enqueue_mail(mail("m1"))

    def refuse(_mail: OutgoingMail) -> tuple[str, str]:
        raise ValueError("opens under neither")

    with pytest.raises(ValueError, match="neither"):  # after the keys were rewritten
        await storage.reencrypt(lambda k: b"new", refuse)
    assert [k.private_key_enc for k in await storage.signing_keys()] == [b"\x01secret"]
    found = await storage.get_mail("m1")
    assert found is not None and found.text == "t-m1"
    assert await storage.reencrypt(lambda k: k.private_key_enc,
                                   lambda m: (m.text, m.html)) == (0, 0)
