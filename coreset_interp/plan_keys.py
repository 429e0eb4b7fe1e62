"""Cache keys of a job's artifacts for the planner, computed as the pipeline computes them (None where they
cannot be: the dataset is not present here, so its fingerprint is unknown).
"""

from __future__ import annotations

from typing import Any

from coreset_interp.cache import spec_key


class KeyOracle:
    """Cache keys of a job's artifacts, computed as the pipeline computes them (None when they cannot be:
    the dataset is not present, so its fingerprint is unknown)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        from coreset_interp.data import get_dataset

        self.cfg = cfg
        self.ok = False
        try:
            self.dataset = get_dataset(**cfg["dataset"])
            self.fingerprint = self.dataset.fingerprint()
        except Exception:  # noqa: BLE001 - an absent dataset only means the keys are unknown
            return
        self.ok = True

    def activations(self, mcfg: dict[str, Any], split: str) -> str | None:
        """Key of :func:`coreset_interp.pipeline.activations_for`'s artifact."""
        if not self.ok:
            return None
        from coreset_interp.models import get_model
        from coreset_interp.models.extraction import store_spec
        from coreset_interp.models.loader import compute_precision

        device = job_device(self.cfg)
        autocast = bool(self.cfg["extract"]["autocast"])
        spec = store_spec(
            get_model(**mcfg).spec(self.dataset),
            self.fingerprint,
            split,
            str(self.cfg["activation_dtype"]),
            compute_precision(device, autocast),
        )
        return spec_key(spec)

    def checkpoint(self, mcfg: dict[str, Any]) -> str | None:
        """Key of a trained model's checkpoint."""
        from coreset_interp.models import get_model

        return spec_key(get_model(**mcfg).spec(self.dataset)) if self.ok else None


def job_device(cfg: dict[str, Any]) -> Any:
    """The device a job of ``cfg`` would run on (``auto`` = CUDA when present), without failing."""
    import torch

    name = str(cfg["device"])
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def null_model_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    """The null reference's randomised-weights model config (the pipeline's own rule)."""
    from coreset_interp.pipeline import null_model_config

    return null_model_config(cfg, int(cfg["seed"]))


def comparison_keys(
    interp: Any,
    full_key: str | None,
    others: list[str | None],
    alpha: float,
    kval: str | None,
    kval_other: str | None,
    comparison_key: Any,
) -> str | None:
    """Args:
        interp: the interpreter (None when it cannot be built here).
        full_key: the full-data fit's key.
        others: the keys of the fits compared with it.
        alpha: partial-whitening alpha.
        kval: the val activations' key of the full side.
        kval_other: that of the other sides.
        comparison_key: :func:`coreset_interp.metrics.compare.comparison_key`.

    Returns:
        The comparison logs' keys joined by commas, or None when one of them cannot be computed.
    """
    if interp is None or full_key is None or kval is None or kval_other is None or None in others:
        return None
    return ",".join(comparison_key(interp, full_key, o, alpha, kval, kval_other) for o in others)
