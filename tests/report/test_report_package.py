"""The report package's seams: the selector config read in one place (flat or old ``params`` shape), the
per-layer figure declared by the method (not by key names in the figures), the cache's specs read through
the cache, the one W&B site in the tracker, ``python -m coreset_interp.report`` and the one place that
spells the result keys."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from coreset_interp.cache import ArtifactCache, spec_key
from coreset_interp.interpreters.base import FigureHook
from coreset_interp.interpreters.vebi import VEBI
from coreset_interp.report import aggregate, build_report, load_results, selector_label
from coreset_interp.report import keys as K
from coreset_interp.report.aggregation import fit_role
from coreset_interp.report.series import figure_hook
from tests.report.test_report_tables import PHI, payload, write_job

REPO = Path(__file__).resolve().parents[2]


def test_transfer_label_reads_flat_and_params_selector_config() -> None:
    """The transfer coreset's row label ``base<-source`` comes from ``selector.source_model`` (the flat
    group shape) as from the old ``selector.params.source_model``; the first version read only
    ``params`` and labelled a flat-shape transfer row ``?<-?``."""
    flat = payload("resnet18", "transfer", "ice", PHI)
    flat["config"]["selector"] = {"name": "transfer", "base": "moderate", "source_model": {"name": "vgg19"}}
    old = payload("resnet18", "transfer", "ice", PHI)
    old["config"]["selector"] = {"name": "transfer", "params": {"base": "kcenter", "source_model": "vgg16"}}
    assert selector_label(flat) == "moderate<-vgg19"
    assert selector_label(old) == "kcenter<-vgg16"
    assert selector_label(payload("resnet18", "random", "ice", PHI)) == "random"


def test_per_layer_figure_follows_the_methods_hook(tmp_path: Path) -> None:
    """Fig. 3 is drawn from the keys VEBI declares in its figure hook: a VEBI job gets its units per layer,
    a Topic job whose rho entries happen to carry the same keys gets none (the first version drew any
    result with a ``vebi_units_per_layer`` key)."""
    assert VEBI.figure_hook.layer_units == "vebi_units_per_layer" and figure_hook("vebi") is VEBI.figure_hook
    assert figure_hook("topic") == FigureHook() and figure_hook("no-such-method") == FigureHook()
    sweep = tmp_path / "sweep"
    write_job(sweep, "v", payload("resnet18", "random", "vebi", PHI))
    topic = payload("resnet18", "random", "vebi", PHI)
    topic["interpreter"] = "topic"
    write_job(sweep, "t", topic)
    series = {s.interpreter: s for s in aggregate(load_results(sweep))}
    # LAYERS[i] has i + p // 10 units at rho = p; the full data i + 5.
    assert series["vebi"].layers[20]["units"]["layer2.0.relu#1"] == 3
    assert series["vebi"].layers[20]["coverage"]["layer2.0.relu#1"] == 40.0
    assert series["vebi"].full_layer_units["layer4.1.relu#3"] == 8
    assert series["topic"].layers == {} and series["topic"].full_layer_units == {}
    report = build_report(sweep, wandb_mode="disabled")
    assert "fig3_vebi_units.png" in report.files
    only_topic = tmp_path / "topic"
    write_job(only_topic, "t", topic)
    assert "fig3_vebi_units.png" not in build_report(only_topic, wandb_mode="disabled").files


def test_fit_role_reads_the_cache_specs(tmp_path: Path) -> None:
    """A full-data fit is the null reference when its train activations come from random weights, read
    through :meth:`ArtifactCache.spec`; an artifact the cache no longer holds is ``unknown``."""
    cache = ArtifactCache(tmp_path / "cache")
    keys, fits = {}, {}
    for weights in ("random", "imagenet"):
        acts = {"model": {"name": "resnet18", "weights": weights}, "split": "train"}
        cache.get_or_compute("activations", acts, lambda d: (d / "x").write_text("1"))
        fits[weights] = {"interpreter": "ice", "train": spec_key(acts)}
        cache.get_or_compute("fit_full", fits[weights], lambda d: (d / "x").write_text("1"))
        keys[weights] = spec_key(fits[weights])
    assert cache.spec("fit_full", keys["random"]) == fits["random"]
    assert fit_role(str(cache.root), keys["random"]) == "null"
    assert fit_role(str(cache.root), keys["imagenet"]) == "reference"
    assert fit_role(str(cache.root), "0" * 16) == "unknown" and fit_role(None, keys["random"]) == "unknown"
    assert cache.spec("fit_full", "0" * 16) is None


def test_report_logs_one_offline_wandb_run_through_the_tracker(tmp_path: Path) -> None:
    """A sweep whose jobs logged to W&B gets one offline report run (Table 1 and the figures) written by
    :meth:`coreset_interp.trackers.wandb.WandbTracker.upload_report` into ``<report>/wandb``."""
    sweep = tmp_path / "sweep"
    for n, sel in enumerate(("random", "moderate")):
        write_job(sweep, str(n), payload("resnet18", sel, "ice", PHI, logger="wandb"))
    os.environ.setdefault("WANDB_MODE", "offline")
    report = build_report(sweep, wandb_mode="auto")
    assert report.wandb_run is not None and report.wandb_run.is_dir()
    assert report.wandb_run.parent == report.out / "wandb" and report.wandb_run.name.startswith(
        "offline-run-"
    )
    assert list(report.wandb_run.glob("*.wandb"))


def test_python_m_report_writes_the_report(tmp_path: Path) -> None:
    """``python -m coreset_interp.report DIR`` runs the command (the package has a ``__main__``)."""
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", payload("resnet18", "random", "ice", PHI))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "coreset_interp.report", str(sweep), "--wandb", "disabled"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "| resnet18 | random |" in done.stdout and (sweep / "report" / "report.html").is_file()
    assert json.loads((sweep / "report" / "summary.json").read_text())["counts"] == {"completed": 1}


#: Result keys that name a result.json field and nothing of the report's own (its summary rows reuse
#: ``phi_normalised`` and ``status``, so those are not checked here).
_RESULT_ONLY = {
    K.RATIOS,
    K.PERCENT,
    K.PHI,
    K.PHI_PER_CLASS,
    K.PHI_STD,
    K.MODEL_ACCURACY,
    K.NULL_REFERENCE,
    K.NOISE_FLOOR,
    K.ACCURACY,
    K.ACCURACY_TRUE_CLASS,
    K.FIT_SECONDS,
    K.SPEEDUP,
    K.CASCADE,
    K.ARTIFACTS,
    # Method keys: the method declares them (its figure hook), the figures never spell them.
    "vebi_units_per_layer",
    "vebi_coverage_per_layer",
}


def test_result_keys_are_read_through_report_keys_only() -> None:
    """The report and figure modules read result.json keys through :mod:`coreset_interp.report.keys`
    (one edit points them at ``results.py``); a quoted read such as ``entry.get("angular_distance")``
    anywhere else fails here."""
    modules = [*(REPO / "coreset_interp" / "report").glob("*.py"), *(REPO / "coreset_interp").glob("viz*.py")]
    found = []
    for path in modules:
        if path.name == "keys.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in re.finditer(r'(?:\.get\(|\[)\s*"(\w+)"', line):
                if m.group(1) in _RESULT_ONLY:
                    found.append(f"{path.name}:{n}: {m.group(1)}")
    assert found == []
    assert len(K.RESULT_KEYS) == len(set(K.RESULT_KEYS)) and K.PHI in K.POINT_METRICS
