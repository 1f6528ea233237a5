"""OAuth clients: list, register, change, rotate a secret, delete.

A change made here applies on this instance at once and on the others within
``cache_ttl`` seconds (each trusts its in-memory copy of a client that long)."""

from __future__ import annotations

from fastapi import Request, Response

from bastion.server.api.client_schemas import (
    ClientCreate,
    ClientList,
    ClientOut,
    ClientUpdate,
    ClientWithSecret,
    SecretRotation,
)
from bastion.server.api.common import (
    Limit,
    Offset,
    Who,
    actor,
    api_router,
    changes,
    context,
    require_admin,
)
from bastion.server.errors import NO_STORE
from bastion.server.services import audit, clients

router = api_router("/api/v1/clients", "clients")


@router.get("", summary="List clients (oldest first)")
async def list_clients(request: Request, who: Who, limit: Limit = 20,
                       offset: Offset = 0) -> ClientList:
    require_admin(who)
    items, count = await context(request).storage.list_clients(limit, offset)
    return ClientList(items=[ClientOut.of(c) for c in items], count=count)


@router.post("", status_code=201, summary="Register a client (its secret is shown once)")
async def create_client(body: ClientCreate, request: Request, response: Response,
                        who: Who) -> ClientWithSecret:
    require_admin(who)
    response.headers.update(NO_STORE)
    ctx = context(request)
    new = await clients.create_client(
        ctx.storage, name=body.name, public=body.is_public, redirect_uris=body.redirect_uris,
        grant_types=body.grant_types, scopes=body.scopes,
        post_logout_redirect_uris=body.post_logout_redirect_uris,
        backchannel_logout_uri=body.backchannel_logout_uri)
    await audit.record(ctx.storage, actor(who, request), "client.create", new.client.client_id,
                       grant_types=list(new.client.grant_types), scopes=list(new.client.scopes))
    return ClientWithSecret.issued(new.client, new.client_secret)


@router.get("/{client_id}", summary="Get a client")
async def get_client(client_id: str, request: Request, who: Who) -> ClientOut:
    require_admin(who)
    return ClientOut.of(await clients.get_client(context(request).storage, client_id))


@router.patch("/{client_id}", summary="Change a client (lists given replace the stored ones)")
async def update_client(client_id: str, body: ClientUpdate, request: Request,
                        who: Who) -> ClientOut:
    require_admin(who)
    ctx = context(request)
    given = changes(body)
    updated = await clients.update_client(ctx.storage, client_id, **given)
    if given:
        ctx.clients.forget(client_id)
        await audit.record(ctx.storage, actor(who, request), "client.update", client_id,
                           **given)
    return ClientOut.of(updated)


@router.post("/{client_id}/secret", summary="Issue a new client secret (shown once)")
async def rotate_secret(client_id: str, request: Request, response: Response, who: Who,
                        body: SecretRotation | None = None) -> ClientWithSecret:
    require_admin(who)
    response.headers.update(NO_STORE)
    ctx = context(request)
    keep_old_for = body.keep_old_for if body is not None else 0
    new = await clients.rotate_secret(ctx.storage, client_id, keep_old_for)
    ctx.clients.forget(client_id)
    await audit.record(ctx.storage, actor(who, request), "client.secret.rotate", client_id,
                       keep_old_for=keep_old_for)
    return ClientWithSecret.issued(new.client, new.client_secret)


@router.delete("/{client_id}", status_code=204,
               summary="Delete a client and revoke every token it holds (again: 204)")
async def delete_client(client_id: str, request: Request, who: Who) -> Response:
    require_admin(who)
    ctx = context(request)
    if await clients.delete_client(ctx.storage, client_id):  # else deleted before: a retry
        ctx.clients.forget(client_id)
        await audit.record(ctx.storage, actor(who, request), "client.delete", client_id)
    return Response(status_code=204)
