"""Unique-constraint violations as ``Conflict``, naming the field (any backend)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from bastion.server.storage.base import Conflict

# Unique index name -> the field a Conflict reports.
UNIQUE_FIELDS = {
    "uq_users_username": "username",
    "uq_users_email": "email",
    "users.id": "id",
    "users_pkey": "id",
    "clients.client_id": "client_id",
    "clients_pkey": "client_id",
    "uq_organizations_name": "name",
    "uq_roles_org_name": "name",
}


def conflict(exc: IntegrityError) -> Conflict:
    text = str(exc.orig)
    for marker, field in UNIQUE_FIELDS.items():
        if marker in text:
            return Conflict(field)
    return Conflict("unknown")


