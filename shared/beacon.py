"""The designer's change beacon: a NATS KV key the designer sets to a new value after every
change it commits and before it answers, so the runtime learns with one cheap read of the
stream leader (no designer request) whether its catalog may be stale.

Order: the designer commits, puts a new value (acked by the stream, so stored), then
answers. An event accepted after that answer is fetched by the runtime later still; the
runtime reads the key (from the leader, never a possibly lagging replica) after fetching
the event, so it sees the new value and reloads from the designer, whose answer then
includes the change. Any new value means "look": the value itself is a fresh random id.
"""

from __future__ import annotations

import contextlib
import uuid

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType

BUCKET = "waypost_designer"
KEY = "changed"
_STREAM = f"KV_{BUCKET}"
_SUBJECT = f"$KV.{BUCKET}.{KEY}"


async def ensure(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the bucket if it is not there (from any service, at every start)."""
    try:
        await js.key_value(BUCKET)
    except nats.js.errors.BucketNotFoundError:
        config = KeyValueConfig(bucket=BUCKET, history=1, storage=StorageType.FILE,
                                replicas=replicas)  # fmt: skip
        with contextlib.suppress(nats.js.errors.BadRequestError):  # made meanwhile elsewhere
            await js.create_key_value(config)


async def signal(js: JetStreamContext) -> str:
    """Tell every reader that something changed; the new value."""
    value = uuid.uuid4().hex
    await js.publish(_SUBJECT, value.encode(), stream=_STREAM)
    return value


async def read(js: JetStreamContext) -> str:
    """The current value ("" before the first change), from the stream's leader."""
    try:
        msg = await js.get_last_msg(_STREAM, _SUBJECT, direct=False)
    except nats.js.errors.NotFoundError:
        return ""
    return (msg.data or b"").decode()
