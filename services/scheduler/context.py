"""What the scheduler keeps in its service state."""

from __future__ import annotations

from services.scheduler.release import Releaser
from shared.app import ServiceState

RELEASER = "releaser"


def releaser_of(state: ServiceState) -> Releaser:
    releaser: Releaser = state.extras[RELEASER]
    return releaser
