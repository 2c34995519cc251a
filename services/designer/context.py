"""What a designer request works with: its session, caller, settings and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.designer.secrets import SecretBox
from services.designer.settings import DesignerSettings
from shared.app import ServiceState, get_state, request_session
from shared.identity import ADMIN, READ, WRITE, Identity, Role, require
from shared.outbox import OutboxRelay
from shared.rendering import Renderer

HTTP = "http"
SECRETS = "secrets"
RELAY = "relay"
RENDERER = "renderer"


@dataclass
class Ctx:
    session: AsyncSession
    identity: Identity
    settings: DesignerSettings
    state: ServiceState

    @property
    def http(self) -> httpx.AsyncClient:
        client: httpx.AsyncClient = self.state.extras[HTTP]
        return client

    @property
    def secrets(self) -> SecretBox:
        box: SecretBox = self.state.extras[SECRETS]
        return box

    @property
    def relay(self) -> OutboxRelay:
        relay: OutboxRelay = self.state.extras[RELAY]
        return relay

    @property
    def renderer(self) -> Renderer:
        renderer: Renderer = self.state.extras[RENDERER]
        return renderer


async def session_dep(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's transaction; after it committed, the outbox relay publishes at once."""
    async for session in request_session(request):
        yield session
    state = get_state(request)
    if RELAY in state.extras:
        state.extras[RELAY].notify()


def ctx_for(roles: frozenset[Role]) -> Callable[..., Awaitable[Ctx]]:
    """The request's context for a caller whose role is one of ``roles`` (else 403, before
    any transaction opens): every public route names the roles the gateway's route table
    gives it."""

    checked = Depends(require(roles))  # a default: evaluated here, where ``roles`` is known

    async def ctx_dep(
        request: Request,
        *,
        identity: Identity = checked,
        session: Annotated[AsyncSession, Depends(session_dep, scope="function")],
    ) -> Ctx:
        state = get_state(request)
        assert isinstance(state.settings, DesignerSettings)
        return Ctx(session, identity, state.settings, state)

    return ctx_dep


ReadCtx = Annotated[Ctx, Depends(ctx_for(READ))]
WriteCtx = Annotated[Ctx, Depends(ctx_for(WRITE))]
AdminCtx = Annotated[Ctx, Depends(ctx_for(ADMIN))]
