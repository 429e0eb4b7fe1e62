"""Experiment trackers, one module and one registry entry per YAML in ``conf/logger/``."""

from __future__ import annotations

# Each tracker module registers its class with TRACKERS when imported.
from coreset_interp.trackers import none, wandb  # noqa: F401
from coreset_interp.trackers.base import TRACKERS, Tracker, TrackerFallbackWarning, get_logger, list_loggers

__all__ = ["TRACKERS", "Tracker", "TrackerFallbackWarning", "get_logger", "list_loggers"]
