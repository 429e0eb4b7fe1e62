"""One job end to end on the embedded default (trained resnet18 on digits, ICE): result keys and known
answers, bad configs failing before any work, result.json on failure, and the cache hit of a second run.

The jobs here use the session cache, so the CLI tests (tests/test_run_cli.py) find their artifacts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coreset_interp import pipeline
from coreset_interp.pipeline import ConfigError, ratios_from_percents, run, run_job
from coreset_interp.results import JobResult
from coreset_interp.selectors import class_budget

RATIO_KEYS = {
    "ratio",
    "n_selected",
    "accuracy",
    "angular_distance",
    "angular_distance_per_class",
    "select_seconds",
    "fit_seconds",
}
TOP_KEYS = {
    "status",
    "error",
    "config",
    "model",
    "dataset",
    "selector",
    "interpreter",
    "model_accuracy",
    "full",
    "ratios",
    "table1",
}


def _job(tmp: Path) -> dict[str, Any]:
    return {"dir": tmp, "name": "test", "group": "tests", "tags": [], "job_type": "ice"}


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@pytest.fixture(scope="module")
def moderate_job(make_config, digits_workspace, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The default job (moderate, ICE) at 5, 10, 20 and 95 %, through run_job as the command runs it."""
    folder = tmp_path_factory.mktemp("moderate_job")
    cfg = make_config(["ratio.percents=[5,10,20,95]"])
    payload = run_job(cfg, _job(folder))
    return {"cfg": cfg, "dir": folder, "payload": payload}


@pytest.fixture(scope="module")
def random_result(make_config, digits_workspace) -> dict[str, Any]:
    return run(make_config(["selector=random", "ratio.percents=[5,95]"]))


def _check_result(res: dict[str, Any], percents: list[int], n_train: dict[int, int]) -> None:
    assert res["model"] == "resnet18" and res["dataset"] == "digits" and res["interpreter"] == "ice"
    assert 0.95 <= res["model_accuracy"] <= 1.0
    assert _finite(res["full"]["accuracy"]) and _finite(res["full"]["fit_seconds"])
    assert abs(res["full"]["accuracy"] - res["model_accuracy"]) <= 0.10
    assert [e["percent"] for e in res["ratios"]] == percents
    for e in res["ratios"]:
        assert e.keys() >= RATIO_KEYS
        assert e["ratio"] == pytest.approx(e["percent"] / 100)
        # Per class budget max(1, round(rho * n_c)), summed over classes.
        assert e["n_selected"] == sum(class_budget(n, e["ratio"]) for n in n_train.values())
        for key in ("accuracy", "angular_distance", "select_seconds", "fit_seconds"):
            assert _finite(e[key]), key
        assert 0.0 <= e["accuracy"] <= 1.0
        per_class = e["angular_distance_per_class"]
        assert sorted(per_class, key=int) == [str(c) for c in range(10)]
        assert all(_finite(v) and 0.0 <= v <= math.pi for v in per_class.values())
        assert e["angular_distance"] == pytest.approx(np.mean(list(per_class.values())))
    phi = {e["percent"]: e["angular_distance"] for e in res["ratios"]}
    # Almost all data interprets (almost) like all data: closer than a 5 % coreset.
    assert phi[95] < phi[5]


@pytest.mark.slow
def test_default_job_result_json(moderate_job: dict[str, Any], digits_workspace) -> None:
    n_train = {c: len(digits_workspace.train.class_indices(c)) for c in range(10)}
    written = json.loads((moderate_job["dir"] / "result.json").read_text())
    assert written["status"] == "completed", written.get("error")
    assert written.keys() >= TOP_KEYS
    assert written["error"] is None
    assert written["selector"] == "moderate"
    assert written["config"]["ratio"]["percents"] == [5, 10, 20, 95]
    _check_result(written, [5, 10, 20, 95], n_train)
    # Table 1 statistics over the covered percents in 10..50 only.
    phis = [e["angular_distance"] for e in written["ratios"] if e["percent"] in (10, 20)]
    assert written["table1"]["percents"] == [10, 20]
    assert written["table1"]["mean"] == pytest.approx(np.mean(phis))
    assert written["table1"]["std"] == pytest.approx(np.std(phis))
    # The null reference (a randomly initialised model) is farther than any coreset's interpretation.
    null = written["null_reference"]["angular_distance"]
    assert _finite(null) and null > max(e["angular_distance"] for e in written["ratios"])
    # The extraction passes the job ran (none when the session's cache had the stores): ICE reads maps only.
    for p in written["extraction"]:
        assert p["images_per_second"] > 0 and set(p["parts"]) <= {"core", "maps"}
    # One metrics.jsonl line per finished ratio, as written during the job.
    lines = (moderate_job["dir"] / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["percent"] for line in lines] == [5, 10, 20, 95]
    # results.py is the one definition of what was written: it reads it back key for key.
    assert JobResult.from_json(written).to_json() == written
    prov = written["provenance"]
    assert prov["device"] == str(digits_workspace.device) and prov["torch"]
    assert prov["version"] == written["code"]["version"]


@pytest.mark.slow
def test_random_selector_result(random_result: dict[str, Any], digits_workspace) -> None:
    n_train = {c: len(digits_workspace.train.class_indices(c)) for c in range(10)}
    assert random_result["selector"] == "random"
    _check_result(random_result, [5, 95], n_train)
    # No ratio in 10..50: no Table 1 entry, reported as such rather than as a number.
    assert random_result["table1"] == {"mean": None, "std": None, "n": 0, "percents": []}


@pytest.mark.slow
def test_second_run_hits_the_cache(moderate_job: dict[str, Any]) -> None:
    first = moderate_job["payload"]
    second = run(moderate_job["cfg"])
    kinds = {a["kind"] for a in second["artifacts"]}
    assert {"checkpoint", "activations", "coreset", "fit", "fit_full"} <= kinds
    assert [a for a in second["artifacts"] if a["computed"]] == []
    # Cached artifacts give the same numbers.
    for a, b in zip(first["ratios"], second["ratios"], strict=True):
        assert a["angular_distance_per_class"] == b["angular_distance_per_class"]
        assert a["accuracy"] == b["accuracy"] and a["n_selected"] == b["n_selected"]
    assert second["full"]["accuracy"] == first["full"]["accuracy"]


def test_ratio_percents_validation() -> None:
    assert ratios_from_percents([20, 5, 20, 100]) == [0.2, 0.05, 1.0]
    assert ratios_from_percents(30) == [0.3]
    for bad in ([0], [150], [-5], [], [True], ["20"], [float("nan")], [12.5]):
        with pytest.raises(ConfigError):
            ratios_from_percents(bad)


@pytest.mark.parametrize("percents", ["[0]", "[150]", "[20,0]"])
def test_bad_ratio_fails_before_any_work(make_config, tmp_path: Path, percents: str) -> None:
    cfg = make_config([f"ratio.percents={percents}"], cache_dir=tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"ratio must be in \(0, 1\]"):
        run(cfg)
    assert not (tmp_path / "cache").exists()


def test_bad_selector_fails_before_any_work(make_config, tmp_path: Path) -> None:
    # A fresh cache: had the check come late, the job would start training here.
    cfg = make_config(["selector.name=nope"], cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="unknown selector 'nope'; choose one of"):
        run(cfg)
    assert not (tmp_path / "cache").exists()


def test_bad_alpha_and_interpreter_fail_before_any_work(make_config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="alpha"):
        run(make_config(["metric.alpha=2"], cache_dir=tmp_path / "cache"))
    with pytest.raises(ValueError, match="unknown interpreter"):
        run(make_config(["interpreter.name=nope"], cache_dir=tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_failed_job_writes_result_json(make_config, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dataset"
    cfg = make_config(["dataset=imagefolder", f"dataset.root={missing}"], cache_dir=tmp_path / "cache")
    payload = run_job(cfg, _job(tmp_path / "job"))
    written = json.loads((tmp_path / "job" / "result.json").read_text())
    assert payload["status"] == written["status"] == "failed"
    assert written["error"].startswith("FileNotFoundError: ")
    assert str(missing) in written["error"]
    assert written["config"]["dataset"]["root"] == str(missing)
    assert not (tmp_path / "job" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_failure_mid_job_keeps_finished_ratios(
    make_config, moderate_job: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: the real evaluation step, made to fail at the second ratio (nothing else is faked).
    # Fits and comparisons of every rho come first (the class-outer comparison needs them all); entries
    # are then built and written rho by rho, so the first rho's line is written before the failure.
    real = pipeline.evaluate_fit
    coreset_calls: list[str] = []

    def failing(interp, ctx, fit, coreset_key, seed):  # noqa: ANN001, ANN202 - the real signature
        if coreset_key is not None:
            coreset_calls.append(coreset_key)
            if len(coreset_calls) == 2:
                raise RuntimeError("injected failure at rho=0.95")
        return real(interp, ctx, fit, coreset_key, seed)

    monkeypatch.setattr(pipeline, "evaluate_fit", failing)
    payload = run_job(make_config(["ratio.percents=[5,95]"]), _job(tmp_path))
    written = json.loads((tmp_path / "result.json").read_text())
    assert payload["status"] == written["status"] == "failed"
    assert written["error"] == "RuntimeError: injected failure at rho=0.95"
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["percent"] for e in lines] == [5]
    assert _finite(lines[0]["angular_distance"])


def test_pipeline_only_runs_stages() -> None:
    # The job's body reads as a list of stages (lightning-hydra-template's train()); modules stay small.
    import inspect

    assert len(inspect.getsource(pipeline.run_stages).splitlines()) < 80
    assert len(inspect.getsource(pipeline.run).splitlines()) < 80
    package = Path(pipeline.__file__).parent
    for name in ("pipeline", "job", "config", "results", "workspace", "entries", "metrics/compare"):
        assert len((package / f"{name}.py").read_text().splitlines()) <= 400, name
