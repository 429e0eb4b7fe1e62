"""The logger group: the :class:`Tracker` base class (one experiment-tracking run per job), its registry
and the group's verbs.

One module per ``conf/logger/<name>.yaml`` (``none.py``, ``wandb.py``) registers its class with
``@TRACKERS.register`` under the module's name; the YAML holds only that constructor's fields.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from coreset_interp.registry import Registry


class Tracker(ABC):
    """One experiment-tracking run per job."""

    @abstractmethod
    def start(self, config: dict[str, Any], job: dict[str, Any]) -> None:
        """Args:
        config: the resolved job config.
        job: ``name``, ``group``, ``dir``, ``tags``, ``job_type``.
        """

    @abstractmethod
    def log_ratio(self, entry: dict[str, Any]) -> None:
        """Args:
        entry: one rho's results.
        """

    @abstractmethod
    def finish(self, result: dict[str, Any], images: dict[str, Path] | None = None) -> None:
        """Close the run with the job's summary.

        Args:
            result: the job's result (``status``, ``table1``, ...).
            images: figures to attach, by name.
        """


TRACKERS: Registry[Tracker] = Registry("logger")


class TrackerFallbackWarning(UserWarning):
    """The tracker could not start or finish as asked and fell back (offline, or no tracker)."""


#: ``get_logger(name, **fields)``: build the entry of ``conf/logger/<name>.yaml`` from its flat fields
#: (:meth:`Registry.get`: an unknown name or field is a one-line error listing the valid ones).
get_logger = TRACKERS.get
#: ``list_loggers()``: the registered names (= the YAML names in ``conf/logger/``).
list_loggers = TRACKERS.names
