"""Webhook sources: secrets long and random enough, revocation, and rotation with a grace
period for the previous secret, black-box through the gateway."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from shared.settings import ClockMode
from tests.conftest import Servers
from tests.helpers import eventually
from tests.stack import Workspace, new_workspace, running_stack

MAPPING = {"profile_id": "$.user.id", "name": "$.type"}


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def signed(secret: str, at: datetime) -> tuple[str, dict[str, str]]:
    data = json.dumps({"type": "invoice.paid", "user": {"id": "ada"}})
    msg_id = f"msg_{uuid.uuid4().hex}"
    return data, {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, data),
        "content-type": "application/json",
    }


async def create(c: httpx.AsyncClient, secret: str) -> httpx.Response:
    body = {"name": f"partner-{uuid.uuid4().hex[:6]}", "secret": secret, "mapping": MAPPING}
    return await c.post("/v1/webhooks/sources", json=body)


async def deliver(url: str, source_id: str, secret: str, at: datetime) -> int:
    data, headers = signed(secret, at)
    async with httpx.AsyncClient(base_url=url) as http:
        return (await http.post(f"/hooks/{source_id}", content=data, headers=headers)).status_code


@pytest.mark.parametrize(
    "secret",
    [
        "s",
        "short-passphrase",
        "a" * 40,  # long, but one character
        "abababababababababababababab",
        whsec(os.urandom(16)),  # too few key bytes
        whsec(os.urandom(65)),  # more than Standard Webhooks issues
        whsec(bytes(32)),  # 32 zero bytes
        "whsec_!!not-base64!!",
        "whsec_",
    ],
)
async def test_a_weak_secret_is_refused_with_its_path(workspace: Workspace, secret: str) -> None:
    async with workspace.client() as c:
        r = await create(c, secret)
        assert r.status_code == 422, r.text
        assert [e["path"] for e in r.json()["errors"]] == ["secret"]
        ok = await create(c, whsec(os.urandom(32)))
        rotate = await c.post(f"/v1/webhooks/sources/{ok.json()['id']}/rotate",
                              json={"secret": secret})  # fmt: skip
    assert rotate.status_code == 422, rotate.text
    assert [e["path"] for e in rotate.json()["errors"]] == ["secret"]


async def test_a_passphrase_signs_as_its_utf8_bytes(workspace: Workspace) -> None:
    passphrase = "correct horse battery staple 42"
    async with workspace.client() as c:
        r = await create(c, passphrase)
    assert r.status_code == 201, r.text
    assert "secret" not in json.dumps(r.json()).replace("rotation_grace_until", "")
    key = whsec(passphrase.encode())
    assert await deliver(workspace.stack.url, r.json()["id"], key, datetime.now(UTC)) == 202


async def test_a_deleted_source_is_refused_and_only_its_workspace_may_delete_it(
    workspace: Workspace,
) -> None:
    secret = whsec(os.urandom(32))
    other = await new_workspace(workspace.stack)
    async with workspace.client() as c, other.client() as o:
        source_id = (await create(c, secret)).json()["id"]
        assert await deliver(workspace.stack.url, source_id, secret, datetime.now(UTC)) == 202
        assert (await o.delete(f"/v1/webhooks/sources/{source_id}")).status_code == 404
        editor = await workspace.key("editor")
        async with workspace.client(editor) as e:
            assert (await e.delete(f"/v1/webhooks/sources/{source_id}")).status_code == 403
        r = await c.delete(f"/v1/webhooks/sources/{source_id}")
        assert r.status_code == 204, r.text
        assert (await c.get(f"/v1/webhooks/sources/{source_id}")).status_code == 404
        assert (await c.delete(f"/v1/webhooks/sources/{source_id}")).status_code == 404
        assert (await c.get("/v1/webhooks/sources")).json()["items"] == []

    async def refused() -> bool:
        return await deliver(workspace.stack.url, source_id, secret, datetime.now(UTC)) == 404

    await eventually(refused, "deliveries to the revoked source to be refused")


async def test_rotation_keeps_the_old_secret_for_the_grace_period_only(servers: Servers) -> None:
    old, new = whsec(os.urandom(32)), whsec(os.urandom(24))
    async with running_stack(servers, clock=ClockMode.VIRTUAL) as virtual:
        ws = await new_workspace(virtual)
        async with ws.client() as c:

            async def now() -> datetime:
                return datetime.fromisoformat((await c.get("/v1/admin/clock")).json()["now"])

            source: dict[str, Any] = (await create(c, old)).json()
            assert source["rotated_at"] is None
            assert source["rotation_grace_until"] is None
            r = await c.post(f"/v1/webhooks/sources/{source['id']}/rotate", json={"secret": new})
            assert r.status_code == 200, r.text
            rotated = r.json()
            assert rotated["rotated_at"] is not None
            grace = datetime.fromisoformat(rotated["rotation_grace_until"])
            assert grace - datetime.fromisoformat(rotated["rotated_at"]) == (
                datetime.fromisoformat("2026-01-02T00:00:00+00:00")
                - datetime.fromisoformat("2026-01-01T00:00:00+00:00")
            )
            other = whsec(os.urandom(32))

            async def both_accepted() -> bool:
                at = await now()
                return (
                    await deliver(virtual.url, source["id"], new, at) == 202
                    and await deliver(virtual.url, source["id"], old, at) == 202
                )

            await eventually(both_accepted, "the new secret to be accepted beside the old one")
            assert await deliver(virtual.url, source["id"], other, await now()) == 401

            r = await c.post("/v1/admin/clock", json={"advance": "PT24H1S"})
            assert r.status_code == 200, r.text

            async def old_refused() -> bool:
                return await deliver(virtual.url, source["id"], old, await now()) == 401

            await eventually(old_refused, "the old secret to be refused after the grace period")
            assert await deliver(virtual.url, source["id"], new, await now()) == 202
            listed = (await c.get("/v1/webhooks/sources")).json()["items"]
            assert listed[0]["rotation_grace_until"] is None
            assert listed[0]["rotated_at"] == rotated["rotated_at"]
