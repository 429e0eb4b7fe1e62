"""The per-pair comparison logs of the class-outer loop (:mod:`coreset_interp.metrics.compare`).

Every (full fit, other fit, alpha, class) result is appended to a small per-pair log in the cache as soon
as it is computed, so a job killed mid-loop resumes at its first uncompared class. A log is one JSON line
per class (``<cache>/comparison/<key>.jsonl``); a line is written with one ``write`` call and fsynced, so
a crash leaves at most a torn last line, which is ignored on reading (that class is recomputed). Two jobs
appending the same pair (the null reference is shared by every selector's job) write identical values.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from coreset_interp.cache import spec_key
from coreset_interp.interpreters import ClassPhi, Interpreter

log = logging.getLogger(__name__)

#: Folder (under the cache root) of the per-pair comparison logs.
COMPARISON_DIR = "comparison"
#: Version of what a comparison log holds; bump when the metric's numbers change.
COMPARISON_VERSION = 1


def comparison_key(
    interp: Interpreter, full_key: str, other_key: str, alpha: float, val_full: str, val_other: str
) -> str:
    """Cache key of the comparison log of one pair of fits.

    Args:
        interp: the interpreter (its name and parameters).
        full_key: the full-data fit's key.
        other_key: the other fit's key.
        alpha: partial-whitening alpha.
        val_full: the full fit's val activations (folder name = key).
        val_other: the other fit's val activations.

    Returns:
        The hex key.
    """
    return spec_key(
        {
            "version": COMPARISON_VERSION,
            "interpreter": interp.name,
            "params": interp.fit_params(),
            "full": full_key,
            "other": other_key,
            "alpha": float(alpha),
            "val": val_full,
            "val_other": val_other,
        }
    )


class ComparisonLog:
    """The append-only per-class results of one pair (see the module docstring).

    Args:
        path: the log file, or None for a log that keeps nothing (uncached comparisons).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> dict[int, ClassPhi]:
        """Returns:
        The classes already compared (a torn or unparsable line is skipped, so that class is redone).
        """
        if self.path is None or not self.path.is_file():
            return {}
        out: dict[int, ClassPhi] = {}
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
                out[int(row["class"])] = ClassPhi(row["phi"], dict(row.get("per_layer") or {}))
            except (ValueError, KeyError, TypeError):
                log.warning("comparison log %s: skipping a damaged line", self.path)
        return out

    def append(self, c: int, value: ClassPhi) -> None:
        """Record one class's result durably.

        Args:
            c: the class.
            value: its phi.
        """
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"class": int(c), "phi": value.phi, "per_layer": value.per_layer}) + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            # A torn last line (a writer killed mid-write) is closed first, so this line stays whole.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
