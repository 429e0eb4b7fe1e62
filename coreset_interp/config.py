"""The typed job config: built once from the composed, resolved Hydra config, validated, passed down.

:meth:`JobConfig.from_dict` turns the resolved config (``OmegaConf.to_container(cfg, resolve=True)``) into
frozen dataclasses and runs every check that used to be spread over the pipeline (ratios, ``metric.alpha``,
device, ``n_jobs``, the selector's and interpreter's names and fields), each failing in one line. Defaults
live only in ``conf/``: the dataclasses have none, so a missing key is a one-line error naming it.

Every field states whether it can change a number of the result (``metadata["result"]``):
:func:`non_result_keys` derives from that the one list the report's series identity, ``skip_completed``
(:mod:`coreset_interp.identity`) read. Group nodes (``selector``, ``interpreter``, ``model``, ``dataset``,
``logger``) are :class:`GroupConfig`: ``name`` plus the entry's constructor fields (the flat shape).
:attr:`JobConfig.raw` keeps the resolved
dict for result.json's ``config`` and for modules that still take a mapping.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A bad value in the job's configuration (reported in one line, without a traceback)."""


def _result(doc: str) -> Any:
    """A field that can change a number of the result (part of the series identity and of skip_completed)."""
    return field(metadata={"result": True, "doc": doc})


def _other(doc: str) -> Any:
    """A field that cannot change any number: where things go, speed, logging, figures."""
    return field(metadata={"result": False, "doc": doc})


#: Fields inside group nodes that cannot change a number: any group's worker count and the interpreters'
#: ``speed_only`` fields (VEBI's lasso working set and Gram batch rows; a contract test checks the two agree).
GROUP_NON_RESULT_KEYS: tuple[str, ...] = ("*.n_jobs", "interpreter.working_set", "interpreter.gram_batch")
#: Keys outside the job config proper that may appear in a stored config and change nothing.
EXTERNAL_NON_RESULT_KEYS: tuple[str, ...] = ("hydra", "hydra.*")
#: Fields holding a mapping whose whole subtree is classified with them.
_NESTED = ("logger", "viz", "cache", "job_heartbeat")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


@dataclass(frozen=True)
class GroupConfig:
    """One registry group's node: the entry's ``name`` and its constructor fields.

    Attributes:
        group: the config group (``selector``, ``interpreter``, ``model``, ``dataset``, ``logger``).
        name: the registry entry.
        fields: the entry's fields besides ``name``.
    """

    group: str
    name: str
    fields: Mapping[str, Any]

    @classmethod
    def from_node(cls, group: str, node: Any) -> GroupConfig:
        """Args:
            group: the group's name (for errors).
            node: its resolved config node.

        Returns:
            The group config.

        Raises:
            ConfigError: when the node is not a mapping or has no ``name``.
        """
        if not isinstance(node, Mapping) or "name" not in node:
            raise ConfigError(f"{group} config must be a mapping with a 'name', got {node!r}")
        # An old ``params`` block stays a field: the registry rejects it in one line naming the new paths.
        return cls(group, str(node["name"]), {k: v for k, v in node.items() if k != "name"})

    def node(self) -> dict[str, Any]:
        """Returns:
        The flat node: ``name`` plus the fields.
        """
        return {"name": self.name, **dict(self.fields)}


@dataclass(frozen=True)
class RatioConfig:
    """The selection ratios."""

    percents: tuple[int, ...] = _result("integer percentages of the train split each coreset keeps")

    @property
    def ratios(self) -> list[float]:
        """Returns:
        rho per percent, in order, without duplicates.
        """
        return ratios_from_percents(list(self.percents))


@dataclass(frozen=True)
class MetricConfig:
    """The comparison's settings (``conf/metric``)."""

    alpha: float = _result("partial-whitening alpha of the shape metric, in [0, 1]")
    table1_percents: tuple[int, ...] = _result("the ratios whose Phi enters Table 1")
    null_reference: bool = _result("also compare with a random-weights model")
    floor: bool = _result("compute the bootstrap noise floor")
    floor_resamples: int = _result("bootstrap resamples of the noise floor")
    cascade: bool = _result("cascading randomisation")
    backend: str = _result("where the shape metric runs (auto, numpy, torch)")


@dataclass(frozen=True)
class JobConfig:
    """The whole job config, typed and validated (see the module docstring)."""

    model: GroupConfig = _result("the model group")
    dataset: GroupConfig = _result("the dataset group")
    selector: GroupConfig = _result("the selector group")
    interpreter: GroupConfig = _result("the interpreter group")
    ratio: RatioConfig = _result("the selection ratios")
    metric: MetricConfig = _result("the comparison")
    logger: GroupConfig = _other("the tracker")
    seed: int = _result("seed of selection and interpretation")
    selection_seeds: tuple[int, ...] = _result("seeds of the coreset selection alone")
    viz: Mapping[str, Any] = _other("which heatmaps are saved and drawn")
    device: str = _result("auto, cpu, cuda or cuda:N")
    cache_dir: str = _other("the artifact cache")
    cache: Mapping[str, Any] = _other("the cache's locks and damage handling")
    skip_completed: bool = _other("skip a job completed for the same config and code")
    job_heartbeat: Mapping[str, Any] = _other("the running job's heartbeat")
    activation_dtype: str = _result("storage type of the cached maps")
    batch_size: int = _other("batch size of extraction and evaluation passes")
    num_workers: Any = _other("DataLoader workers")
    extract: Mapping[str, Any] = _result("the extraction pass (see EXTRACT_NON_RESULT_KEYS)")
    n_jobs: Any = _other("workers for per-class work")
    progress: bool = _other("progress bars")
    experiment_name: str = _other("W&B group and report title")
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False, metadata={"result": None})

    @classmethod
    def from_dict(cls, resolved: Mapping[str, Any]) -> JobConfig:
        """Build and validate the job config.

        Args:
            resolved: the composed, resolved config as a plain dict.

        Returns:
            The job config (``raw`` is ``resolved``).

        Raises:
            ConfigError: one line naming a missing key or a bad value.
        """
        if isinstance(resolved, JobConfig):
            return resolved
        values = {f.name: _required(resolved, f.name) for f in dataclasses.fields(cls) if f.name != "raw"}
        for group in ("model", "dataset", "selector", "interpreter", "logger"):
            values[group] = GroupConfig.from_node(group, values[group])
        values["ratio"] = RatioConfig(tuple(_required(values["ratio"], "percents", "ratio")))
        metric = values["metric"]
        fields = {f.name: _required(metric, f.name, "metric") for f in dataclasses.fields(MetricConfig)}
        values["metric"] = MetricConfig(**{**fields, "table1_percents": tuple(fields["table1_percents"])})
        values["selection_seeds"] = tuple(_as_list(values["selection_seeds"]))
        cfg = cls(**values, raw=resolved)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Every check that needs no data: fails in one line before any expensive work.

        Raises:
            ConfigError: for a bad value (ratios, alpha, device, n_jobs, seeds, group names or fields).
        """
        self.ratio.ratios  # noqa: B018 - validates ratio.percents
        alpha = self.metric.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"metric.alpha must be in [0, 1], got {alpha}")
        if not _DEVICE.match(str(self.device)):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for seed in (self.seed, *self.selection_seeds):
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ConfigError(f"seeds must be non-negative integers, got {seed!r}")
        from coreset_interp.parallel import resolve_n_jobs

        try:
            resolve_n_jobs(self.n_jobs)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.build_interpreter()
        self.build_selector()

    def build_interpreter(self) -> Any:
        """Returns:
        The job's interpreter (:func:`coreset_interp.interpreters.get_interpreter` of the group node).

        Raises:
            ConfigError: for an unknown name or field, or a value its constructor rejects.
        """
        from coreset_interp.interpreters import INTERPRETERS

        return _build(INTERPRETERS, self.interpreter)

    def build_selector(self) -> Any:
        """Returns:
        The job's selector.

        Raises:
            ConfigError: for an unknown name or field, or a value its constructor rejects.
        """
        from coreset_interp.selectors import SELECTORS

        return _build(SELECTORS, self.selector)


def raw_config(cfg: JobConfig | Mapping[str, Any]) -> Mapping[str, Any]:
    """Args:
        cfg: a job config or a resolved mapping.

    Returns:
        The resolved mapping (for modules that still read one).
    """
    return cfg.raw if isinstance(cfg, JobConfig) else cfg


def _build(registry: Any, group: GroupConfig) -> Any:
    try:
        return registry.build(group.node())
    except (TypeError, ValueError) as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise ConfigError(lines[0]) from None


def _required(node: Any, key: str, where: str = "") -> Any:
    path = f"{where}.{key}" if where else key
    if not isinstance(node, Mapping):
        raise ConfigError(f"config {where or 'root'} must be a mapping, got {node!r}")
    if key not in node:
        raise ConfigError(f"config has no '{path}' (its default belongs in conf/)")
    return node[key]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def ratios_from_percents(percents: Any) -> list[float]:
    """Validate the ``ratio.percents`` list.

    Args:
        percents: integer percentages (a single number is accepted too).

    Returns:
        Ratios rho in (0, 1], in the given order, without duplicates.

    Raises:
        ConfigError: for a value outside (0, 100], a non-integer percent or an empty list.
    """
    if isinstance(percents, int | float):
        percents = [percents]
    out: list[float] = []
    for p in list(percents):
        if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p):
            raise ConfigError(f"ratio percents must be numbers in (0, 100], got {p!r}")
        if not 0 < p <= 100:
            raise ConfigError(f"ratio must be in (0, 1]: got {p}% (ratio.percents are integer percentages)")
        if float(p) != int(p):
            # Integer percents keep run names, cache keys and report rows exact (no 0.15000000000000002).
            raise ConfigError(f"ratio.percents are integer percentages, got {p}")
        rho = round(float(p) / 100.0, 6)
        if rho not in out:
            out.append(rho)
    if not out:
        raise ConfigError("ratio.percents is empty")
    return out


#: Keys of the ``extract`` block that cannot change a number (``extract.autocast`` can: it changes the
#: stored numbers on CUDA and is in the store's key).
EXTRACT_NON_RESULT_KEYS: tuple[str, ...] = (
    "chunk_size", "shard", "num_shards", "require_complete", "channels_last", "splits", "energies",
    "null_reference",
)  # fmt: skip
#: Optional top-level blocks (absent from some configs) that cannot change a number.
OPTIONAL_NON_RESULT_KEYS: tuple[str, ...] = ("plan",)
#: Optional top-level blocks that can: a dataset's defaults for the other groups
#: (``conf/dataset_defaults/<dataset>.yaml``, read through interpolations into ``model`` and the store).
OPTIONAL_RESULT_KEYS: tuple[str, ...] = ("dataset_defaults",)


def non_result_keys() -> tuple[str, ...]:
    """The dotted-key patterns (``fnmatch``) of config values that cannot change a number, derived from
    the fields' ``result`` metadata: a field that cannot names itself and its subtree.

    Returns:
        The patterns (:data:`coreset_interp.identity.NON_RESULT_KEYS`).
    """
    out: list[str] = []
    for f in dataclasses.fields(JobConfig):
        if f.metadata.get("result") is not False:
            continue
        out.append(f.name)
        if f.name in _NESTED:
            out.append(f"{f.name}.*")
    for name in OPTIONAL_NON_RESULT_KEYS:
        out += [name, f"{name}.*"]
    out += [f"extract.{k}" for k in EXTRACT_NON_RESULT_KEYS]
    return (*out, *EXTERNAL_NON_RESULT_KEYS, *GROUP_NON_RESULT_KEYS)
