"""The ``coreset-interp`` command: one Hydra job (``-m`` for a multirun sweep)."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("coreset_interp")


def job_info(cfg: DictConfig) -> dict[str, Any]:
    """Where and under which names this Hydra job runs.

    Args:
        cfg: the job config.

    Returns:
        ``dir``, ``name``, ``group``, ``tags``, ``job_type``, ``multirun``, ``cwd``.
    """
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    choices = hc.runtime.choices
    return {
        "dir": Path(hc.runtime.output_dir),
        "name": hc.job.override_dirname or "default",
        "group": Path(hc.sweep.dir).name if multirun else str(cfg.get("experiment_name", "default")),
        "tags": [
            f"{g}={choices[g]}"
            for g in ("model", "dataset", "selector", "interpreter", "ratio")
            if g in choices
        ],
        "job_type": str(cfg.interpreter.name),
        "multirun": multirun,
        "cwd": hc.runtime.cwd,
    }


# An absolute path: the console script runs main() from a module, and Hydra would resolve a relative
# config_path as a Python package ("Primary config module 'conf' not found").
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


# ``<group>.params.<field>`` (optionally ``<source>@<group>.params.<field>``), the old shape of a group's
# fields; ``+<group>.params...`` adds a key, which the group's registry rejects in one line itself.
_OLD_OVERRIDE = re.compile(r"^(?P<source>[\w/]+@)?(?P<group>\w+)\.params\.(?P<field>[^=]+)=")


def old_override_error(argv: list[str], conf_dir: str = CONF_DIR) -> str | None:
    """The one-line error for an override of the old ``<group>.params.<field>`` shape, if any.

    Checked before Hydra composes the config: Hydra's own error for such a key spans many lines.

    Args:
        argv: the command's arguments (without the program name).
        conf_dir: the config folder, whose sub-folders are the config groups.

    Returns:
        ``error: ...`` naming the new path, or None when no argument has the old shape.
    """
    groups = {p.name for p in Path(conf_dir).iterdir() if p.is_dir() and p.name != "hydra"}
    for arg in argv:
        m = _OLD_OVERRIDE.match(arg)
        if m and m.group("group") in groups:
            old = arg.split("=", 1)[0]
            new = f"{m.group('source') or ''}{m.group('group')}.{m.group('field')}"
            return f"error: {old} is the old config shape; fields are flat now, use {new}=..."
    return None


def main() -> Any:
    """The console script: rejects old-shape overrides in one line, then runs :func:`hydra_main`.

    Returns:
        What :func:`hydra_main` returns.
    """
    error = old_override_error(sys.argv[1:])
    if error is not None:
        print(error, file=sys.stderr)
        sys.exit(2)
    return hydra_main()


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> dict[str, Any]:
    """Run one job; a failed single run exits with status 1 and a one-line error.

    Args:
        cfg: the composed config.

    Returns:
        The job's result (Hydra keeps it in the multirun's JobReturn).
    """
    try:
        job = job_info(cfg)
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as err:  # noqa: BLE001 - a bad value in the config (missing ???, broken ${...})
        # Fails before run_job, so record the failure here: result.json is written for every job.
        job, result = _config_failure(cfg, err)
    else:
        cache_dir = Path(str(resolved["cache_dir"])).expanduser()
        resolved["cache_dir"] = str(cache_dir if cache_dir.is_absolute() else Path(job["cwd"]) / cache_dir)
        from coreset_interp.cache import CacheDirError, check_cache_dir

        try:
            check_cache_dir(Path(resolved["cache_dir"]))  # before loading torch: a bad folder fails at once
        except CacheDirError as err:
            job, result = _config_failure(cfg, err)
        else:
            from coreset_interp.jobstate import skip_completed

            # A resubmitted sweep skips its completed jobs before loading torch.
            result = skip_completed(resolved, job["dir"])
            if result is None:
                # Imported here so that --help and Hydra's config errors answer without loading torch.
                from coreset_interp.pipeline import run_job

                result = run_job(resolved, job)
    print(f"result: {job['dir'] / 'result.json'} ({result['status']})")
    # In a multirun a failed job is recorded in its result.json and the sweep goes on to the report.
    if result["status"] != "completed" and not job["multirun"]:
        # One line on the terminal (some errors span many lines); the whole message is in result.json.
        lines = str(result["error"]).strip().splitlines() or ["unknown error"]
        more = f" (full message in {job['dir'] / 'result.json'})" if len(lines) > 1 else ""
        print(f"error: {lines[0]}{more}", file=sys.stderr)
        sys.exit(1)
    return {"status": result["status"], "dir": str(job["dir"])}


def _config_failure(cfg: DictConfig, err: Exception) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write result.json for a job whose config does not resolve.

    Args:
        cfg: the composed (unresolvable) config.
        err: the resolution error.

    Returns:
        (job info with ``dir`` and ``multirun``, the failed result payload).
    """
    from coreset_interp.tracking import JobFiles

    hc = HydraConfig.get()
    job = {"dir": Path(hc.runtime.output_dir), "multirun": hc.mode == RunMode.MULTIRUN}
    result = {
        "status": "failed",
        "error": f"{type(err).__name__}: {err}",
        "config": OmegaConf.to_container(cfg, resolve=False),
    }
    JobFiles(job["dir"]).write_result(result)
    log.error("job failed: %s", result["error"])
    return job, result


if __name__ == "__main__":
    main()
