"""The benchmark's pure helpers: percentiles and the report table."""

from __future__ import annotations

import pytest

from bench.common import Counts, Figure, Report, percentile
from bench.report import markdown_table, memory_figures


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted on purpose
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7
    assert percentile([1.0, 2.0], 50) == 1


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_quick_counts_are_smaller_but_keep_batch_sizes() -> None:
    full, quick = Counts(), Counts().divided(10)
    assert quick.e2e_profiles == full.e2e_profiles // 10
    assert quick.latency_per_s == full.latency_per_s // 10
    assert quick.ingest_batch == full.ingest_batch


def test_the_table_has_value_with_unit_target_and_method() -> None:
    table = markdown_table([Figure("Ingest", 9_842.4, "events/s", "how", "10,000 events/s")])
    assert table.splitlines()[-1] == "| Ingest | 9,842 events/s | 10,000 events/s | how |"


def test_each_service_keeps_its_highest_peak_memory() -> None:
    report = Report()
    report.record_peak("runtime", 100 * 2**20, "end to end")
    report.record_peak("runtime", 50 * 2**20, "deliveries")
    (figure,) = memory_figures(report)
    assert (figure.figure, figure.value) == ("Peak memory, runtime", 100)
    assert "end to end" in figure.method
