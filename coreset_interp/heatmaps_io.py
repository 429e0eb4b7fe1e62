"""A job's heatmap arrays on disk: ``<job dir>/heatmaps.npz`` (float16 maps, uint8 un-normalised images, the
VEBI panels' maps and a JSON ``meta``), written by the job and read by the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coreset_interp.heatmaps_vebi import UnitPanel

#: File name of a job's heatmap arrays (beside result.json).
HEATMAP_FILE = "heatmaps.npz"


@dataclass
class JobHeatmaps:
    """What one job saves for the heatmap figures.

    Attributes:
        meta: dataset, model, selector, interpreter, k, percents, image labels, input size.
        indices: the chosen val images.
        full: (n, h, w) heatmaps of the full-data fit.
        per_percent: percent -> (n, h, w) heatmaps of that rho's coreset fit.
        images: val index -> (H, W, 3) uint8 un-normalised image (chosen images and VEBI panels').
        vebi: percent -> the differing units' panels (VEBI only).
    """

    meta: dict[str, Any]
    indices: np.ndarray
    full: np.ndarray
    per_percent: dict[int, np.ndarray] = field(default_factory=dict)
    images: dict[int, np.ndarray] = field(default_factory=dict)
    vebi: dict[int, list[UnitPanel]] = field(default_factory=dict)


def save_heatmaps(data: JobHeatmaps, folder: Path) -> Path:
    """Write a job's heatmaps as ``<folder>/heatmaps.npz`` (float16 maps, uint8 images).

    Args:
        data: the arrays.
        folder: the job folder.

    Returns:
        The file.
    """
    arrays: dict[str, np.ndarray] = {
        "indices": data.indices,
        "full": data.full.astype(np.float16),
        "image_indices": np.asarray(sorted(data.images), dtype=np.int64),
    }
    arrays["images"] = np.stack([data.images[i] for i in arrays["image_indices"].tolist()])
    for p, h in data.per_percent.items():
        arrays[f"rho_{p}"] = h.astype(np.float16)
    units_meta: dict[str, list[dict[str, Any]]] = {}
    for p, panels in data.vebi.items():
        units_meta[str(p)] = []
        for j, panel in enumerate(panels):
            arrays[f"vebi_{p}_{j}_maps"] = panel.maps.astype(np.float16)
            arrays[f"vebi_{p}_{j}_images"] = panel.images.astype(np.int64)
            units_meta[str(p)].append(
                {
                    "class": panel.cls,
                    "unit": panel.unit,
                    "layer": panel.layer,
                    "filter": panel.filter,
                    "layer_key": panel.layer_key,
                    "weight": panel.weight,
                }
            )
    meta = {**data.meta, "vebi_units": units_meta}
    arrays["meta"] = np.asarray(json.dumps(meta))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HEATMAP_FILE
    tmp = folder / (HEATMAP_FILE + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_heatmaps(path: Path) -> JobHeatmaps:
    """Read a job's ``heatmaps.npz``.

    Args:
        path: the file.

    Returns:
        The arrays (maps as float32).
    """
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        images = {int(i): z["images"][j] for j, i in enumerate(z["image_indices"].tolist())}
        per = {int(k[4:]): z[k].astype(np.float32) for k in z.files if k.startswith("rho_")}
        vebi: dict[int, list[UnitPanel]] = {}
        for p, units in (meta.get("vebi_units") or {}).items():
            vebi[int(p)] = [
                UnitPanel(
                    int(u["class"]),
                    int(u["unit"]),
                    int(u["layer"]),
                    int(u["filter"]),
                    str(u["layer_key"]),
                    float(u["weight"]),
                    z[f"vebi_{p}_{j}_images"],
                    z[f"vebi_{p}_{j}_maps"].astype(np.float32),
                )
                for j, u in enumerate(units)
            ]
        return JobHeatmaps(meta, z["indices"], z["full"].astype(np.float32), per, images, vebi)
