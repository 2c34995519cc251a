"""Where one event's time goes at low load: every milestone between the post and the
provider, read back from where each service leaves its mark, p50 / p99 per hop.

Milestones of one event (each a wall-clock instant on this machine):
- due: when the bench meant to post its batch (open loop);
- accepted: the 202 arrived at the bench (after the inbox commit);
- on EVENTS: JetStream stored the relayed event (the stream's own timestamp);
- runtime batch: the runtime's transaction that applied it began (``runtime.processed``);
- on ACTIVATIONS: JetStream stored the activation request (after the runtime committed
  and its outbox relay published);
- delivery stored: the activator's intake decided it (``activator.deliveries.created_at``);
- at provider: the HTTP sink received the message;
- recorded sent: the activator recorded the outcome (``sent_at``, before its commit).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import asyncpg
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.common import Counts, Figure, Report, percentile, progress
from bench.e2e import SteadyPoster, latency_journey, warm_up
from bench.sinks import HttpSink
from bench.stack import Api, Processes, connect_db, servers, start_all, wait_until

MILESTONES = (
    "due",
    "accepted",
    "on EVENTS",
    "runtime batch",
    "on ACTIVATIONS",
    "delivery stored",
    "at provider",
    "recorded sent",
)


@dataclass
class Trace:
    """The milestones of the events of one run, by profile id (one event per profile)."""

    at: dict[str, dict[str, float]]

    def hop_ms(self, start: str, end: str) -> list[float]:
        return [
            (marks[end] - marks[start]) * 1000
            for marks in self.at.values()
            if start in marks and end in marks
        ]


async def stream_times(nats_url: str, stream: str, subject: str) -> dict[str, float]:
    """profile id -> when ``stream`` stored its message on ``subject`` (its first copy)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, filter_subject=subject
        )
        sub = await js.pull_subscribe(subject, stream=stream, config=config)
        found: dict[str, float] = {}
        seen = 0
        while seen < info.state.messages:
            try:
                msgs = await sub.fetch(1000, timeout=2)
            except TimeoutError:
                break
            for msg in msgs:
                seen += 1
                profile = json.loads(msg.data).get("profile_id")
                stored = msg.metadata.timestamp
                if profile is not None and stored is not None:
                    found.setdefault(profile, stored.timestamp())
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()


def _epoch(rows: Sequence[asyncpg.Record], column: str) -> dict[str, float]:
    out = {}
    for row in rows:
        value: datetime | None = row[column]
        if value is not None:
            out[row["profile_id"]] = value.timestamp()
    return out


async def trace(
    conn: asyncpg.Connection, nats_url: str, poster: SteadyPoster, sink: HttpSink, first: int
) -> Trace:
    # runtime.processed keeps no profile id; each profile is new, so its row's creation
    # (now() of the transaction) marks the batch that applied its event.
    runtime = await conn.fetch("SELECT profile_id, created_at FROM runtime.profiles")
    deliveries = await conn.fetch(
        "SELECT profile_id, created_at, sent_at FROM activator.deliveries"
    )
    marks: dict[str, dict[str, float]] = {p: {"due": t} for p, t in poster.due.items()}
    columns: list[tuple[str, dict[str, float]]] = [
        ("accepted", poster.accepted),
        ("on EVENTS", await stream_times(nats_url, "EVENTS", "events.>")),
        ("runtime batch", _epoch(runtime, "created_at")),
        ("on ACTIVATIONS", await stream_times(nats_url, "ACTIVATIONS", "activations.requested.>")),
        ("delivery stored", _epoch(deliveries, "created_at")),
        ("at provider", _arrivals(sink, first)),
        ("recorded sent", _epoch(deliveries, "sent_at")),
    ]
    for milestone, times in columns:
        for profile, at in times.items():
            if profile in marks:
                marks[profile][milestone] = at
    return Trace(marks)


def _arrivals(sink: HttpSink, first: int) -> dict[str, float]:
    found: dict[str, float] = {}
    for at, body in sink.arrivals[first:]:
        profile = json.loads(body).get("profile_id")
        if profile is not None:
            found.setdefault(profile, at)
    return found


def hop_figures(report: Report, traced: Trace, per_s: int, events: int) -> None:
    method = (
        f"{events:,} purchase events, each a new profile, posted at {per_s:,}/s into the "
        "one-SMS journey of the latency run (sms_http to an HTTP sink in the bench); "
        "each milestone read back from the service that leaves it (see bench/hops.py)"
    )
    for start, end in pairwise(MILESTONES):
        values = traced.hop_ms(start, end)
        if not values:
            continue
        for p in (50, 99):
            report.add(Figure(f"Hop {start} -> {end}, p{p}", percentile(values, p), "ms", method))
    total = traced.hop_ms("accepted", "at provider")
    for p, target in ((50, "< 30 ms"), (99, "< 100 ms")):
        report.add(
            Figure(
                f"Latency accepted -> at provider at {per_s:,}/s, p{p}",
                percentile(total, p),
                "ms",
                method,
                target=f"{target} at 200 events/s",
            )
        )


def cpu_figures(report: Report, cpu: dict[str, float], events: int) -> None:
    for service, seconds in sorted(cpu.items()):
        report.add(
            Figure(
                f"CPU per event, {service}",
                seconds / events * 1e6,
                "µs",
                f"user + system CPU time of the `waypost {service}` process over the hop "
                f"run ({events:,} events from first post to last delivery recorded), "
                "divided by the events",
            )
        )


async def hops_figures(report: Report, data_dir: Path, counts: Counts) -> None:
    async with servers(data_dir, report, "hops") as stack:
        progress("migrating and starting all five services")
        urls = await start_all(stack.children)
        await run_hops(report, urls["gateway"], stack.database_url, stack.nats_url,
                       stack.children, counts)  # fmt: skip


async def run_hops(
    report: Report,
    gateway: str,
    database_url: str,
    nats_url: str,
    children: Processes,
    counts: Counts,
) -> None:
    conn = await connect_db(database_url)
    try:
        async with Api(gateway) as api:
            with HttpSink().running() as sink:
                await latency_journey(api, sink)
                await warm_up(gateway, sink, children)
                first = len(sink.arrivals)
                cpu_before = children.cpu_seconds()
                poster = SteadyPoster(gateway, counts.hops_per_s, counts.hops_seconds, "hop")
                progress(f"posting {counts.hops_per_s:,} events/s for {counts.hops_seconds:.0f} s")
                await poster.run()
                wanted = first + len(poster.due)

                async def delivered() -> tuple[int, int]:
                    return len(sink.arrivals), wanted

                await wait_until(delivered, "messages at the sink", 300, children)
                sent = "SELECT count(*) FROM activator.deliveries WHERE status = 'sent'"

                async def recorded() -> tuple[int, int]:
                    return int(await conn.fetchval(sent)), wanted

                await wait_until(recorded, "deliveries recorded", 60, children)
                cpu = {k: v - cpu_before.get(k, 0.0) for k, v in children.cpu_seconds().items()}
                traced = await trace(conn, nats_url, poster, sink, first)
        hop_figures(report, traced, counts.hops_per_s, len(poster.due))
        cpu_figures(report, cpu, len(poster.due))
    finally:
        await conn.close()
