"""The experiments' decision rule in seeded simulations, no servers: how often it names a
winner between paths that do not differ (the false-positive rate, to hold under
``1 - confidence``), how often and how soon it finds a real difference, and, for contrast,
how often a fixed-horizon z-test read at the same moments names a false winner.

Each run feeds every path one finished profile at a time and looks at the decision after
every ``LOOK_EVERY`` profiles per path, as the runtime's decider does when results keep
coming, up to ``HORIZON`` profiles per path. ``python -m bench --only experiments``.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from statistics import NormalDist, median

from bench.common import Counts, Figure, Report
from services.runtime.experiment_stats import PathCounts, decide

CONFIDENCE = 0.95
MIN_PER_PATH = 200
HORIZON = 5_000
LOOK_EVERY = 20


def run(rates: list[float], seed: int, rule: str = "msprt") -> tuple[str | None, int]:
    """One seeded experiment: the winner named (None if none by the horizon) and the
    profiles per path it took."""
    rng = random.Random(seed)
    n, x = 0, [0] * len(rates)
    while n < HORIZON:
        for _ in range(LOOK_EVERY):
            n += 1
            for i, rate in enumerate(rates):
                x[i] += rng.random() < rate
        if n < MIN_PER_PATH:
            continue
        winner = _msprt(x, n) if rule == "msprt" else _z_test(x, n)
        if winner is not None:
            return winner, n
    return None, n


def _msprt(x: list[int], n: int) -> str | None:
    paths = [PathCounts(str(i), i == 0, n, x[i], n, x[i]) for i in range(len(x))]
    return decide(paths, CONFIDENCE, MIN_PER_PATH).winner


def _z_test(x: list[int], n: int) -> str | None:
    """A two-sided z-test of two proportions at the same level: right once, wrong when
    read again and again."""
    p1, p2 = x[0] / n, x[1] / n
    pooled = (x[0] + x[1]) / (2 * n)
    se = math.sqrt(2 * pooled * (1 - pooled) / n)
    if se == 0:
        return None
    z = abs(p1 - p2) / se
    if z < NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / 2):
        return None
    return "0" if p1 > p2 else "1"


async def experiment_figures(report: Report, root: Path, counts: Counts) -> None:
    runs = max(counts.experiment_runs, 10)
    method = (
        f"{runs} seeded runs, a look every {LOOK_EVERY} profiles per path from "
        f"{MIN_PER_PATH} to {HORIZON}, confidence {CONFIDENCE}"
    )
    alpha = f"<= {1 - CONFIDENCE:.0%}"
    for label, rates in (("2 paths", [0.1, 0.1]), ("3 paths", [0.1, 0.1, 0.1])):
        named = sum(run(rates, seed)[0] is not None for seed in range(runs))
        report.add(Figure(f"experiments: false winners, {label} at 10 %",
                          100 * named / runs, "%", method, alpha))  # fmt: skip
    z = sum(run([0.1, 0.1], seed, "z")[0] is not None for seed in range(runs))
    report.add(Figure("experiments: false winners of a z-test read at every look",
                      100 * z / runs, "%", method, "for contrast"))  # fmt: skip
    found = [run([0.1, 0.2], seed) for seed in range(runs)]
    right = [n for winner, n in found if winner == "1"]
    report.add(Figure("experiments: 10 % against 20 %, better path found",
                      100 * len(right) / runs, "%", method))  # fmt: skip
    report.add(Figure("experiments: 10 % against 20 %, median profiles per path to decide",
                      median(right) if right else float("nan"), "profiles", method))  # fmt: skip
