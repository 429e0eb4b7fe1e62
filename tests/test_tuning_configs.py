"""Dataset-dependent interpreter values (``conf/tuning/<dataset>_<interpreter>.yaml``, Hydra's specialisation
pattern): the values a job of ``experiment=paper`` on ImageNet runs with, and the embedded default's."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coreset_interp.interpreters import INTERPRETERS, list_interpreters
from coreset_interp.interpreters.topic import Topic
from tests.conftest import compose_config

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
IMAGENET_TRAIN = 1_281_167


def _interpreter(overrides: list[str]):
    icfg = compose_config(overrides)["interpreter"]
    return icfg, INTERPRETERS.build(icfg)


def test_paper_on_imagenet_runs_vebi_with_the_ports_mu() -> None:
    """Protects ImageNet's VEBI L1 budget: the author's port used mu = 0.001 on ImageNet; the first
    version ran ImageNet with the digits-tuned 50."""
    icfg, vebi = _interpreter(["experiment=paper", "dataset=imagenet", "interpreter=vebi"])
    assert icfg["mu"] == 0.001 and vebi.mu == 0.001
    # The same with the dataset from the preset alone.
    assert _interpreter(["experiment=paper", "interpreter=vebi"])[1].mu == 0.001


def test_paper_on_imagenet_topic_reads_the_full_data() -> None:
    """Protects the data-relative topic budget on ImageNet: the same step count at every rho, at least one
    full epoch of the 1.28M train images (2 here); the first version's 230 steps x 128 images were 2.3 % of
    one epoch, less than a 5 % coreset. 100 concepts for 1000 classes, not the digits' 10."""
    icfg, topic = _interpreter(["experiment=paper", "dataset=imagenet", "interpreter=topic"])
    assert isinstance(topic, Topic)
    assert icfg["budget"] == "full_epochs" and topic.epochs_of_full == 2 and topic.m == 100
    steps = {
        rho: topic.step_count(math.ceil(rho * IMAGENET_TRAIN), IMAGENET_TRAIN) for rho in (0.05, 0.5, 1.0)
    }
    assert len(set(steps.values())) == 1
    assert steps[1.0] == math.ceil(2 * IMAGENET_TRAIN / 128) and steps[1.0] * 128 >= IMAGENET_TRAIN
    assert topic.fit_params()["epochs_of_full"] == 2.0


def test_embedded_default_keeps_its_values() -> None:
    """Protects the embedded default: digits keeps the fixed 230-step topic budget and VEBI's mu = 50 (no
    tuning file), also in the paper preset's smoke run on digits."""
    for extra in ([], ["experiment=paper", "dataset=digits"]):
        _, topic = _interpreter([*extra, "interpreter=topic"])
        assert topic.budget == "steps" and topic.step_count(10, 1437) == topic.step_count(1437, 1437) == 230
        # Only a data-relative budget carries epochs_of_full in its cache key.
        assert "epochs_of_full" not in topic.fit_params()
        assert _interpreter([*extra, "interpreter=vebi"])[1].mu == 50.0


def test_tuning_files_name_a_dataset_and_an_interpreter_and_cite_their_source() -> None:
    """Every tuning file is `<dataset>_<interpreter>.yaml` of existing choices, in the interpreter
    package, and every value it sets has a comment (its source)."""
    datasets = {p.stem for p in (CONF / "dataset").glob("*.yaml")}
    files = sorted((CONF / "tuning").glob("*.yaml"))
    assert {f.stem for f in files} >= {"imagenet_vebi", "imagenet_topic"}
    for f in files:
        dataset, interp = f.stem.rsplit("_", 1)
        assert dataset in datasets and interp in list_interpreters(), f.name
        lines = f.read_text().splitlines()
        assert lines[0] == "# @package interpreter", f.name
        assert "name" not in (yaml.safe_load(f.read_text()) or {}), f.name
        for i, line in enumerate(lines):
            key, _, value = line.strip().partition(":")
            if line.strip() and not line.lstrip().startswith("#") and value.strip():
                assert lines[i - 1].lstrip().startswith("#"), f"{f.name}: {key} has no source comment"


@pytest.mark.slow
def test_cfg_job_shows_imagenet_vebi_mu() -> None:
    """``coreset-interp --cfg job experiment=paper dataset=imagenet interpreter=vebi`` prints mu 0.001."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "coreset_interp.run",
            "--cfg",
            "job",
            "experiment=paper",
            "dataset=imagenet",
            "interpreter=vebi",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    assert yaml.safe_load(out)["interpreter"]["mu"] == 0.001
