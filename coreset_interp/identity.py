"""Which resolved config values can change a number: the identity of a result.

The report keeps jobs apart whenever any value that can change a number differs (two values of
``metric.alpha``, two checkpoints, two ``selector.k``), and merges only jobs that differ in values
that cannot: where outputs and caches go, how the job is logged, launched and parallelised, how it shows
progress. The seed is left out too, on purpose: jobs of one configuration that differ only in seed are the
repetitions the report averages (mean +- std).

The one list of those keys is :data:`NON_RESULT_KEYS` (plus :data:`MERGED_KEYS`, the values the report
averages or merges on purpose), next to the config (``conf/``). A new config key is
part of the identity unless it is classified here, so a forgotten key splits rows (visible) rather than
merging configurations (silent). When a key is added that cannot change a number (an extraction or
parallelism setting, a cache option), add its pattern here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

#: Dotted-key patterns (``fnmatch``; ``*`` also spans dots) of resolved config values that cannot change
#: any number of a job's result. A pattern names a whole subtree when it is followed by ``.*``. Read by the
#: report's series identity and by ``skip_completed`` (:mod:`coreset_interp.jobstate`).
NON_RESULT_KEYS: tuple[str, ...] = (
    # Where outputs and artifacts go, how the job is named, logged and launched.
    "cache_dir",
    "cache",
    "cache.*",
    "logger",
    "logger.*",
    "hydra",
    "hydra.*",
    "experiment_name",
    "progress",
    # Job bookkeeping: skipping completed jobs on a resubmission, the running job's heartbeat.
    "skip_completed",
    "job_heartbeat",
    "job_heartbeat.*",
    # Speed and memory only: worker counts, extraction batches and later extraction/planning settings.
    "num_workers",
    "batch_size",
    "n_jobs",
    "*.n_jobs",
    # extract.autocast is not here: it changes the stored numbers on CUDA (and is in the store's key).
    "extract.chunk_size",
    "extract.shard",
    "extract.num_shards",
    "extract.require_complete",
    "extract.channels_last",
    "extract.splits",
    "extract.energies",
    "extract.null_reference",
    "plan",
    "plan.*",
    # Which heatmaps are drawn and how they are coloured: figures only.
    "viz",
    "viz.*",
    # VEBI's lasso working set and Gram batch rows: the solution does not depend on them.
    "interpreter.working_set",
    "interpreter.gram_batch",
)

#: Values that do change a job's numbers but that the report merges on purpose: the repetitions it
#: averages (mean +- std over seeds), the x axis (rho: a sweep may give each job one ratio or all of them),
#: and report layout or extra references that leave the per-rho numbers alone (Table 1 is recomputed by the
#: report from the per-rho Phi; the null reference only adds a scale). A resubmitted job with another value
#: of these is a different job (``skip_completed`` keeps them).
MERGED_KEYS: tuple[str, ...] = (
    "seed",
    "selection_seeds",
    "selection_seeds.*",
    "ratio",
    "ratio.*",
    "metric.table1_percents",
    "metric.null_reference",
    "metric.floor",
    "metric.floor_resamples",
    "metric.cascade",
)

#: What the report's series identity leaves out.
SERIES_EXCLUDED: tuple[str, ...] = NON_RESULT_KEYS + MERGED_KEYS


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Args:
        config: a nested mapping (a resolved job config).
        prefix: the dotted path of ``config`` itself.

    Returns:
        Dotted key -> leaf value (lists and scalars are leaves; an empty mapping gives no key).
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def can_change_a_number(key: str, patterns: Iterable[str] = SERIES_EXCLUDED) -> bool:
    """Args:
        key: a dotted config key, e.g. ``metric.alpha``.
        patterns: the keys that cannot (default :data:`SERIES_EXCLUDED`, the report's view).

    Returns:
        False when ``key`` matches one of the patterns.
    """
    return not any(fnmatchcase(key, p) for p in patterns)


def result_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a resolved job config that can change a number of its result.

    Args:
        config: the resolved job config (result.json's ``config``).

    Returns:
        Dotted key -> value, sorted by key, without the keys of :data:`SERIES_EXCLUDED`.
    """
    flat = flatten(config)
    return {k: flat[k] for k in sorted(flat) if can_change_a_number(k)}


def identity_key(config: Mapping[str, Any]) -> str:
    """Args:
        config: the resolved job config.

    Returns:
        A canonical string of :func:`result_identity` (equal for jobs of one configuration).
    """
    return json.dumps(result_identity(config), sort_keys=True, default=str)


def format_value(value: Any) -> str:
    """Args:
        value: a config value.

    Returns:
        A short label text (``0`` for 0.0, JSON for lists).
    """
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


def differing_keys(identities: Iterable[Mapping[str, Any]]) -> list[str]:
    """Args:
        identities: :func:`result_identity` of several jobs.

    Returns:
        The sorted keys whose value is not the same in all of them (a key missing somewhere differs).
    """
    items = [dict(i) for i in identities]
    keys = sorted({k for i in items for k in i})
    missing = object()
    return [k for k in keys if len({json.dumps(i.get(k, missing), default=str) for i in items}) > 1]
