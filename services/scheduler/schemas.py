"""What the scheduler's HTTP API answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TimerStats(BaseModel):
    pending: int = Field(description="Timers waiting to fall due.")
    next_due_at: datetime | None = Field(description="When the first of them falls due.")
    now: datetime = Field(description="This process's clock (virtual under --clock virtual).")
    idle_passes: int = Field(
        description="Times this process's release loop found nothing more due and slept."
    )
