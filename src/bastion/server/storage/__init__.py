"""Storage: a small async protocol (``base``) and its SQLAlchemy implementation."""

from bastion.server.storage.base import Conflict, Storage
from bastion.server.storage.sql import SQLStorage, open_storage

__all__ = ["Conflict", "SQLStorage", "Storage", "open_storage"]
