"""Deliveries per second of one activator process: requests published straight onto
``activations.requested`` (the runtime left out), delivered to a sink in the bench process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from nats.js import JetStreamContext

from bench.common import Counts, Figure, Report, per_second, progress
from bench.sinks import HttpSink, Mailbox
from bench.stack import Api, Processes, connect_db, servers, start_all, wait_until
from services.activator.schemas import ActivationRequested
from shared.bus import MSG_ID, connect

SENT = "SELECT count(*) FROM activator.deliveries WHERE connector_id = $1 AND status = 'sent'"


def requests(
    workspace: str, connector: str, template: str, channel: str, count: int,
    to: Callable[[int], str],
) -> list[ActivationRequested]:  # fmt: skip
    now = datetime.now(UTC)
    return [
        ActivationRequested(
            activation_id=f"bench-{connector}-{i}", workspace_id=workspace,
            profile_id=f"deliver-{i}", journey_id="bench", version=1, step_id=channel,
            channel=channel, connector_id=connector, template_id=template, to=to(i),
            requested_at=now,
        )
        for i in range(count)
    ]  # fmt: skip


async def deliver(
    js: JetStreamContext,
    conn: asyncpg.Connection,
    children: Processes,
    batch: list[ActivationRequested],
    arrivals: list[tuple[float, bytes]],
) -> tuple[float, float]:
    """Publish every request (as the runtime does: Nats-Msg-Id = activation id); seconds from
    the first publish until every message has reached the sink and is recorded as sent, and
    the activator's CPU seconds meanwhile."""
    connector, first_arrival = batch[0].connector_id, len(arrivals)
    cpu_before = children.cpu_seconds().get("activator", 0.0)
    start = time.perf_counter()
    acks = [
        await js.publish_async(
            f"activations.requested.{r.workspace_id}",
            r.model_dump_json().encode(),
            headers={MSG_ID: f"activation:{r.activation_id}"},
        )
        for r in batch
    ]
    await asyncio.gather(*acks)

    async def sent() -> tuple[int, int]:
        at_sink = len(arrivals) - first_arrival
        return min(at_sink, await conn.fetchval(SENT, connector)), len(batch)

    await wait_until(sent, f"{batch[0].channel} deliveries", max(600, len(batch) / 10), children)
    seconds = time.perf_counter() - start
    cpu = children.cpu_seconds().get("activator", 0.0) - cpu_before
    return seconds, cpu


def figures(
    channel: str, how: str, count: int, timing: tuple[float, float], target: str = ""
) -> list[Figure]:
    seconds, cpu = timing
    cpu_figure = Figure(
        f"Activator CPU per message, {channel}",
        cpu / count * 1e6,
        "µs",
        f"user + system CPU time of the `waypost activator` process over the {channel} "
        "deliveries above, divided by the messages",
    )
    return [rate_figure(channel, how, count, seconds, target), cpu_figure]


def rate_figure(channel: str, how: str, count: int, seconds: float, target: str = "") -> Figure:
    return Figure(
        f"Deliveries, {channel}",
        per_second(count, seconds),
        "msgs/s",
        f"{count:,} activations.requested published straight to JetStream (no runtime), one "
        f"activator process with its default settings delivering {how} in the bench "
        "process; first publish until every message arrived and its delivery row says sent",
        target,
    )


async def deliveries(
    report: Report,
    api: Api,
    js: JetStreamContext,
    conn: asyncpg.Connection,
    children: Processes,
    counts: Counts,
) -> None:
    workspace: str = await conn.fetchval("SELECT id FROM designer.workspaces WHERE is_bootstrap")
    with HttpSink().running() as sink:
        connector = await api.connector("bench-deliveries", "sms_http", {"url": sink.url})
        template = await api.template("bench-deliveries", "sms")
        batch = requests(workspace, connector, template, "sms", counts.deliveries_http,
                         lambda i: f"+1555{i:07d}")  # fmt: skip
        progress(f"delivering {len(batch):,} SMS over HTTP")
        timing = await deliver(js, conn, children, batch, sink.arrivals)
        for f in figures("sms_http", "SMS through sms_http to an HTTP sink", len(batch),
                         timing, "2,000 msgs/s"):  # fmt: skip
            report.add(f)
    with Mailbox().running() as box:
        config = {"host": "127.0.0.1", "port": box.port, "from": "bench@example.com"}
        connector = await api.connector("bench-smtp", "smtp", config)
        template = await api.template("bench-smtp", "email")
        batch = requests(workspace, connector, template, "email", counts.deliveries_smtp,
                         lambda i: f"p{i}@example.com")  # fmt: skip
        progress(f"delivering {len(batch):,} emails over SMTP")
        timing = await deliver(js, conn, children, batch, box.arrivals)
        for f in figures("smtp", "email through smtp to aiosmtpd", len(batch), timing,
                         "1,000 msgs/s"):  # fmt: skip
            report.add(f)


async def activator_figures(report: Report, data_dir: Path, counts: Counts) -> None:
    async with servers(data_dir, report, "deliveries") as stack:
        progress("migrating and starting all five services")
        urls = await start_all(stack.children)
        conn = await connect_db(stack.database_url)
        nc = await connect(stack.nats_url, "waypost-bench")
        try:
            js = nc.jetstream(publish_async_max_pending=counts.in_flight)
            async with Api(urls["gateway"]) as api:
                await deliveries(report, api, js, conn, stack.children, counts)
        finally:
            await nc.close()
            await conn.close()
