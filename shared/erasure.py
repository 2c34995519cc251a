"""The erasure contract between the runtime and the activator, on stream ``ACTIVATIONS``.

When a profile is deleted, the runtime (in the transaction that deletes it) sends
``activations.erase.<workspace>`` with ``Nats-Msg-Id: erase:<workspace>:<profile>:<at>``.
The activator then drops the profile's deliveries that have not gone out, blanks the
recipient and rendered content of the others, and refuses requests for the profile that
were made before the erasure (they may still be on their way). The gateway deletes the
profile's events from its inbox and remembers the erasure, so tracking links in messages
sent before it record nothing.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.events import SubjectToken

SUBJECTS = "activations.erase.>"

# The built-in events that report on a message; they never bring an erased profile back.
FEEDBACK = frozenset({"message_sent", "message_failed", "email_opened", "email_clicked"})


class ProfileErased(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace_id: SubjectToken
    profile_id: Annotated[str, Field(min_length=1, max_length=200)]
    erased_at: AwareDatetime

    @property
    def subject(self) -> str:
        return f"activations.erase.{self.workspace_id}"

    @property
    def msg_id(self) -> str:
        return f"erase:{self.workspace_id}:{self.profile_id}:{self.erased_at.isoformat()}"


def profile_key(profile_id: str) -> bytes:
    """What an erasure record keeps instead of the profile id: its SHA-256 digest."""
    return hashlib.sha256(profile_id.encode()).digest()
