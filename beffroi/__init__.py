"""Beffroi: telemetry backend for a city's connected equipment (CLI, settings, local stack)."""

__version__ = "0.1.0"
