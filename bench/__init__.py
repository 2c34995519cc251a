"""Raw limits of this machine that Waypost's design depends on.

``python -m bench`` starts a throwaway PostgreSQL and two throwaway NATS servers (default
sync and ``sync_interval: always``), measures JetStream publish and consume rates, PostgreSQL
insert rates (batched, COPY, commit per row) and the ``FOR UPDATE SKIP LOCKED`` claim loop the
scheduler uses to release timers, then prints a Markdown table and writes
``bench/results/raw.json``. ``--quick`` divides every count by ten.
"""
