"""No experiment tracker: the job's own result.json and metrics.jsonl only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coreset_interp.trackers.base import TRACKERS, Tracker


@TRACKERS.register
class NoTracker(Tracker):
    """Logs nothing beyond the job's own files."""

    def start(self, config: dict[str, Any], job: dict[str, Any]) -> None:  # noqa: D102
        return None

    def log_ratio(self, entry: dict[str, Any]) -> None:  # noqa: D102
        return None

    def finish(self, result: dict[str, Any], images: dict[str, Path] | None = None) -> None:  # noqa: D102
        return None
