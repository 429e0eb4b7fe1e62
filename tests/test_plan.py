"""The planner (coreset_interp.plan): positive finite costs per stage on the embedded default, the cache
artifacts a finished job left listed as reused (keys computed as the pipeline computes them), sweep
expansion through Hydra's compose API, and ImageNet sizes from the config alone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from coreset_interp import plan, plan_costs
from coreset_interp.cache import ArtifactCache
from coreset_interp.pipeline import run


@pytest.mark.slow
def test_digits_plan_costs_every_stage_and_lists_reused_artifacts(
    make_config, digits_workspace, session_cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = ["ratio.percents=[5,95]", "selector=random", "logger=none", "progress=false"]
    jobs = plan.expand_sweep([*overrides, f"cache_dir={session_cache_dir}"], multirun=False)
    profile = plan_costs.load_profile("cpu")
    cold, _ = plan.build_plan([(n, {**c, "cache_dir": str(tmp_path / "empty")}) for n, c in jobs], profile)
    for name in plan.STAGES:
        st = cold.stages[name]
        assert st["units"] >= 1, name
        assert math.isfinite(st["seconds"]) and st["seconds"] > 0, name
        assert math.isfinite(st["ram"]) and st["ram"] > 0, name
    assert cold.reused == []

    # After the job ran, the planner finds what it left: coresets, fits, evaluations, comparisons.
    result = run(make_config(overrides))
    warm, _ = plan.build_plan(jobs, profile)
    cache = ArtifactCache(session_cache_dir)
    keys = {(a["kind"], a["key"]) for a in result["artifacts"]}
    listed = {tuple(line.split()[:2]) for line in warm.reused}
    assert {k for k in keys if k[0] in ("coreset", "fit", "fit_full", "evaluation")} <= listed
    assert any(kind == "comparison" for kind, _ in listed)
    assert all(cache.exists(k, v) for k, v in listed if k != "comparison")
    assert warm.total_seconds < cold.total_seconds
    assert warm.stages["comparisons"]["reused"] == 1 and warm.stages["comparisons"]["seconds"] == 0.0

    out = tmp_path / "plan.json"
    assert (
        plan.main([*overrides, f"cache_dir={session_cache_dir}", "plan.device=cpu", "--json", str(out)]) == 0
    )
    text = capsys.readouterr().out
    assert "the cache already holds" in text and "comparisons" in text
    saved = json.loads(out.read_text())
    assert saved["validated"] is True and set(saved["ice_backends"]) == {"torch", "sklearn"}


@pytest.mark.slow
def test_paper_sweep_on_imagenet_h100(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["-m", "experiment=paper", "dataset=imagenet", "dataset.root=/nonexistent", "plan.device=h100"]
    assert plan.main([*args, f"cache_dir={tmp_path}", "--json", str(tmp_path / "p.json")]) == 0
    text = capsys.readouterr().out
    assert "jobs: 27" in text and "unvalidated" in text
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["validated"] is False
    assert 0 < saved["array_seconds"] <= saved["total_seconds"]
    # The torch NMF prices ICE far below scikit-learn on a GPU profile.
    ice = saved["ice_backends"]
    assert ice["torch"]["total_seconds"] < ice["sklearn"]["total_seconds"]
    # ImageNet sizes come from the config: 1000 classes, 1,281,167 train images, 7 x 7 x 2048 maps.
    (_, cfg), *_ = plan.expand_sweep(["experiment=paper", "dataset=imagenet", "model=resnet50"], False)
    s = plan.shapes(cfg)
    assert (s.classes, s.n_train, s.n_val, s.d, s.positions) == (1000, 1281167, 50000, 2048, 49)


def test_bad_device_and_sweep_without_m(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert plan.main([f"cache_dir={tmp_path}", "plan.device=tpu"]) == 2
    assert "unknown plan.device 'tpu'" in capsys.readouterr().err
    assert plan.main([f"cache_dir={tmp_path}", "selector=random,moderate"]) == 2
    assert "add -m" in capsys.readouterr().err


def test_job_units_per_stage_on_the_embedded_default(tmp_path: Path) -> None:
    # The default job: a trained resnet18, 7 paper ratios, null reference and a 2-resample floor.
    (name, cfg), *_ = plan.expand_sweep([f"cache_dir={tmp_path}"], multirun=False)
    job = plan.plan_job(cfg, plan_costs.load_profile("cpu"), name)
    per_stage = {stage: sum(u.stage == stage for u in job.units) for stage in plan.STAGES}
    assert per_stage == {
        "extraction passes": 2,
        "selection": 7,
        "fits": 8,
        "evaluations": 8,
        "comparisons": 1,
        "null reference": 3,
        "noise floor": 3,
    }
    # Keys are computed as the pipeline computes them (the embedded dataset is always present).
    assert all(u.key is not None for u in job.units if u.kind is not None)
    # Shared work has one identity per job: no two units of a job are the same work.
    assert len({u.ident for u in job.units}) == len(job.units)


def test_costs_read_every_interpreter_field_from_its_yaml() -> None:
    from coreset_interp.registry import split_node

    (_, cfg), *_ = plan.expand_sweep(["interpreter=topic"], multirun=False)
    s = plan.shapes(cfg)
    profile = plan_costs.load_profile("cpu")
    params = split_node(cfg["interpreter"])[1]
    assert plan_costs.fit(profile, s, "topic", params, 1.0).seconds > 0
    # conf/interpreter is the one place the fields' defaults live: a missing one is an error, not 10.
    del params["n_concepts"]
    with pytest.raises(KeyError, match="n_concepts"):
        plan_costs.fit(profile, s, "topic", params, 1.0)


def test_plain_multirun_without_a_preset_sweep(tmp_path: Path) -> None:
    # No experiment preset: the sweeper has no params node, only the comma list makes the sweep.
    jobs = plan.expand_sweep([f"cache_dir={tmp_path}", "selector=random,moderate"], multirun=True)
    assert [name for name, _ in jobs] == ["selector=random", "selector=moderate"]
    assert [cfg["selector"]["name"] for _, cfg in jobs] == ["random", "moderate"]
