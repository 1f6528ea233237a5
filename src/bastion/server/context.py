"""What every endpoint and service of one running server shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from bastion.server.keys import KeyRing
from bastion.server.mail import Mailer, mailer
from bastion.server.services.backchannel import logout_queue
from bastion.server.services.clients import ClientCache
from bastion.server.services.housekeeping import Housekeeper
from bastion.server.services.outbox import OutboxWorker, seal_for
from bastion.server.services.passwords import Passwords
from bastion.server.services.signing import Signer
from bastion.server.settings import Settings
from bastion.server.storage import SQLStorage, open_storage
from bastion.server.storage.base import Storage


@dataclass
class Context:
    settings: Settings
    storage: Storage
    keys: KeyRing = field(init=False)
    clients: ClientCache = field(init=False)
    passwords: Passwords = field(init=False)
    signer: Signer = field(init=False)
    mailer: Mailer | None = None
    outbox: OutboxWorker = field(init=False)
    housekeeper: Housekeeper = field(init=False)

    def __post_init__(self) -> None:
        self.signer = Signer(self.settings.secret_key_bytes())
        self.keys = KeyRing(self.storage, self.settings)
        self.outbox = OutboxWorker(self.storage, self.mailer or mailer(self.settings),
                                   seal_for(self.settings.secret_key_bytes()),
                                   (logout_queue(self.storage, self.keys, self.settings),))
        self.housekeeper = Housekeeper(self.storage, self.settings)
        self.clients = ClientCache(self.storage, self.settings.cache_ttl)
        self.passwords = Passwords(self.settings)

    @classmethod
    def open(cls, settings: Settings) -> Context:
        storage: SQLStorage = open_storage(
            settings.resolved_database_url, pool_size=settings.db_pool_size
        )
        return cls(settings, storage)

    async def start(self) -> None:
        await self.keys.ensure()
        await self.outbox.start()
        await self.housekeeper.start()

    async def close(self) -> None:
        await self.housekeeper.close()
        await self.outbox.close()
        await self.storage.close()
