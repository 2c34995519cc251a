"""Scheduler: owns durable timers; releases waits, timeouts, stale exits."""
