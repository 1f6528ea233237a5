"""Emailed single-use links: passwordless sign-in and email-address changes (and the
notice to the old address once a change is made).

A link carries 256 random bits; only their SHA-256 digest is stored. It works
once, for ``sign_in_link_ttl`` seconds, and a sign-in link is bound to the
authorization request (and so the client) that asked for it. The answer to
"send me a link" never depends on whether the address has an account, and does not
wait for the lookup that finds out (``send_sign_in_link``).

Only a user's newest email-change link works, and a change of their email address
cancels every link they have pending (``services.users.update_user``); a sign-in link
also stops working once its address is no longer the user's.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bastion.server.models import Client, OneTimeToken, User
from bastion.server.services import outbox, secrets, throttle
from bastion.server.services.errors import InvalidInput, RateLimited
from bastion.server.services.users import check_email
from bastion.server.settings import Settings
from bastion.server.storage.base import Storage
from bastion.server.text import duration, fold, plural

SIGN_IN_PATH = "/login/link"
EMAIL_CHANGE_PATH = "/account/email/confirm"


class TooManyLinks(RateLimited):
    """Emailed links are rate limited per address and per client IP (or, for a
    confidential client's back channel, per client)."""


def _seal(settings: Settings) -> outbox.Seal:
    return outbox.seal_for(settings.secret_key_bytes())


async def _limit(storage: Storage, keys: throttle.Keys) -> None:
    """Count a link against its budgets (``throttle.link_keys``, ``email_change_keys``);
    ``TooManyLinks`` when one is spent."""
    async with throttle.gate(storage).hold(keys):  # a burst cannot all pass one check
        now = datetime.now(UTC)
        blocked = await throttle.check(storage, keys, now)
        if blocked:
            minutes = max(1, round(blocked.retry_after / 60))
            whom = ("for this address" if blocked.key.startswith(throttle.ADDRESS_KEYS) else
                    "by this account" if blocked.key.startswith(throttle.CHANGER_KEY) else
                    "by this client" if blocked.key.startswith("link-" + throttle.CLIENT_KEY)
                    else "from this network")
            raise TooManyLinks(f"Too many links were requested {whom}. Try again in "
                               f"about {plural(minutes, 'minute')}.", blocked.retry_after)
        await throttle.record(storage, keys, now)


async def _user_by_email(storage: Storage, email: str) -> User | None:
    user = await storage.get_user_by_login(email)
    return user if user is not None and fold(user.email) == fold(email) else None


async def _issue(storage: Storage, settings: Settings, purpose: Literal["sign_in", "email_change"],
                 email: str, user: User | None, client_id: str | None,
                 payload: dict[str, Any]) -> tuple[str, datetime] | None:
    """A new link's token, stored, and when it expires; None if ``user`` was deleted
    meanwhile."""
    plain = _secrets.token_urlsafe(32)  # 256 bits
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=settings.sign_in_link_ttl)
    stored = await storage.create_one_time_token(OneTimeToken(
        digest=secrets.digest(plain), purpose=purpose, email=email,
        user_id=user.id if user else None, client_id=client_id, payload=payload,
        created_at=now, expires_at=expires_at))
    return (plain, expires_at) if stored else None


async def send_sign_in_link(storage: Storage, settings: Settings, *, email: str,
                            client: Client | None, authorize_query: str = "",
                            next_url: str = "", ip: str | None,
                            back_channel: bool = False,
                            known: Callable[[str], bool] | None = None,
                            ) -> Coroutine[Any, Any, bool]:
    """Check the address and its budget now (``InvalidInput``, ``TooManyLinks``, the same
    whether or not it has an account), and return the rest to run once the request is
    answered: looking the address up and, if it may sign in, storing a link for this
    authorization request and queuing its mail. That work takes longer for an address
    with an account, so the answer must not wait for it. The coroutine returns whether
    a mail was queued.

    Without a ``client``, the link signs in to one of Bastion's own pages
    (``next_url``, the account page): an address with no account gets none, whatever
    ``passwordless_signup`` says (there is no app to sign up to).

    ``back_channel``: the client's server asks, for any of its users (``ip`` is the
    server's): a confidential client's own budget stands in for that address's.
    ``known``: whether this browser has signed in with an address (``pages.known_to``)."""
    email = check_email(email.strip())
    # A browser that has signed in with the address has a budget of its own for it: a
    # stranger asking for that address cannot lock its owner out.
    await _limit(storage, throttle.link_keys(
        settings, email, ip,
        client.client_id if client is not None and back_channel and not client.is_public
        else None, known=known is not None and known(fold(email))))
    goal = {"authorize": authorize_query} if client is not None else {"next": next_url}
    return _sign_in_link(storage, settings, email, client, goal)


async def _sign_in_link(storage: Storage, settings: Settings, email: str,
                        client: Client | None, goal: dict[str, str]) -> bool:
    user = await _user_by_email(storage, email)
    if user is not None and user.deleted_at is not None:
        return False
    if user is None and (client is None or not settings.passwordless_signup):
        return False
    issued = await _issue(storage, settings, "sign_in", email, user,
                          client.client_id if client is not None else None, goal)
    if issued is None:
        return False
    token, expires_at = issued
    # An erasure between the two writes deletes the link, and the mail is refused.
    mail = await outbox.enqueue(storage, _seal(settings), email, "Your sign-in link",
                                "sign_in", user_id=user.id if user else None,
                                expires_at=expires_at,
                                link=f"{settings.issuer_url}{SIGN_IN_PATH}?token={token}",
                                client_name=client.name if client is not None else "",
                                expires_in=duration(settings.sign_in_link_ttl))
    return mail is not None


async def check_email_change(storage: Storage, settings: Settings, *, user: User,
                             new_email: str, ip: str | None) -> str:
    """``new_email`` as stored, once it is an address, not the user's own, and within
    the budgets of email-change links (``InvalidInput``, ``TooManyLinks``); this counts
    against them, not against the address's sign-in links. Run before anything else
    changes, so that a refusal changes nothing."""
    new_email = check_email(new_email.strip())
    if new_email == fold(user.email):
        raise InvalidInput("email", "that is already your address")
    await _limit(storage, throttle.email_change_keys(settings, user.id, new_email, ip))
    return new_email


async def send_email_change(storage: Storage, settings: Settings, *, user: User,
                            new_email: str) -> Coroutine[Any, Any, bool] | None:
    """Store a confirmation link for ``new_email``, as ``check_email_change`` returned it,
    and return the rest to run once the request is answered (``Outbox.after_answer``):
    mailing it, unless another account has that address (its link could only fail, and
    would tell that account's owner about this one: it is cancelled instead). Looking
    the address up after the answer, the page answers alike, and as soon, whoever has
    it; storing the link before it keeps the links in the order they were asked for,
    and lets an erasure find the address. None if the user was deleted meanwhile."""
    # only the newest change link works: an earlier one (say to a mistyped address) dies
    await storage.cancel_one_time_tokens(user.id, ("email_change",), datetime.now(UTC))
    issued = await _issue(storage, settings, "email_change", new_email, user, None, {})
    if issued is None:
        return None
    return _mail_email_change(storage, settings, user, new_email, *issued)


async def _mail_email_change(storage: Storage, settings: Settings, user: User, new_email: str,
                             token: str, expires_at: datetime) -> bool:
    owner = await _user_by_email(storage, new_email)
    if owner is not None and owner.id != user.id:  # this link only: a newer one may live
        await storage.use_one_time_token(secrets.digest(token), datetime.now(UTC))
        return False
    mail = await outbox.enqueue(
        storage, _seal(settings), new_email, "Confirm your new email address", "email_change",
        user_id=user.id, expires_at=expires_at,
        link=f"{settings.issuer_url}{EMAIL_CHANGE_PATH}?token={token}",
        username=user.username, email=new_email, expires_in=duration(settings.sign_in_link_ttl))
    return mail is not None


async def send_email_changed(storage: Storage, settings: Settings, *, user: User,
                             old_email: str) -> None:
    """Tell the address a user had that the account now has another one, so a change
    made by someone else does not go unnoticed."""
    await outbox.enqueue(storage, _seal(settings), old_email, "Your email address was changed",
                         "email_changed", user_id=user.id,
                         username=user.username, old_email=old_email, email=user.email,
                         account=f"{settings.issuer_url}/account")


async def peek(storage: Storage, token: str, purpose: str) -> OneTimeToken | None:
    """The token if it could be used now (for the confirmation page; not consumed)."""
    if not token or len(token) > 100:
        return None
    found = await storage.get_one_time_token(secrets.digest(token))
    if found is None or found.purpose != purpose or found.used_at is not None:
        return None
    return found if found.expires_at > datetime.now(UTC) else None


async def use(storage: Storage, token: str, purpose: str,
              ) -> tuple[OneTimeToken, User | None] | None:
    """Spend the token, if it is one for ``purpose`` (one posted to the wrong page is
    left as it is) and could be used now; with its user as the spend read them
    (``Storage.use_one_time_token``)."""
    if not token or len(token) > 100:
        return None
    digest = secrets.digest(token)
    found = await storage.get_one_time_token(digest)
    if found is None or found.purpose != purpose:
        return None
    return await storage.use_one_time_token(digest, datetime.now(UTC))
