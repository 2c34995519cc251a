"""``python -m bench [--quick] [--only PART ...] [--json PATH] [--dir PATH]``: measure, print a
Markdown table of figure, value, target and method."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bench.activator import activator_figures
from bench.clients import client_figures
from bench.common import STARTED, Counts, Report, progress
from bench.e2e import e2e_figures
from bench.experiments import experiment_figures
from bench.hops import hops_figures
from bench.ingest import ingest_figures
from bench.raw import jetstream_figures, postgres_figures
from bench.report import document, markdown_table, memory_figures, write_json
from bench.stack import PROFILE_ENV
from bench.timers import timer_figures
from shared.logging import configure_logging

RESULTS = Path(__file__).resolve().parent / "results" / "bench.json"
Part = Callable[[Report, Path, Counts], Awaitable[None]]


async def nats_default(report: Report, root: Path, counts: Counts) -> None:
    await jetstream_figures(report, root, counts, sync_always=False)


async def nats_sync_always(report: Report, root: Path, counts: Counts) -> None:
    await jetstream_figures(report, root, counts, sync_always=True)


PARTS: dict[str, Part] = {
    "nats": nats_default,
    "nats-sync": nats_sync_always,
    "postgres": postgres_figures,
    "ingest": ingest_figures,
    "http": client_figures,
    "hops": hops_figures,
    "e2e": e2e_figures,
    "activator": activator_figures,
    "timers": timer_figures,
    "experiments": experiment_figures,
}


async def run(report: Report, root: Path, counts: Counts, parts: Sequence[str]) -> None:
    for name in parts:
        await PARTS[name](report, root / name, counts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="divide every count by 10")
    parser.add_argument(
        "--only", nargs="+", choices=list(PARTS), default=list(PARTS), help="run these parts"
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default {RESULTS}")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the servers' throwaway data goes"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="sample every service with py-spy; collapsed stacks go to this folder",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("bench", level="ERROR", fmt="console")
    counts = Counts().divided(10) if args.quick else Counts()
    if args.profile is not None:
        os.environ[PROFILE_ENV] = str(args.profile.resolve())
    report = Report()
    with tempfile.TemporaryDirectory(prefix="waypost-bench-", dir=args.dir) as tmp:
        asyncio.run(run(report, Path(tmp), counts, args.only))
    report.figures += memory_figures(report)
    write_json(args.json, document(report, counts, args.quick, time.perf_counter() - STARTED))
    progress(f"wrote {args.json}")
    print(markdown_table(report.figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
