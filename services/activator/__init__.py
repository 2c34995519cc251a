"""Activator: renders and delivers messages through connectors; feeds back events."""
