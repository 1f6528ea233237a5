"""Changing ``BASTION_SECRET_KEY``: what the database holds under it is encrypted
again under the new one.

Two things are stored under the secret key: the private signing keys (``KeyCipher``)
and the bodies of queued mail (``outbox.Seal``). Everything else it protects lives in
browsers (session cookies and CSRF tokens, MACed by ``signing.Signer``) and simply
stops verifying under a new secret; session ids are stored in plain text, so that is
what makes cookies forged with a leaked secret worthless.

The change is idempotent: what opens under the new secret is left as it is, so a
second run (after the servers restarted, for mail that old instances queued meanwhile)
only picks up the stragglers. Something that opens under neither secret refuses the
whole change, which then writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bastion.server.keys import KeyCipher, KeyDecryptionError
from bastion.server.models import OutgoingMail, SigningKey
from bastion.server.services.errors import ServiceError
from bastion.server.services.outbox import Seal, SealError
from bastion.server.settings import MIN_SECRET_KEY_LENGTH, SHORT_SECRET_KEY, Settings
from bastion.server.storage.base import Storage


class SecretKeyError(ServiceError):
    """The secret keys given cannot do the change; nothing was written."""


@dataclass(frozen=True, slots=True)
class Reencrypted:
    keys: int  # signing keys moved to the new secret by this run
    mail: int  # queued mails moved to the new secret by this run


async def rotate(storage: Storage, settings: Settings, old_secret: bytes) -> Reencrypted:
    """Encrypt every stored signing key and seal every queued mail under
    ``settings.secret_key`` instead of ``old_secret``, in one transaction."""
    if settings.secret_key is None:  # else a development key would be generated here
        raise SecretKeyError("the new secret key is not set: set BASTION_SECRET_KEY (or "
                             "secret_key in the config file) to it")
    new_secret = settings.secret_key_bytes()
    if len(new_secret) < MIN_SECRET_KEY_LENGTH:
        raise SecretKeyError(f"BASTION_SECRET_KEY: {SHORT_SECRET_KEY}")
    if not old_secret.strip():
        raise SecretKeyError("the old secret key is empty")
    if old_secret == new_secret:
        raise SecretKeyError("the old secret key is the same as BASTION_SECRET_KEY: set "
                             "BASTION_SECRET_KEY to the new one")
    old_cipher, new_cipher = KeyCipher(old_secret), KeyCipher(new_secret)
    old_seal, new_seal = Seal(old_secret), Seal(new_secret)

    def key(stored: SigningKey) -> bytes:
        if _opens(lambda: new_cipher.decrypt(stored.kid, stored.private_key_enc)):
            return stored.private_key_enc  # done already (an earlier run)
        try:
            pem = old_cipher.decrypt(stored.kid, stored.private_key_enc)
        except KeyDecryptionError:
            raise SecretKeyError(f"signing key {stored.kid} opens under neither the old "
                                 "secret key nor the new one: nothing was changed") from None
        return new_cipher.encrypt(stored.kid, pem)

    def mail(queued: OutgoingMail) -> tuple[str, str]:
        if _opens(lambda: new_seal.open(queued)):
            return queued.text, queued.html  # done already, or never sealed
        try:
            opened = old_seal.open(queued)
        except SealError:
            raise SecretKeyError(f"queued mail {queued.id} opens under neither the old "
                                 "secret key nor the new one: nothing was changed") from None
        sealed = new_seal.close(opened)
        return sealed.text, sealed.html

    keys, mails = await storage.reencrypt(key, mail)
    return Reencrypted(keys=keys, mail=mails)


def _opens(attempt: Callable[[], object]) -> bool:
    try:
        attempt()
    except (KeyDecryptionError, SealError):
        return False
    return True
