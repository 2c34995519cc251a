"""The whole system, every service a child process: events from the gateway until the
runtime has committed them, and from the gateway until a message reaches a provider."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import MIB, Counts, Figure, Report, chunks, per_second, percentile, progress
from bench.ingest import bench_events
from bench.raw import PUBLISH_PLUS_CONSUME
from bench.sinks import HttpSink
from bench.stack import (
    Api,
    Connection,
    Processes,
    Servers,
    connect_db,
    post_all,
    servers,
    start_all,
    wait_until,
)

BENCH_JOURNEYS = 10
TICKS_PER_S = 100
LATENCY_CLIENTS = 16


# Throughput: gateway batch -> runtime committed


async def create_journeys(api: Api) -> None:
    """Ten live journeys; each event matches the entry of exactly one (by its plan)."""
    for i in range(BENCH_JOURNEYS):
        entry = {
            "event": "page_viewed",
            "where": [{"property": "plan", "op": "eq", "value": f"p{i}"}],
        }
        step = {"id": f"wait-{i}", "type": "wait", "duration": "P1D"}
        stage = {"name": "Viewed", "entry": entry, "steps": [step]}
        await api.live_journey({"name": f"Bench {i}", "stages": [stage]})


@dataclass(frozen=True)
class Half:
    events: int
    seconds: float
    runtime_rss: int


async def processed(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM runtime.processed")
    return count


async def one_half(
    gateway: str, conn: asyncpg.Connection, children: Processes, counts: Counts, part: int
) -> Half:
    """Post the events of one half of the profiles at full speed; wait until the runtime has
    committed every one of them."""
    profiles = counts.e2e_profiles // 2
    events = bench_events(profiles * counts.e2e_events_per_profile, profiles, part * profiles)
    progress(f"posting {len(events):,} events of profiles {part * profiles:,}.. in batches")
    seconds = await post_until_committed(gateway, conn, children, events, counts)
    return Half(len(events), seconds, children.rss("runtime"))


async def throughput(
    report: Report, gateway: str, conn: asyncpg.Connection, children: Processes, counts: Counts
) -> None:
    first = await one_half(gateway, conn, children, counts, 0)
    second = await one_half(gateway, conn, children, counts, 1)
    events, seconds = first.events + second.events, first.seconds + second.seconds
    rate = per_second(events, seconds)
    raw = report.value(PUBLISH_PLUS_CONSUME)
    beside = f"; {rate / raw:.0%} of the raw {PUBLISH_PLUS_CONSUME} above" if raw else ""
    report.add(
        Figure(
            "End to end, gateway batch -> runtime committed",
            rate,
            "events/s",
            f"{events:,} page_viewed events of {counts.e2e_profiles:,} distinct profiles "
            f"({counts.e2e_events_per_profile} each), {BENCH_JOURNEYS} live journeys (a "
            "profile's first event enters one, which sets a 1-day timer; later ones find it "
            "inside), all five services as child "
            f"processes on this machine; POST /v1/events/batch of {counts.ingest_batch}, "
            f"{counts.ingest_batch_clients} clients at full speed; first post until "
            f"runtime.processed holds every event, in two halves of {counts.e2e_profiles // 2:,} "
            f"new profiles each (time summed){beside}",
            target="10,000 events/s",
        )
    )
    for half, profiles in ((first, counts.e2e_profiles // 2), (second, counts.e2e_profiles)):
        report.add(
            Figure(
                f"Runtime memory after {profiles:,} profiles",
                half.runtime_rss / MIB,
                "MiB",
                "VmRSS of the runtime process once it has committed every event of the "
                "throughput run so far",
                target="flat with profiles",
            )
        )


# Latency: event posted -> message at the provider


async def latency_journey(
    api: Api, sink: HttpSink, event: str = "purchase", wait: str | None = None
) -> None:
    """A live journey entered on ``event`` whose one step is an SMS (after ``wait``)."""
    connector = await api.connector(f"bench-sms-{event}", "sms_http", {"url": sink.url})
    template = await api.template(f"bench-sms-{event}", "sms")
    step = {"id": "sms", "type": "activation", "channel": "sms", "connector_id": connector,
            "template_id": template, "to_attribute": "phone"}  # fmt: skip
    steps = [step] if wait is None else [{"id": "wait", "type": "wait", "duration": wait}, step]
    stage = {"name": "Entered", "entry": {"event": event}, "steps": steps}
    await api.live_journey({"name": f"Bench {event}", "stages": [stage]})


def purchase(profile: str, name: str = "purchase") -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "profile_id": profile, "name": name,
            "traits": {"phone": "+15550100"}}  # fmt: skip


class SteadyPoster:
    """Posts events at a steady rate in small batches (one per tick) over a pool of
    connections, open loop: each event's time is when its batch was due, so a slow answer
    delays nothing and hides nothing."""

    def __init__(
        self, gateway: str, per_s: int, seconds: float, prefix: str = "lat", name: str = "purchase"
    ) -> None:
        self.gateway, self.per_s, self.seconds, self.prefix = gateway, per_s, seconds, prefix
        self.name = name
        self.due: dict[str, float] = {}
        self.accepted: dict[str, float] = {}  # wall clock of each event's 202
        self.started = 0.0  # wall clock of the first batch

    async def run(self) -> float:
        """Posts ``per_s * seconds`` events; the rate the posts actually went out at."""
        per_tick = max(1, self.per_s // TICKS_PER_S)
        ticks = int(self.seconds * self.per_s / per_tick)
        batches = [
            [purchase(f"{self.prefix}-{t}-{i}", self.name) for i in range(per_tick)]
            for t in range(ticks)
        ]
        connections = [await Connection.open(self.gateway) for _ in range(LATENCY_CLIENTS)]
        pool: asyncio.Queue[Connection] = asyncio.Queue()
        for connection in connections:
            pool.put_nowait(connection)

        async def post(body: bytes, profiles: list[str]) -> None:
            connection = await pool.get()
            await connection.post_accepted("/v1/events/batch", body)
            pool.put_nowait(connection)
            self.accepted |= dict.fromkeys(profiles, time.time())

        loop = asyncio.get_running_loop()
        start_mono, start_wall = loop.time(), time.time()
        self.started = start_wall
        interval = per_tick / self.per_s
        posts = []
        try:
            for tick, batch in enumerate(batches):
                await asyncio.sleep(max(0.0, start_mono + tick * interval - loop.time()))
                body = json.dumps({"events": batch}).encode()
                for event in batch:
                    self.due[event["profile_id"]] = start_wall + tick * interval
                profiles = [event["profile_id"] for event in batch]
                posts.append(asyncio.create_task(post(body, profiles)))
            sent_for = loop.time() - start_mono + interval  # the last batch's tick included
            await asyncio.gather(*posts)
            return per_second(len(self.due), sent_for)
        finally:
            for task in posts:
                task.cancel()
            for connection in connections:
                await connection.close()

    def latencies_ms(
        self, arrivals: list[tuple[float, bytes]], after_s: float = 0.0
    ) -> list[float]:
        """Arrival at the sink minus when the event was due to be posted (plus ``after_s``,
        a wait of the journey), per message."""
        found = []
        for at, body in arrivals:
            due = self.due.get(json.loads(body).get("profile_id"))
            if due is not None:
                found.append((at - due - after_s) * 1000)
        return found


async def warm_up(gateway: str, sink: HttpSink, children: Processes) -> None:
    """One message all the way through: the runtime knows the journey, caches are warm."""
    connection = await Connection.open(gateway)
    try:
        await connection.post_accepted("/v1/events", json.dumps(purchase("warm-up")).encode())
    finally:
        await connection.close()

    async def arrived() -> tuple[int, int]:
        return len(sink.arrivals), 1

    await wait_until(arrived, "warm-up message", 60, children)


async def latency(
    report: Report, api: Api, gateway: str, sink: HttpSink, children: Processes, counts: Counts
) -> None:
    await latency_journey(api, sink)
    await warm_up(gateway, sink, children)
    poster = SteadyPoster(gateway, counts.latency_per_s, counts.latency_seconds)
    first = len(sink.arrivals)
    wanted = first + int(counts.latency_per_s * counts.latency_seconds)
    progress(f"posting {counts.latency_per_s:,} events/s for {counts.latency_seconds:.0f} s")
    achieved = await poster.run()

    async def delivered() -> tuple[int, int]:
        return len(sink.arrivals), wanted

    await wait_until(delivered, "messages at the sink", max(600, wanted / 20), children)
    values = poster.latencies_ms(sink.arrivals)
    method = (
        f"{len(values):,} purchase events, each a new profile, posted at {achieved:,.0f}/s "
        f"for {counts.latency_seconds:.0f} s (POST /v1/events/batch of "
        f"{max(1, counts.latency_per_s // TICKS_PER_S)} every {1000 // TICKS_PER_S} ms, open "
        f"loop, {LATENCY_CLIENTS} connections) into a live journey whose one step is an SMS "
        "through sms_http to an HTTP sink in the bench process; from when the event's batch "
        "was due to be posted until the message arrived at the sink (when the system cannot "
        "keep up with the rate, this grows with the backlog)"
    )
    last_arrival = max(at for at, _ in sink.arrivals[first:])
    report.add(
        Figure(
            "End to end, event -> delivered message",
            per_second(len(values), last_arrival - poster.started),
            "msgs/s",
            f"the latency run below: {len(values):,} messages over the time from the first "
            "post to the last arrival at the sink (runtime, outbox, activator and provider "
            "in the path): what the chain sustained while events came in at that rate",
        )
    )
    for p, target in ((50, "< 50 ms"), (99, "< 250 ms")):
        report.add(
            Figure(
                f"Latency event -> delivered, p{p}",
                percentile(values, p),
                "ms",
                method,
                target=f"{target} at 2,000 events/s",
            )
        )


WAIT_S = 10


async def wait_lateness(
    report: Report, api: Api, gateway: str, sink: HttpSink, children: Processes, counts: Counts
) -> None:
    """Profiles entering a journey that waits 10 s and then sends an SMS: how late the SMS
    is after its due time (entry + 10 s), so timers released into deliveries are measured."""
    await latency_journey(api, sink, event="trial_started", wait=f"PT{WAIT_S}S")
    first = len(sink.arrivals)
    seconds = counts.wait_profiles / counts.latency_per_s
    poster = SteadyPoster(gateway, counts.latency_per_s, seconds, "wait", "trial_started")
    progress(
        f"{counts.wait_profiles:,} profiles into a {WAIT_S} s wait at {counts.latency_per_s:,}/s"
    )
    await poster.run()
    wanted = first + len(poster.due)

    async def delivered() -> tuple[int, int]:
        return len(sink.arrivals), wanted

    await wait_until(delivered, "messages after the wait", max(600, wanted / 20), children)
    values = poster.latencies_ms(sink.arrivals[first:], after_s=WAIT_S)
    method = (
        f"{len(values):,} trial_started events, each a new profile, posted at "
        f"{counts.latency_per_s:,}/s into a live journey that waits PT{WAIT_S}S and then "
        "sends an SMS through sms_http to an HTTP sink in the bench process; arrival at the "
        f"sink minus (when the event's batch was due to be posted + {WAIT_S} s)"
    )
    for p, target in ((50, "< 500 ms"), (99, "< 1,250 ms")):
        report.add(
            Figure(
                f"Wait PT{WAIT_S}S -> SMS lateness, p{p}",
                percentile(values, p),
                "ms",
                method,
                target=f"{target} at 2,000 entries/s",
            )
        )


async def partition_owners(conn: asyncpg.Connection) -> int:
    """Runtime processes holding partition locks now."""
    owners: int = await conn.fetchval(
        "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND pid <> pg_backend_pid()"
    )
    return owners


async def post_until_committed(
    gateway: str, conn: asyncpg.Connection, children: Processes,
    events: Sequence[dict[str, Any]], counts: Counts,
) -> float:  # fmt: skip
    """Post ``events`` at full speed; seconds from the first post until all are committed."""
    bodies = [("/v1/events/batch", {"events": b}) for b in chunks(events, counts.ingest_batch)]
    wanted = await processed(conn) + len(events)
    start = time.perf_counter()
    posting = asyncio.create_task(post_all(gateway, bodies, counts.ingest_batch_clients))

    async def committed() -> tuple[int, int]:
        if posting.done():
            posting.result()  # a failed post fails the run now
        return await processed(conn), wanted

    await wait_until(committed, "runtime committed", max(600, len(events) / 100), children)
    seconds = time.perf_counter() - start
    await posting
    return seconds


async def replicas(
    report: Report, gateway: str, conn: asyncpg.Connection, stack: Servers, urls: dict[str, str],
    counts: Counts,
) -> None:  # fmt: skip
    """The same load with one runtime, then with a second replica sharing the partitions."""
    rates = []
    for n in (1, 2):
        if n == 2:
            env = {f"WAYPOST_{s.upper()}_URL": u for s, u in urls.items() if s != "gateway"}
            stack.children.start("runtime", env, name="runtime-2")

            async def shared() -> tuple[int, int]:
                return await partition_owners(conn), 2

            await wait_until(shared, "a second runtime owning partitions", 120, stack.children)
        profiles = counts.replica_events // counts.e2e_events_per_profile
        events = bench_events(counts.replica_events, profiles, (n + 2) * counts.e2e_profiles)
        progress(f"{len(events):,} events with {n} runtime replica(s)")
        seconds = await post_until_committed(gateway, conn, stack.children, events, counts)
        rates.append(per_second(len(events), seconds))
    for n, rate in zip((1, 2), rates, strict=True):
        report.add(
            Figure(
                f"End to end, gateway batch -> runtime committed, {n} runtime replica(s)",
                rate,
                "events/s",
                f"{counts.replica_events:,} page_viewed events of new profiles, the ten "
                f"journeys of the throughput run, {n} `waypost runtime` process(es) sharing the "
                "16 partitions, the other services as above; first post until "
                "runtime.processed holds every event",
                target="2 replicas > 1",
            )
        )


async def entries(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM runtime.memberships WHERE active")
    return count


async def e2e_figures(report: Report, data_dir: Path, counts: Counts) -> None:
    async with servers(data_dir, report, "end to end") as stack:
        progress("migrating and starting all five services")
        urls = await start_all(stack.children)
        gateway, children = urls["gateway"], stack.children
        conn = await connect_db(stack.database_url)
        try:
            async with Api(gateway) as api:
                await create_journeys(api)
                await throughput(report, gateway, conn, children, counts)
                progress(f"{await entries(conn):,} journey entries so far")
                with HttpSink().running() as sink:
                    await latency(report, api, gateway, sink, children, counts)
                    await wait_lateness(report, api, gateway, sink, children, counts)
                await replicas(report, gateway, conn, stack, urls, counts)
        finally:
            await conn.close()
