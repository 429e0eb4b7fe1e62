"""The ``coreset-interp-extract`` command: build a model's activation stores ahead of the jobs.

Same config as ``coreset-interp``. ``extract.shard=i extract.num_shards=N`` builds only shard ``i`` of
every split's chunks, so a SLURM array of N tasks builds one model's store in parallel
(``scripts/extract_imagenet.sh``); the task that finds every chunk present assembles the store, and the
jobs that follow find it complete. VEBI's unit energies come from the same pass when the interpreter is
VEBI (``extract.energies``), and the null reference's random model is extracted too when the metric asks
for it (``extract.null_reference``), with only the parts its interpreter reads.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from coreset_interp.run import CONF_DIR

log = logging.getLogger("coreset_interp")


def _flag(value: Any, auto: bool, name: str) -> bool:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return auto
    if isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be auto, true or false, got {value!r}")


def extract(cfg: dict[str, Any]) -> dict[str, Any]:
    """Build (this shard of) the stores a job of ``cfg`` reads.

    Args:
        cfg: the resolved config (``cache_dir`` absolute or relative to the cwd).

    Returns:
        ``stores`` (one entry per model and split: ``model``, ``split``, ``key``, ``complete``) and
        ``extraction`` (one entry per pass that ran, with images/s).
    """
    from coreset_interp.cache import ArtifactCache
    from coreset_interp.data import get_dataset
    from coreset_interp.interpreters import INTERPRETERS
    from coreset_interp.models import get_model
    from coreset_interp.models.extraction import ExtractSettings, ensure_store
    from coreset_interp.pipeline import null_model_config, resolve_device

    ex = dict(cfg["extract"])
    settings = ExtractSettings.from_config(cfg)
    splits = list(ex["splits"])
    bad = [s for s in splits if s not in ("train", "val")]
    if bad or not splits:
        raise ValueError(f"extract.splits must be a non-empty list of train, val; got {splits}")
    icfg = cfg["interpreter"]
    interp = INTERPRETERS.build(icfg)
    energies = _flag(ex["energies"], interp.name == "vebi", "extract.energies")
    null = _flag(ex["null_reference"], bool(cfg["metric"]["null_reference"]), "extract.null_reference")
    device = resolve_device(str(cfg["device"]))
    dataset = get_dataset(**cfg["dataset"])
    cache = ArtifactCache(Path(cfg["cache_dir"]))
    progress = bool(cfg["progress"])
    dtype = str(cfg["activation_dtype"])
    models = [
        (
            "model",
            cfg["model"],
            lambda split: (
                frozenset({"maps"})
                | (frozenset({"energy"}) if energies and split == "train" else frozenset())
            ),
        )
    ]
    if null:
        models.append(("null", null_model_config(cfg, int(cfg["seed"])), interp.store_parts))
    stats: list[dict[str, Any]] = []
    stores = []
    for tag, mcfg, parts in models:
        model, info = get_model(**mcfg).load(dataset, cache, device, progress)
        mspec = info["spec"]
        for split in splits:
            store, key = ensure_store(
                cache, model, mspec, dataset, split, device, dtype, parts(split), settings, stats, tag
            )
            stores.append({"model": tag, "split": split, "key": key, "complete": store is not None})
    return {
        "shard": settings.shard,
        "num_shards": settings.num_shards,
        "stores": stores,
        "extraction": stats,
    }


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
def _main(cfg: DictConfig) -> dict[str, Any]:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    out_dir = Path(hc.runtime.output_dir)
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        cache_dir = Path(str(resolved["cache_dir"])).expanduser()
        resolved["cache_dir"] = str(
            cache_dir if cache_dir.is_absolute() else Path(hc.runtime.cwd) / cache_dir
        )
        summary = {"status": "completed", **extract(resolved)}
    except Exception as err:  # noqa: BLE001 - one line on the terminal, the whole message in extract.json
        summary = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        log.error("extract failed: %s", summary["error"])
    (out_dir / "extract.json").write_text(json.dumps(summary, indent=1, default=str))
    for s in summary.get("stores", []):
        state = "complete" if s["complete"] else "incomplete (other shards still building)"
        print(f"{s['model']} {s['split']}: store {s['key']} {state}")
    for p in summary.get("extraction", []):
        print(
            f"{p['model']} {p['split']}: built {p['chunks_built']} of {p['chunks_total']} chunks "
            f"({', '.join(p['parts'])}), {p['images']} images, {p['images_per_second']} images/s"
        )
    if summary["status"] != "completed" and not multirun:
        print(f"error: {str(summary['error']).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(1)
    return summary


def main(argv: list[str] | None = None) -> Any:
    """Entry point of ``coreset-interp-extract`` (``python -m coreset_interp.extract``).

    Args:
        argv: Hydra overrides (default: the command line).

    Returns:
        The summary of a single run (a multirun returns Hydra's job returns).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # An extraction sweep has no result.json files to report on.
    if not any(a.startswith("hydra.callbacks.report.enabled") for a in args):
        args.append("hydra.callbacks.report.enabled=false")
    old = sys.argv
    sys.argv = [old[0] if old else "coreset-interp-extract", *args]
    try:
        return _main()
    finally:
        sys.argv = old


if __name__ == "__main__":
    main()
