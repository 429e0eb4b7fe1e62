"""The typed job config: built once from the composed config, validated in one line, no defaults of its own,
and the one classification of which values can change a result."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from coreset_interp import identity
from coreset_interp.config import (
    OPTIONAL_NON_RESULT_KEYS,
    OPTIONAL_RESULT_KEYS,
    ConfigError,
    GroupConfig,
    JobConfig,
    non_result_keys,
    ratios_from_percents,
)
from tests.conftest import compose_config

PACKAGE = Path(__file__).resolve().parents[1] / "coreset_interp"

#: identity.NON_RESULT_KEYS as it was spelled by hand before config.py derived it (its semantics are kept).
OLD_NON_RESULT_KEYS = (
    "cache_dir", "cache", "cache.*", "logger", "logger.*", "hydra", "hydra.*", "experiment_name", "progress",
    "skip_completed", "job_heartbeat", "job_heartbeat.*", "num_workers", "batch_size", "n_jobs", "*.n_jobs",
    "extract.chunk_size", "extract.shard", "extract.num_shards", "extract.require_complete",
    "extract.channels_last", "extract.splits", "extract.energies", "extract.null_reference", "plan", "plan.*",
    "viz", "viz.*", "interpreter.working_set", "interpreter.gram_batch",
)  # fmt: skip


@pytest.fixture(scope="module")
def default() -> dict[str, Any]:
    return compose_config(["logger=none"])


def test_default_config_is_typed(default: dict[str, Any]) -> None:
    cfg = JobConfig.from_dict(default)
    assert cfg.ratio.ratios == [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.95]
    assert cfg.metric.alpha == 0.5 and cfg.metric.table1_percents == (10, 20, 30, 40, 50)
    assert cfg.interpreter == GroupConfig("interpreter", "ice", cfg.interpreter.fields)
    assert cfg.interpreter.fields["n_components"] == 10 and "params" not in cfg.interpreter.fields
    assert cfg.selector.name == "moderate" and cfg.logger.node() == {"name": "none"}
    assert cfg.raw is default and cfg.seed == 0 and cfg.selection_seeds == (0,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    # A JobConfig passes through unchanged (the pipeline accepts either).
    assert JobConfig.from_dict(cfg) is cfg


def test_group_nodes_are_flat_and_the_old_shape_fails_in_one_line(default: dict[str, Any]) -> None:
    flat = GroupConfig.from_node("interpreter", {"name": "vebi", "mu": 2.0})
    assert flat.fields == {"mu": 2.0} and flat.node() == {"name": "vebi", "mu": 2.0}
    old = {**default, "interpreter": {"name": "ice", "params": {"n_components": 5}}}
    with pytest.raises(ConfigError, match=r"interpreter.params.n_components -> interpreter.n_components"):
        JobConfig.from_dict(old)


@pytest.mark.parametrize("key", ["batch_size", "progress", "seed", "metric.alpha", "ratio.percents"])
def test_a_missing_key_is_a_one_line_error_naming_it(default: dict[str, Any], key: str) -> None:
    # No default is copied from conf/config.yaml into the code: a missing key fails instead.
    broken = {k: (dict(v) if isinstance(v, dict) else v) for k, v in default.items()}
    node, _, leaf = key.rpartition(".")
    del (broken[node] if node else broken)[leaf]
    with pytest.raises(ConfigError, match=rf"^config has no '{re.escape(key)}'") as err:
        JobConfig.from_dict(broken)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["metric.alpha=2"], r"^metric.alpha must be in \[0, 1\], got 2"),
        (["ratio.percents=[0]"], r"^ratio must be in \(0, 1\]"),
        (["device=gpu"], r"^device must be auto, cpu, cuda or cuda:N"),
        (["n_jobs=0"], r"^n_jobs must be 'auto', -1 or a positive integer"),
        (["selector.name=nope"], r"^unknown selector 'nope'; choose one of: "),
        (["interpreter.name=nope"], r"^unknown interpreter 'nope'; choose one of: "),
        (["+interpreter.bogus=1"], r"^interpreter 'ice' has no field\(s\) 'bogus'; valid: n_components"),
        (["+selector.bogus=1"], r"^selector 'moderate' has no field\(s\) 'bogus'"),
        (["seed=-1"], r"^seeds must be non-negative integers"),
    ],
)
def test_bad_values_are_one_line_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        JobConfig.from_dict(compose_config(["logger=none", *overrides]))
    assert "\n" not in str(err.value)


def test_ratio_percents() -> None:
    assert ratios_from_percents([20, 5, 20, 100]) == [0.2, 0.05, 1.0]
    for bad in ([0], [150], [], [True], ["20"], [12.5]):
        with pytest.raises(ConfigError):
            ratios_from_percents(bad)


def test_every_config_key_is_a_classified_field(default: dict[str, Any]) -> None:
    fields = {f.name: f for f in dataclasses.fields(JobConfig)}
    optional = set(OPTIONAL_RESULT_KEYS) | set(OPTIONAL_NON_RESULT_KEYS)
    assert set(default) <= set(fields) | optional, set(default) - set(fields) - optional
    for name, f in fields.items():
        if name != "raw":
            assert isinstance(f.metadata.get("result"), bool), name
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, name


def test_non_result_keys_come_from_config_and_keep_their_meaning() -> None:
    assert non_result_keys() == identity.NON_RESULT_KEYS
    # Everything classified before is still classified; the flat group shape is classified too.
    assert set(OLD_NON_RESULT_KEYS) <= set(identity.NON_RESULT_KEYS)
    assert {"interpreter.working_set", "interpreter.gram_batch"} <= set(identity.NON_RESULT_KEYS)
    assert not identity.can_change_a_number("batch_size") and identity.can_change_a_number("metric.alpha")
    assert identity.can_change_a_number("extract.autocast") and identity.can_change_a_number("device")


def test_owned_modules_copy_no_config_default() -> None:
    # ``cfg.get("batch_size", 128)`` restated conf/ in the code; the modules of the job read typed fields.
    owned = ["config", "results", "job", "pipeline", "workspace", "entries", "run", "identity", "jobstate"]
    owned += ["callbacks", "metrics/compare", "metrics/compare_log"]
    pattern = re.compile(r"cfg\.get\(\s*['\"][^'\"]+['\"]\s*,")
    offenders = [m for m in owned if pattern.search((PACKAGE / f"{m}.py").read_text())]
    assert offenders == []
