"""Command-line entry points: ``ensemble`` and ``ensemble-orchestra``."""
