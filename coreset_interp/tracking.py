"""The job's own files on disk: ``result.json`` and ``metrics.jsonl`` (the trackers, the ``logger`` group,
are :mod:`coreset_interp.trackers`).

Whatever the tracker, every job writes ``result.json`` (at start with status ``running``, at the end with
``completed`` or ``failed``) and appends one line per finished rho to ``metrics.jsonl``, so nothing is lost
when a job dies.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np


class JobFiles:
    """The job's own files: ``result.json`` and ``metrics.jsonl`` in the job's output folder.

    Args:
        folder: the job's output folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.result_path = self.folder / "result.json"
        self.metrics_path = self.folder / "metrics.jsonl"
        # The job and its heartbeat thread both write result.json.
        self._lock = threading.Lock()

    def write_result(self, payload: dict[str, Any]) -> None:
        """Args:
        payload: the result (written atomically).
        """
        with self._lock:
            write_json(self.result_path, payload)

    def append_metrics(self, entry: dict[str, Any]) -> None:
        """Args:
        entry: one rho's results, appended as a JSON line and flushed.
        """
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(finite_json(entry), default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically (temporary file, then rename), with NaN/inf as null.

    Args:
        path: destination.
        payload: JSON-serialisable data.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(finite_json(payload), indent=2, default=str))
    tmp.replace(path)


def finite_json(obj: Any) -> Any:
    """Args:
        obj: JSON-like data, possibly with NaN/inf floats and numpy scalars.

    Returns:
        The same data with NaN/inf as None, numpy scalars as Python ones and keys as strings.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return finite_json(obj.item())
    return obj
