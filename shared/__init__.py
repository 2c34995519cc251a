"""Mechanisms every Waypost service imports: settings, db, bus, clock, logging, metrics.

Nothing in this package knows about journeys or any one service.
"""
