"""Deciding an experiment: a mixture sequential probability ratio test (mSPRT) between each
pair of paths, so the answer stays valid however often it is looked at.

A fixed-horizon test (a z-test at 95 %) read after every new result declares a false
winner far more often than 5 % of the time: each look is another chance for noise to cross
the line. The mSPRT of Johari, Koomen, Pekelis and Walsh ("Peeking at A/B tests", KDD 2017;
"Always valid inference", Operations Research 2022) instead bounds the chance that the
likelihood ratio *ever* crosses ``1/alpha`` when the paths do not differ, at every sample
size at once. For two conversion rates it uses the normal approximation of the difference
of the two observed rates with a normal mixture N(0, TAU2) over the true difference:

    V      = p1 (1 - p1) / n1 + p2 (1 - p2) / n2   (p for the variance: (x + 1/2) / (n + 1))
    Lambda = sqrt(V / (V + TAU2)) * exp(TAU2 * (p1 - p2)^2 / (2 V (V + TAU2)))

and the always-valid p-value is ``1 / Lambda`` (capped at 1). With k paths every pair is
tested at ``alpha / (k (k - 1) / 2)`` (Bonferroni), so the chance that any false winner is
ever declared stays under ``alpha = 1 - confidence``. A path wins when its rate is the
highest and it differs from every other path at that level.

Assumptions: each profile converts independently of the others; rates are stable over the
experiment; the normal approximation holds, which is why nothing is decided before every
path has ``min_per_path`` finished profiles. Only profiles whose window has closed count in
the test (converted within it or not): counting a conversion the moment it happens while a
non-conversion only counts when the window closes would make every rate look high early on.

Pure functions of counts: the decider, the bench and the tests call them the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

METHOD = "mSPRT (always-valid, normal mixture, Bonferroni over pairs)"
# Variance of the mixture over the true difference of two rates: the test is most sensitive
# to differences of about sqrt(TAU2) = 5 percentage points, and stays valid for any.
TAU2 = 0.0025


@dataclass(frozen=True)
class PathCounts:
    """What is known of one path: everyone assigned, and the profiles already finished."""

    name: str
    control: bool
    assigned: int
    converted: int  # converted within their window, whether or not it has closed since
    observed: int  # profiles whose window has closed, converted or not: what the test reads
    successes: int  # of those, how many converted

    @property
    def finished(self) -> int:
        """Profiles whose outcome is known: converted, or their window closed."""
        return self.converted + self.observed - self.successes


@dataclass(frozen=True)
class PathResult:
    name: str
    control: bool
    assigned: int
    converted: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    lift_vs_control: float | None
    p_value: float | None


@dataclass(frozen=True)
class Decision:
    winner: str | None
    paths: list[PathResult]


def likelihood_ratio(x1: int, n1: int, x2: int, n2: int, tau2: float = TAU2) -> float:
    """The mSPRT mixture likelihood ratio for "the two rates differ" (1 when no evidence)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    p1, p2 = x1 / n1, x2 / n2
    # The variance from rates pulled half a conversion towards 1/2: a path at 0 % or 100 %
    # would otherwise have no variance at all, and 0 % against 100 % no evidence.
    variance = _spread(x1, n1) + _spread(x2, n2)
    exponent = tau2 * (p1 - p2) ** 2 / (2 * variance * (variance + tau2))
    # Far past any threshold; capping keeps exp() finite.
    return math.sqrt(variance / (variance + tau2)) * math.exp(min(exponent, 700.0))


def _spread(x: int, n: int) -> float:
    p = (x + 0.5) / (n + 1)
    return p * (1 - p) / n


def p_value(x1: int, n1: int, x2: int, n2: int, tau2: float = TAU2) -> float:
    """The always-valid p-value of the pair at these counts: ``min(1, 1 / Lambda)``."""
    return min(1.0, 1.0 / likelihood_ratio(x1, n1, x2, n2, tau2))


def wilson(successes: int, n: int, confidence: float) -> tuple[float, float] | None:
    """Wilson score interval of a rate (a per-path summary, not what decides)."""
    if n <= 0:
        return None
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def decide(paths: list[PathCounts], confidence: float, min_per_path: int) -> Decision:
    """Each path's summary, and the winner if there is one at ``confidence`` now.

    A path's ``p_value`` is the largest (Bonferroni-adjusted) p-value of its comparisons
    with every other path: it wins when it has the highest rate and that is under
    ``1 - confidence``, and only once every path has ``min_per_path`` finished profiles.
    """
    alpha = 1 - confidence
    pairs = len(paths) * (len(paths) - 1) // 2
    control = next((p for p in paths if p.control), None)
    control_rate = _rate(control) if control else None
    results, candidates = [], []
    for path in paths:
        rate = _rate(path)
        others = [o for o in paths if o is not path]
        adjusted = [
            min(1.0, pairs * p_value(path.successes, path.observed, o.successes, o.observed))
            for o in others
        ]
        worst = max(adjusted, default=1.0) if rate is not None else None
        ci = wilson(path.successes, path.observed, confidence)
        lift = None
        if control is not None and path is not control and rate is not None and control_rate:
            lift = (rate - control_rate) / control_rate
        results.append(
            PathResult(
                name=path.name, control=path.control, assigned=path.assigned,
                converted=path.converted, rate=rate, ci_low=ci[0] if ci else None,
                ci_high=ci[1] if ci else None, lift_vs_control=lift, p_value=worst,
            )
        )  # fmt: skip
        best = rate is not None and all(
            _rate(o) is not None and rate > (_rate(o) or 0.0) for o in others
        )
        if best and worst is not None and worst <= alpha:
            candidates.append(path.name)
    ready = all(p.finished >= min_per_path and p.observed > 0 for p in paths)
    winner = candidates[0] if ready and len(candidates) == 1 else None
    return Decision(winner, results)


def _rate(path: PathCounts) -> float | None:
    return path.successes / path.observed if path.observed else None
