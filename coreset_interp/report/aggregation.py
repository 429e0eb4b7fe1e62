"""Merging a sweep's completed jobs into one :class:`~coreset_interp.report.series.Series` per
configuration (mean over seeds per rho), and how the jobs used the artifact cache."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coreset_interp.cache import ArtifactCache
from coreset_interp.identity import differing_keys, format_value, identity_key, result_identity
from coreset_interp.report import keys as K
from coreset_interp.report.load import JobResult, selector_label
from coreset_interp.report.series import Series, figure_hook, layer_data
from coreset_interp.viz import INTERPRETER_ORDER, SELECTOR_ORDER, finite_number, ordered
from coreset_interp.viz_reality import reference_summary

SeriesKey = tuple[str, str, str, str, str]


def aggregate(results: Sequence[JobResult]) -> list[Series]:
    """Merge completed jobs into one :class:`Series` per configuration (see :mod:`coreset_interp.report`).

    Args:
        results: loaded results, oldest first (newer jobs of the same seed and rho replace older ones).

    Returns:
        The series, in a stable order, each with its ``variant`` (the values that set it apart from the
        other series of its (dataset, model, selector, interpreter); empty when there is none).
    """
    # key -> percent -> seed -> entry
    raw: dict[SeriesKey, dict[int, dict[int, dict[str, Any]]]] = {}
    meta: dict[SeriesKey, dict[str, Any]] = {}
    for res in results:
        p = res.payload
        if res.status != "completed":
            continue
        config = res.config
        key = (
            str(p.get(K.DATASET, "?")),
            str(p.get(K.MODEL, "?")),
            selector_label(p),
            str(p[K.INTERPRETER]),
            identity_key(config),
        )
        seed = int(config.get("seed", 0))
        for entry in p.get(K.RATIOS) or []:
            if isinstance(entry, dict) and K.PERCENT in entry:
                raw.setdefault(key, {}).setdefault(int(entry[K.PERCENT]), {})[seed] = entry
        m = meta.setdefault(key, {"by_seed": {}, "intact": [], "nulls": [], "jobs": [], "payloads": []})
        m["identity"] = result_identity(config)
        m["by_seed"].setdefault(seed, {}).update(p.get(K.FULL) or {})
        m["jobs"].append(str(res.path.parent))
        m["payloads"].append(p)
        if finite_number(p.get(K.MODEL_ACCURACY)) is not None:
            m["intact"].append(float(p[K.MODEL_ACCURACY]))
        null = p.get(K.NULL_REFERENCE) or {}
        if isinstance(null, dict) and finite_number(null.get(K.PHI)) is not None:
            m["nulls"].append(float(null[K.PHI]))
    variants = _variants({k: meta[k]["identity"] for k in meta})
    return [
        _series(key, raw.get(key, {}), meta[key], variants[key]) for key in _sorted_keys(raw.keys() | meta)
    ]


def _series(
    key: SeriesKey, by_percent: dict[int, dict[int, dict[str, Any]]], m: dict[str, Any], variant: str
) -> Series:
    """One series from its entries (percent -> seed -> rho entry) and its jobs' facts."""
    hook = figure_hook(key[3])
    s = Series(*key[:4], jobs=m["jobs"], variant=variant, identity=m["identity"], hook=hook)
    for percent, by_seed in sorted(by_percent.items()):
        entries = list(by_seed.values())
        s.points[percent] = {
            k: float(np.mean(vals))
            for k in K.POINT_METRICS
            if (vals := [v for e in entries if (v := finite_number(e.get(k))) is not None])
        }
        s.layers.update(layer_data(entries, hook))
    if hook.layer_units:
        # The full-data fit's units of the newest job that has them (every job of a series shares that fit).
        for p in m["payloads"]:
            units = (p.get(K.FULL) or {}).get(hook.layer_units)
            if isinstance(units, dict):
                s.full_layer_units = dict(units)
    fulls = list(m["by_seed"].values())
    s.full = {
        k: float(np.mean(vals))
        for k in K.FULL_METRICS
        if (vals := [v for f in fulls if (v := finite_number(f.get(k))) is not None])
    }
    s.model_accuracy = float(np.mean(m["intact"])) if m["intact"] else None
    s.null_phi = float(np.mean(m["nulls"])) if m["nulls"] else None
    s.reality = series_bands(m["payloads"])
    return s


def _variants(identities: dict[SeriesKey, dict[str, Any]]) -> dict[SeriesKey, str]:
    """Per series key, ``k=v, ...`` of the values that differ between the series sharing its (dataset,
    model, selector, interpreter); empty for a series that is alone there."""
    groups: dict[tuple[str, ...], list[SeriesKey]] = {}
    for key in identities:
        groups.setdefault(key[:4], []).append(key)
    out: dict[SeriesKey, str] = {}
    for keys in groups.values():
        differ = differing_keys(identities[k] for k in keys) if len(keys) > 1 else []
        for k in keys:
            ident = identities[k]
            out[k] = ", ".join(f"{d}={format_value(ident[d]) if d in ident else '-'}" for d in differ)
    return out


def _sorted_keys(keys: Iterable[SeriesKey]) -> list[SeriesKey]:
    keys = list(keys)
    sel_order = ordered((k[2].split("<-")[0] for k in keys), SELECTOR_ORDER)
    int_order = ordered((k[3] for k in keys), INTERPRETER_ORDER)
    return sorted(
        keys,
        key=lambda k: (k[0], k[1], sel_order.index(k[2].split("<-")[0]), k[2], k[4], int_order.index(k[3])),
    )


def series_bands(payloads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The floor and null of a series' jobs (they are per model x interpreter, so the jobs agree).

    Args:
        payloads: the series' completed results.

    Returns:
        ``floor`` and ``null`` summaries (each absent when no job computed it).
    """
    out: dict[str, Any] = {}
    for p in payloads:
        for key, name in (("floor", K.NOISE_FLOOR), ("null", K.NULL_REFERENCE)):
            if key not in out and (summary := reference_summary(p.get(name))) is not None:
                out[key] = summary
    return out


def artifact_summary(results: Sequence[JobResult]) -> dict[str, Any]:
    """How the sweep's jobs used the cache, from the ``artifacts`` records of their result.json.

    Args:
        results: loaded results.

    Returns:
        ``kinds``: kind -> {computed, reused, compute_seconds}; ``fit_full``: one entry per full-data fit
        key with the (model, interpreter), its ``role`` (``reference``, or ``null`` for the random-weights
        reference of SPEC 5, read from the cache's specs when the cache is reachable), the jobs that
        computed it and how many used it; ``duplicates``: keys computed by more than one job (none when
        the lock works).
    """
    kinds: dict[str, dict[str, float]] = {}
    computed_by: dict[tuple[str, str], list[str]] = {}
    fit_full: dict[str, dict[str, Any]] = {}
    for res in results:
        p = res.payload
        cache_dir = res.config.get("cache_dir")
        for rec in p.get(K.ARTIFACTS) or []:
            kind, key = str(rec.get(K.ARTIFACT_KIND)), str(rec.get(K.ARTIFACT_KEY))
            computed = bool(rec.get(K.ARTIFACT_COMPUTED))
            k = kinds.setdefault(kind, {"computed": 0, "reused": 0, "compute_seconds": 0.0})
            k["computed" if computed else "reused"] += 1
            if computed:
                k["compute_seconds"] += float(rec.get(K.ARTIFACT_SECONDS) or 0.0)
                computed_by.setdefault((kind, key), []).append(res.name)
            if kind == "fit_full":
                if key not in fit_full:
                    fit_full[key] = {
                        "model": p.get(K.MODEL),
                        "interpreter": p.get(K.INTERPRETER),
                        "role": fit_role(cache_dir, key),
                        "computed_in": [],
                        "used_by": 0,
                    }
                fit_full[key]["used_by"] += 1
                if computed:
                    fit_full[key]["computed_in"].append(res.name)
    duplicates = {f"{kind}/{key}": jobs for (kind, key), jobs in computed_by.items() if len(jobs) > 1}
    return {"kinds": kinds, "fit_full": fit_full, "duplicates": duplicates}


def fit_role(cache_dir: str | None, key: str) -> str:
    """Args:
        cache_dir: the job's cache folder (None = not known).
        key: a ``fit_full`` artifact key.

    Returns:
        ``reference``, ``null`` (a fit on the random-weights model, read from the specs of the fit and its
        train activations) or ``unknown`` (no cache, or an artifact no longer there).
    """
    if not cache_dir:
        return "unknown"
    cache = ArtifactCache(Path(cache_dir))
    spec = cache.spec("fit_full", key)
    acts = cache.spec("activations", str(spec["train"])) if spec and "train" in spec else None
    if acts is None:
        return "unknown"
    return "null" if (acts.get("model") or {}).get("weights") == "random" else "reference"
