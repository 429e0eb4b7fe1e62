"""The chunked extraction pass: resume after SIGKILL, shards in parallel processes, VEBI's energies from
the shared pass, float16 stores read per class, and the stores the null reference needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from coreset_interp.cache import ArtifactCache
from coreset_interp.data import get_dataset
from coreset_interp.data.base import ImageDataset
from coreset_interp.interpreters.vebi_units import extract_unit_features
from coreset_interp.models import get_model
from coreset_interp.models.activations import ActivationStore, chunk_key
from coreset_interp.models.chunked import ChunkedRows
from coreset_interp.models.extraction import (
    ExtractSettings,
    IncompleteStoreError,
    ensure_store,
    plan_chunks,
    shard_chunks,
)
from coreset_interp.models.loader import resolve_num_workers
from coreset_interp.parallel import available_cpus

REPO = Path(__file__).resolve().parents[2]
# The CLI runs: digits at 8 px through a randomly initialised resnet18 (no training), train split only,
# 1437 images in 4 chunks of 360.
CLI = [
    "model.weights=random",
    "dataset.image_size=8",
    "extract.chunk_size=360",
    "extract.splits=[train]",
    "extract.null_reference=false",
    "batch_size=30",
    "logger=none",
    "progress=false",
]


def _cli(cache: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "coreset_interp.extract",
        *CLI,
        f"cache_dir={cache}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cli_setup(make_config: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The CLI's model and dataset in this process, and its train store built uninterrupted."""
    # One BLAS/OpenMP thread: on a shared machine spinning threads make these small passes several times
    # slower; the subprocesses get the same setting.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = make_config([o for o in CLI if not o.startswith(("logger", "progress"))])
    dataset = get_dataset(**cfg["dataset"])
    cache = ArtifactCache(tmp_path_factory.mktemp("reference"))
    model, info = get_model(**cfg["model"]).load(dataset, cache, torch.device("cpu"), progress=False)
    mspec = info["spec"]
    settings = ExtractSettings.from_config(cfg)
    stats: list[dict[str, Any]] = []
    store, key = ensure_store(
        cache, model, mspec, dataset, "train", torch.device("cpu"), "float32", {"maps"}, settings, stats
    )
    assert store is not None and len(store.chunks) == 4 and stats[0]["chunks_built"] == 4
    yield {"cfg": cfg, "dataset": dataset, "model": model, "mspec": mspec, "store": store, "key": key}
    torch.set_num_threads(threads)


def _assert_same_store(a: ActivationStore, b: ActivationStore) -> None:
    assert a.key == b.key and a.meta == b.meta
    for name in ("g.npy", "labels.npy", "preds.npy"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name
    for i in range(len(a.chunks)):
        assert (a.part_path("maps", i) / "maps.npy").read_bytes() == (
            b.part_path("maps", i) / "maps.npy"
        ).read_bytes()
    np.testing.assert_array_equal(np.asarray(a.maps), np.asarray(b.maps))


def _complete_chunks(cache: Path, key: str) -> int:
    """Chunks whose every part (core and maps) is published."""
    return sum(
        all((cache / kind / k).is_dir() for kind, k, _ in (chunk_key(key, p, rows) for p in ("core", "maps")))
        for rows in plan_chunks(1437, 360)
    )


@pytest.mark.slow
def test_killed_extraction_resumes_to_the_same_store(cli_setup: dict[str, Any], tmp_path: Path) -> None:
    key = cli_setup["key"]
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    child = subprocess.Popen(_cli(cache, tmp_path / "run1"), env=_env(), stdout=subprocess.DEVNULL)
    try:
        while _complete_chunks(cache, key) < 2:
            assert child.poll() is None, "the extraction ended before it could be killed"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    killed_at = time.perf_counter() - t0
    done_before = _complete_chunks(cache, key)
    # Killed after its second chunk: no store yet, at most the chunk it was writing got published.
    assert 2 <= done_before <= 3
    assert not (cache / "activations" / key).exists()
    # A job resumes: it builds only the missing chunks and assembles the store.
    cfg = {**cli_setup["cfg"], "cache_dir": str(cache)}
    from coreset_interp.pipeline import activations_for

    stats: list[dict[str, Any]] = []
    t1 = time.perf_counter()
    store, got = activations_for(
        ArtifactCache(cache),
        cli_setup["model"],
        cli_setup["mspec"],
        cli_setup["dataset"],
        "train",
        torch.device("cpu"),
        cfg,
        stats=stats,
    )
    resumed = time.perf_counter() - t1
    assert got == key and stats[0]["chunks_built"] == 4 - done_before
    _assert_same_store(store, cli_setup["store"])
    print(f"\nkilled after {killed_at:.1f}s with {done_before}/4 chunks; resume {resumed:.1f}s")


@pytest.mark.slow
def test_three_shards_in_three_processes_equal_one_store(cli_setup: dict[str, Any], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            _cli(cache, tmp_path / f"run{i}", f"extract.shard={i}", "extract.num_shards=3"),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-500:] for o in outs]
    # Each shard built its own block of chunks (4 chunks over 3 shards: 1, 1, 2).
    built = [int(o[0].split("built ")[1].split(" of")[0]) for o in outs]
    assert built == [len(shard_chunks(4, i, 3)) for i in range(3)] == [1, 1, 2]
    store = ActivationStore.open(cache / "activations" / cli_setup["key"])
    _assert_same_store(store, cli_setup["store"])
    # The jobs that follow find it complete: nothing to build, even when building is forbidden.
    stats: list[dict[str, Any]] = []
    settings = replace(ExtractSettings.from_config(cli_setup["cfg"]), require_complete=True)
    again, _ = ensure_store(
        ArtifactCache(cache),
        cli_setup["model"],
        cli_setup["mspec"],
        cli_setup["dataset"],
        "train",
        torch.device("cpu"),
        "float32",
        {"maps"},
        settings,
        stats,
    )
    assert again is not None and again.path == store.path and stats == []


# ------------------------------------------------------------------------------------ in-process stores


class _Small(ImageDataset):
    """The first images of the digits splits (8 px), labels interleaved, as a dataset of their own."""

    name = "small"

    def __init__(self, base: ImageDataset, n: int) -> None:
        self.base, self.n_rows = base, n
        self.num_classes, self.class_names = base.num_classes, base.class_names

    def split(self, split: str) -> TensorDataset:
        x, y = self.base.split(split)[: self.n_rows]
        return TensorDataset(x, y)

    def labels(self, split: str) -> np.ndarray:
        return self.base.labels(split)[: self.n_rows]

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n_rows}


@pytest.fixture(scope="module")
def small(cli_setup: dict[str, Any]) -> _Small:
    return _Small(cli_setup["dataset"], 160)


def _settings(**kw: Any) -> ExtractSettings:
    return ExtractSettings(**{"chunk_size": 64, "batch_size": 32, "progress": False, **kw})


def test_energies_from_the_shared_pass_equal_a_separate_pass(
    cli_setup: dict[str, Any], small: _Small, tmp_path: Path
) -> None:
    model, mspec, cpu = cli_setup["model"], cli_setup["mspec"], torch.device("cpu")
    # One pass writing maps and energies together.
    shared_stats: list[dict[str, Any]] = []
    shared, _ = ensure_store(
        ArtifactCache(tmp_path / "a"),
        model,
        mspec,
        small,
        "train",
        cpu,
        "float32",
        {"maps", "energy"},
        _settings(),
        shared_stats,
    )
    assert len(shared_stats) == 1 and shared_stats[0]["parts"] == ["core", "energy", "maps"]
    # A store built without them gets them from one more pass, which builds nothing else.
    cache_b = ArtifactCache(tmp_path / "b")
    later_stats: list[dict[str, Any]] = []
    first, _ = ensure_store(cache_b, model, mspec, small, "train", cpu, "float32", {"maps"}, _settings())
    assert first is not None and first.energies() is None
    later, _ = ensure_store(
        cache_b, model, mspec, small, "train", cpu, "float32", {"maps", "energy"}, _settings(), later_stats
    )
    assert [s["parts"] for s in later_stats] == [["energy"]] and later_stats[0]["chunks_built"] == 3
    # The separate, whole-split pass VEBI used before.
    folder = tmp_path / "legacy"
    folder.mkdir()
    meta = extract_unit_features(model, small.split("train"), folder, cpu, batch_size=32)
    legacy = np.load(folder / "E.npy")
    for store in (shared, later):
        E, layers = store.energies()  # type: ignore[misc]
        assert isinstance(E, ChunkedRows) and E.shape == legacy.shape == (160, 3904)
        np.testing.assert_array_equal(np.asarray(E), legacy)
        assert layers == meta["layers"]
    np.testing.assert_array_equal(np.asarray(shared.maps), np.asarray(later.maps))


def test_vebi_reads_the_stores_energies(cli_setup: dict[str, Any], small: _Small, tmp_path: Path) -> None:
    from coreset_interp.interpreters import InterpretContext, get_interpreter

    cpu = torch.device("cpu")
    cache = ArtifactCache(tmp_path / "c")
    args = (cli_setup["model"], cli_setup["mspec"], small)
    train, key = ensure_store(cache, *args, "train", cpu, "float32", frozenset(), _settings())
    val, _ = ensure_store(cache, *args, "val", cpu, "float32", frozenset(), _settings())
    # The null reference's VEBI stores: no maps at all.
    assert train.maps is None and val.maps is None and val.logits is not None
    with pytest.raises(ValueError, match="no last-conv maps"):
        train.read_maps(np.arange(3))
    ctx = InterpretContext(cli_setup["model"], small, train, val, cpu, cache, key, 32, 0, False)
    vebi = get_interpreter("vebi")
    feats = vebi.unit_features(ctx)  # one pass adds the energies to the store's chunks
    assert feats.E.shape == (160, 3904) and ActivationStore.open(train.path).energies() is not None
    assert len(list((cache.root / "unit_features").glob("*/E.npy"))) == 3
    assert not list((cache.root / "unit_features").glob(".tmp-*"))


def test_float16_store_opens_and_reads_per_class(
    cli_setup: dict[str, Any], small: _Small, tmp_path: Path
) -> None:
    cpu = torch.device("cpu")
    args = (cli_setup["model"], cli_setup["mspec"], small, "train", cpu)
    s32, _ = ensure_store(ArtifactCache(tmp_path / "f32"), *args, "float32", {"maps"}, _settings())
    s16, _ = ensure_store(ArtifactCache(tmp_path / "f16"), *args, "float16", {"maps"}, _settings())
    reopened = ActivationStore.open(s16.path)
    assert reopened.maps.dtype == np.float16 and isinstance(reopened.maps, ChunkedRows)
    assert isinstance(reopened.g, np.memmap) and reopened.g.dtype == np.float32
    np.testing.assert_array_equal(reopened.g, s32.g)
    sizes = [(s.part_path("maps", 0) / "maps.npy").stat().st_size for s in (s16, s32)]
    assert sizes[0] < 0.6 * sizes[1]
    for c in reopened.classes():
        idx = reopened.class_indices(int(c))
        np.testing.assert_array_equal(idx, np.flatnonzero(reopened.labels == c))
        got = reopened.read_maps(idx)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, s32.read_maps(idx), rtol=2e-3, atol=2e-3)
    assert len(reopened.class_indices(99)) == 0


def test_chunked_rows_index_like_one_array() -> None:
    full = np.arange(30, dtype=np.float32).reshape(10, 3)
    view = ChunkedRows([full[:4], full[4:7], full[7:]])
    assert view.shape == (10, 3) and len(view) == 10
    idx = np.array([9, 0, 5, 5, 3, -1])
    np.testing.assert_array_equal(view[idx], full[idx])
    np.testing.assert_array_equal(view[2:8], full[2:8])
    np.testing.assert_array_equal(view[6], full[6])
    np.testing.assert_array_equal(view[full[:, 0] > 10], full[full[:, 0] > 10])
    np.testing.assert_array_equal(np.asarray(view), full)
    with pytest.raises(IndexError):
        view[np.array([10])]


def test_num_workers_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    tensors = TensorDataset(torch.zeros(4, 3))
    # SLURM's allocation narrows the CPUs (never widens them beyond the affinity).
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert available_cpus() == 1 and resolve_num_workers("auto") == 1
    # In-memory tensors gain nothing from worker processes.
    assert resolve_num_workers("auto", Subset(tensors, [0, 1])) == 0
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert available_cpus() == len(os.sched_getaffinity(0))
    assert resolve_num_workers(2) == 2 and resolve_num_workers("4") == 4
    for bad in (-1, "many", 1.5):
        with pytest.raises(ValueError, match="num_workers"):
            resolve_num_workers(bad)


def test_missing_chunks_fail_in_one_line_with_require_complete(
    cli_setup: dict[str, Any], small: Any, tmp_path: Path
) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    base = _settings()
    args = (
        cli_setup["model"],
        cli_setup["mspec"],
        small,
        "train",
        torch.device("cpu"),
        "float32",
    )
    # Shard 0 of 2 builds chunk 0 of 3 only; the store stays unassembled.
    store, _ = ensure_store(cache, *args, {"maps"}, replace(base, shard=0, num_shards=2))
    assert store is None
    with pytest.raises(IncompleteStoreError) as err:
        ensure_store(cache, *args, {"maps"}, replace(base, require_complete=True))
    msg = str(err.value)
    assert "\n" not in msg and "missing chunks 1-2 of 3 (core, maps)" in msg
    with pytest.raises(ValueError, match="extract.shard"):
        replace(base, shard=2, num_shards=2)


def test_store_parts_per_interpreter() -> None:
    from coreset_interp.interpreters import get_interpreter

    for name in ("ice", "topic"):
        interp = get_interpreter(name)
        assert interp.store_parts("train") == interp.store_parts("val") == {"maps"}
    vebi = get_interpreter("vebi")
    assert vebi.store_parts("train") == {"energy"} and vebi.store_parts("val") == frozenset()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:rho=.*angular distance undefined")
def test_vebi_job_extracts_once_per_split_and_model(
    cli_setup: dict[str, Any], make_config: Any, tmp_path: Path
) -> None:
    from coreset_interp.pipeline import run

    # Random weights for the job's model too (seed 1, so the null reference's seed-0 model differs).
    cfg = make_config(
        [
            "model.weights=random",
            "model.train.seed=1",
            "dataset.image_size=8",
            "interpreter=vebi",
            "interpreter.random_draws=1",
            "selector=random",
            "ratio.percents=[50]",
        ],
        cache_dir=tmp_path / "cache",
    )
    res = run(cfg)
    passes = [(p["model"], p["split"], p["parts"]) for p in res["extraction"]]
    # The job's model: maps for every interpreter plus VEBI's energies in the same train pass; the null
    # reference: only what VEBI reads (train energies; the val store's labels, preds and logits).
    assert passes == [
        ("model", "train", ["core", "energy", "maps"]),
        ("model", "val", ["core", "maps"]),
        ("null", "train", ["core", "energy"]),
        ("null", "val", ["core"]),
    ]
    assert all(p["images_per_second"] > 0 for p in res["extraction"])
    assert res["null_reference"]["angular_distance"] is not None
    # A second job of the sweep runs no pass at all.
    assert run(cfg)["extraction"] == []


def test_worker_processes_give_the_same_store(
    cli_setup: dict[str, Any], small: _Small, tmp_path: Path
) -> None:
    cpu = torch.device("cpu")
    args = (cli_setup["model"], cli_setup["mspec"], small, "train", cpu, "float32", {"maps"})
    inline, _ = ensure_store(ArtifactCache(tmp_path / "w0"), *args, _settings(num_workers=0))
    workers, _ = ensure_store(ArtifactCache(tmp_path / "w2"), *args, _settings(num_workers=2))
    np.testing.assert_array_equal(np.asarray(workers.maps), np.asarray(inline.maps))
    np.testing.assert_array_equal(workers.g, inline.g)
    np.testing.assert_array_equal(workers.labels, inline.labels)


def test_settings_read_every_key_from_the_composed_config() -> None:
    from tests.conftest import compose_config

    cfg = compose_config(
        ["extract.chunk_size=100", "batch_size=7", "extract.num_shards=3", "extract.shard=2"]
    )
    s = ExtractSettings.from_config(cfg)
    assert (s.chunk_size, s.batch_size, s.shard, s.num_shards) == (100, 7, 2, 3)
    # conf/config.yaml's values: num_workers auto, autocast and channels_last on, progress on.
    defaults = (s.num_workers, s.autocast, s.channels_last, s.progress, s.require_complete)
    assert defaults == ("auto", True, True, True, False)
    # conf/ is the one place the defaults live: a config without a key is an error, not 8192.
    del cfg["extract"]["chunk_size"]
    with pytest.raises(KeyError, match="chunk_size"):
        ExtractSettings.from_config(cfg)
