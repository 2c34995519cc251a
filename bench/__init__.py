"""Waypost's benchmark: the product's figures beside the machine's raw limits, one run.

``python -m bench`` (``make bench``) starts throwaway PostgreSQL and NATS servers for each
part and the services as ``waypost <service>`` child processes on them, and measures: raw
JetStream and PostgreSQL rates (``raw``), gateway ingestion (``ingest``), events end to end
from the gateway until the runtime committed them and from the gateway until a message
reached a provider (``e2e``), deliveries per second of one activator (``activator``), the
scheduler with 1,000,000 pending timers (``timers``), and each service's peak memory. It
prints a Markdown table of figure, value, target and method and writes it as JSON
(``--json``, default ``bench/results/bench.json``). ``--quick`` divides the counts by ten.
"""
