"""result.json's one definition: JobResult / RatioEntry round trips, the header-only payloads of running and
failed jobs, Table 1's statistic, and the key list that no other module may spell."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coreset_interp import results
from coreset_interp.results import JobResult, RatioEntry, table1_summary

REPO = Path(__file__).resolve().parents[1]


def _entry(percent: int, phi: float | None) -> dict[str, Any]:
    return {
        "ratio": percent / 100,
        "percent": percent,
        "n_selected": 7 * percent,
        "angular_distance": phi,
        "angular_distance_per_class": {"0": phi, "1": phi},
        "angular_distance_missing": 0 if phi is not None else 2,
        "select_seconds": 0.01,
        "fit_seconds": 0.5,
        "speedup": 3.0,
        "accuracy": 0.9,
        "nmf_error": 12.5,
        "by_selection_seed": [{"selection_seed": 0, "angular_distance": phi}],
    }


def _completed() -> dict[str, Any]:
    return {
        "status": "completed",
        "error": None,
        "config": {"seed": 0},
        "job": {"dir": "/x", "name": "default"},
        "code": {"version": "0.1.0", "commit": None, "changes": None},
        "heartbeat": {"host": "h", "pid": 1},
        "model": "resnet18",
        "dataset": "digits",
        "selector": "moderate",
        "interpreter": "ice",
        "model_accuracy": 0.97,
        "model_info": {"trained_here": True},
        "extraction": [],
        "dataset_info": {},
        "full": {"accuracy": 0.99, "fit_seconds": 1.5},
        "ratios": [_entry(10, 0.2), _entry(20, 0.1), _entry(95, None)],
        "null_reference": {"angular_distance": 0.4, "missing": 0},
        "noise_floor": None,
        "cascade": None,
        "table1": {"mean": 0.15, "std": 0.05, "n": 2, "percents": [10, 20]},
        "table1_phi_normalised": None,
        "artifacts": [{"kind": "fit", "key": "k", "computed": True, "seconds": 0.1}],
        "warnings": [],
        "someday_key": {"kept": 1},
        "wall_seconds": 12.0,
    }


def test_completed_result_round_trips_key_for_key() -> None:
    payload = _completed()
    res = JobResult.from_json(payload)
    assert isinstance(res.ratios[0], RatioEntry) and res.ratios[0].metrics["nmf_error"] == 12.5
    assert res.entry(20).angular_distance == 0.1 and res.entry(50) is None
    assert res.extra == {"someday_key": {"kept": 1}}
    again = res.to_json()
    assert again == payload
    assert json.loads(json.dumps(again)) == payload
    # The header comes first and the trailer last, as result.json has always been written.
    assert list(again)[:6] == ["status", "error", "config", "job", "code", "heartbeat"]
    assert list(again)[-1] == "wall_seconds"


def test_running_and_failed_payloads_hold_the_header_only() -> None:
    running = JobResult(status=results.RUNNING, config={"seed": 0}, job={"dir": "/x"}, code={"v": 1})
    assert running.to_json() == {
        "status": "running", "error": None, "config": {"seed": 0}, "job": {"dir": "/x"}, "code": {"v": 1},
    }  # fmt: skip
    failed = JobResult(status=results.FAILED, error="ConfigError: bad", config={})
    assert failed.to_json() == {"status": "failed", "error": "ConfigError: bad", "config": {}}


def test_table1_summary_known_answer() -> None:
    entries = [_entry(5, 0.9), _entry(10, 0.2), _entry(20, 0.1), _entry(30, None), _entry(95, 0.05)]
    t = table1_summary(entries, (10, 20, 30, 40, 50))
    assert t == {"mean": pytest.approx(0.15), "std": pytest.approx(0.05), "n": 2, "percents": [10, 20, 30]}
    assert table1_summary(entries[:1], (10,)) == {"mean": None, "std": None, "n": 0, "percents": []}


#: Result keys read across modules: spelled in results.py only (and by the method that declares one).
SHARED_KEYS = [
    "percent", "n_selected", "angular_distance", "angular_distance_per_class", "angular_distance_missing",
    "angular_distance_per_layer", "angular_distance_std", "phi_normalised", "phi_normalised_per_class",
    "select_seconds", "fit_seconds", "prepare_seconds", "speedup", "by_selection_seed",
    "vebi_units_per_layer", "model_accuracy", "table1_phi_normalised",
]  # fmt: skip
#: Modules allowed to spell a shared key (report/keys.py takes the shared ones from results.py too).
PENDING = {
    # The methods declare their own keys (``point_metrics``); metrics/shape.py names its function.
    "interpreters/vebi.py", "interpreters/topic.py", "interpreters/ice.py", "metrics/shape.py",
}  # fmt: skip


def test_no_module_outside_results_spells_a_shared_result_key() -> None:
    pattern = re.compile(r"[\"'](" + "|".join(map(re.escape, SHARED_KEYS)) + r")[\"']")
    offenders: dict[str, list[str]] = {}
    for path in sorted((REPO / "coreset_interp").rglob("*.py")):
        rel = path.relative_to(REPO / "coreset_interp").as_posix()
        if rel == "results.py" or rel in PENDING:
            continue
        found = sorted(set(pattern.findall(path.read_text())))
        if found:
            offenders[rel] = found
    for script in ("bench_interpreters.py", "compare_results.py"):
        found = sorted(set(pattern.findall((REPO / "scripts" / script).read_text())))
        if found:
            offenders[f"scripts/{script}"] = found
    assert offenders == {}


def test_compare_results_script(tmp_path: Path) -> None:
    before = _completed()
    after = json.loads(json.dumps(before))
    # Timings, the heartbeat, code, config and artifact records never count.
    after["wall_seconds"], after["ratios"][0]["fit_seconds"] = 99.0, 7.0
    after["heartbeat"]["pid"], after["artifacts"][0]["computed"] = 2, False
    after["provenance"] = {"torch": "x"}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(before))
    b.write_text(json.dumps(after))
    script = [sys.executable, str(REPO / "scripts" / "compare_results.py"), str(a), str(b)]
    same = subprocess.run(script, capture_output=True, text=True)
    assert same.returncode == 0 and same.stdout.startswith("EQUAL: "), same.stdout
    after["ratios"][1]["angular_distance_per_class"]["1"] = 0.1 + 1e-12
    after["table1"].pop("n")
    b.write_text(json.dumps(after))
    diff = subprocess.run(script, capture_output=True, text=True)
    assert diff.returncode == 1
    assert "ratios[1].angular_distance_per_class.1: 0.1 -> 0.100000000001" in diff.stdout
    assert 'table1.n: 2 -> "<absent>"' in diff.stdout
    assert diff.stdout.splitlines()[-1].startswith("DIFFERENT: 2 of ")
    tolerant = subprocess.run(
        [*script, "--ignore", "table1.n", "--rtol", "1e-9"], capture_output=True, text=True
    )
    assert tolerant.returncode == 0, tolerant.stdout
