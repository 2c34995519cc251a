"""The report: one table of figure, value, target and method, and the same as JSON."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.common import MIB, Counts, Figure, Report


def memory_figures(report: Report) -> list[Figure]:
    """Each service's resident-memory high-water mark over the whole run."""
    return [
        Figure(
            f"Peak memory, {service}",
            peak / MIB,
            "MiB",
            f"VmHWM of the `waypost {service}` process at the end of the {part} part "
            "(the kernel's high-water mark of its resident memory)",
            "flat with profiles",
        )
        for service, (peak, part) in sorted(report.peak_memory.items())
    ]


def cell(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:,.1f}"


def markdown_table(figures: Sequence[Figure]) -> str:
    lines = ["| figure | value | target | method |", "| --- | ---: | --- | --- |"]
    lines += [
        f"| {f.figure} | {cell(f.value)} {f.unit} | {f.target} | {f.method} |" for f in figures
    ]
    return "\n".join(lines)


def document(report: Report, counts: Counts, quick: bool, seconds: float) -> dict[str, object]:
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "duration_s": round(seconds, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "servers": report.servers,
        "counts": asdict(counts),
        "figures": [asdict(f) for f in report.figures],
    }


def write_json(path: Path, content: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")
