"""Contract tests over the selector and interpreter registries (timm's pattern): every registered entry and
every YAML of ``conf/selector`` and ``conf/interpreter`` is built from its config node, rejects an unknown
field in one line, runs on a tiny fixture, and gives picklable, seed-deterministic, JSON-serialisable
results of the documented shapes. A new method gets all of this by registering; nothing here names one."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coreset_interp.interpreters import INTERPRETERS, InterpretContext, Interpreter
from coreset_interp.registry import Registry, RegistryError
from coreset_interp.selectors import SELECTORS, class_budget
from tests.conftest import compose_config
from tests.helpers import CLASSES, tiny_context

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS: dict[str, Registry[Any]] = {"selector": SELECTORS, "interpreter": INTERPRETERS}
YAMLS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
SELECTOR_NAMES = SELECTORS.names()
INTERPRETER_NAMES = INTERPRETERS.names()
# Smaller iteration budgets wherever a method has such a field, so that every fit takes about a second on a
# shared machine; everything else comes from the method's YAML.
FAST = {"steps": 20, "max_iter": 50}


def _node(group: str, name: str) -> dict[str, Any]:
    """The group's node as a job sees it (Hydra-composed and resolved: transfer's source_model included)."""
    return compose_config([f"{group}={name}"])[group]


# ------------------------------------------------------------------------------------------ every YAML
@pytest.mark.parametrize(("group", "name"), YAMLS, ids=[f"{g}={n}" for g, n in YAMLS])
def test_yaml_is_name_plus_flat_constructor_fields(group: str, name: str) -> None:
    registry = GROUPS[group]
    node = _node(group, name)
    assert node["name"] == name
    fields = {k: v for k, v in node.items() if k != "name"}
    assert set(fields) <= set(registry.fields(name)), f"conf/{group}/{name}.yaml has non-constructor keys"
    built = registry.build(node)
    assert built.name == name
    # params() reports every field the YAML sets, with the YAML's value.
    params = built.params()
    for key, value in fields.items():
        if isinstance(value, dict) and key == "base_params":
            # transfer's base selector fills in its defaults.
            assert value.items() <= params[key].items()
        else:
            assert params[key] == value, key


@pytest.mark.parametrize(("group", "name"), YAMLS, ids=[f"{g}={n}" for g, n in YAMLS])
def test_unknown_field_is_a_one_line_error_listing_the_valid_ones(group: str, name: str) -> None:
    registry = GROUPS[group]
    with pytest.raises(RegistryError) as err:
        registry.build({**_node(group, name), "no_such_field": 1})
    message = str(err.value)
    assert "\n" not in message and "'no_such_field'" in message
    assert f"valid: {', '.join(registry.fields(name)) or '(none)'}" in message
    # The old {name, params} shape names the new paths, in one line too.
    with pytest.raises(RegistryError, match=rf"{group}\.params is the old config shape") as old:
        registry.build({"name": name, "params": {"x": 1}})
    assert "\n" not in str(old.value) and f"{group}.x" in str(old.value)


# ----------------------------------------------------------------------------------- every selector
def _features(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered non-negative features of 4 classes of 1, 6, 13 and 40 samples, interleaved."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate((1, 6, 13, 40))])
    rng.shuffle(labels)
    centres = rng.gamma(2.0, 1.0, size=(4, 5))
    return np.maximum(0.0, centres[labels] + rng.normal(0.0, 0.4, size=(len(labels), 5))), labels


@pytest.mark.parametrize("name", SELECTOR_NAMES)
def test_selector_contract(name: str) -> None:
    sel = SELECTORS.get(name)
    assert list(sel.params()) == SELECTORS.fields(name)
    key = sel.key()
    assert key["selector"] == name and key["version"] == type(sel).version >= 1
    assert json.loads(json.dumps(key)) == key
    feats, labels = _features()
    for ratio in (0.1, 0.5):
        idx = sel.select(feats, labels, ratio, seed=3)
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
        for c in np.unique(labels):
            n_c = int(np.sum(labels == c))
            expected = n_c if name == "full" else class_budget(n_c, ratio)
            assert int(np.sum(labels[idx] == c)) == expected
        # Deterministic for a seed, also through a pickled copy (coresets are cached as pickles).
        np.testing.assert_array_equal(idx, pickle.loads(pickle.dumps(sel)).select(feats, labels, ratio, 3))
        assert json.loads(json.dumps(idx.tolist())) == idx.tolist()
    # Built again from its own params(), a selector keys and selects the same.
    again = SELECTORS.get(name, **sel.params())
    assert again.key() == key


# -------------------------------------------------------------------------------- every interpreter
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> InterpretContext:
    return tiny_context(tmp_path_factory.mktemp("tiny"))


def _json_round_trip(value: Any) -> None:
    assert json.loads(json.dumps(value)) == value


@pytest.mark.parametrize("name", INTERPRETER_NAMES)
def test_interpreter_params_split_into_fit_and_evaluation_keys(name: str) -> None:
    interp: Interpreter = INTERPRETERS.get(name)
    params = interp.params()
    assert list(params) == INTERPRETERS.fields(name)
    assert type(interp).version >= 1
    declared = interp.evaluation_only | interp.speed_only
    assert declared <= set(params) and not interp.evaluation_only & interp.speed_only
    fit, evaluation = interp.fit_params(), interp.evaluation_params()
    assert not set(fit) & declared and set(fit) <= set(params)
    assert set(evaluation) == set(fit) | interp.evaluation_only
    for value in (params, fit, evaluation):
        _json_round_trip(value)


@pytest.mark.parametrize("name", INTERPRETER_NAMES)
def test_interpreter_contract(name: str, tiny: InterpretContext) -> None:
    node = _node("interpreter", name)
    interp: Interpreter = INTERPRETERS.build({**node, **{k: v for k, v in FAST.items() if k in node}})
    interp.bind(tiny.device)
    _json_round_trip(interp.prepare(tiny))
    coreset = np.arange(0, tiny.train.n, 2, dtype=np.int64)
    fit = interp.fit(tiny, coreset, seed=0)
    twin = interp.fit(tiny, coreset, seed=0)
    copy = pickle.loads(pickle.dumps(fit))
    _, h, w = tiny.val.map_shape
    for c in range(CLASSES):
        idx = tiny.val.class_indices(c)
        z = np.asarray(interp.maps(fit, tiny, idx))
        # Z is (len(indices) * h * w, d'): positions of the class's val images as rows.
        assert z.ndim == 2 and z.shape[0] == len(idx) * h * w and np.isfinite(z).all()
        # The same seed gives the same fit, and a pickled fit gives the same maps.
        np.testing.assert_allclose(np.asarray(interp.maps(twin, tiny, idx)), z, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(interp.maps(copy, tiny, idx)), z, rtol=1e-5, atol=1e-6)
    some = np.asarray([0, tiny.val.n - 1])
    for groups in interp.image_maps(fit, tiny, some):
        assert groups and all(np.asarray(g).ndim == 3 for g in groups)
    scores = interp.evaluate(fit, tiny)
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert scores == interp.evaluate(copy, tiny)
    _json_round_trip(scores)
    _json_round_trip(interp.describe(fit))
    _json_round_trip(interp.compare(fit, twin))
    # A fit compared with itself is at distance 0 (or undefined where a side has no variance).
    phi = interp.paired_phi(fit, copy, tiny, tiny.val.class_indices(0), alpha=1.0)
    assert phi.phi is None or phi.phi == pytest.approx(0.0, abs=1e-5)


# ------------------------------------------------------------------------------------------ cache keys
def test_coreset_key_holds_defaults_and_the_code_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first version keyed coresets by the raw YAML: a field left to its default and the same field
    written out gave two keys, and a changed algorithm reused old coresets."""
    from types import SimpleNamespace

    from coreset_interp.cache import ArtifactCache
    from coreset_interp.pipeline import select_coreset

    feats, labels = _features()

    def key(node: dict[str, Any]) -> str:
        ws = SimpleNamespace(
            train=SimpleNamespace(g=feats, labels=labels),
            activation_keys={"train": "tiny-train"},
            extras={},
            cache=ArtifactCache(tmp_path / "cache"),
        )
        idx, _, coreset_key = select_coreset(ws, {"selector": node}, 0.5, seed=0)  # type: ignore[arg-type]
        np.testing.assert_array_equal(idx, SELECTORS.build(node).select(feats, labels, 0.5, 0))
        return coreset_key

    implicit = key({"name": "dgpruning"})
    assert key({"name": "dgpruning", "k": 5, "gamma_r": 0.1}) == implicit
    assert key({"name": "dgpruning", "k": 3}) != implicit
    cls = SELECTORS.factory("dgpruning")
    monkeypatch.setattr(cls, "version", cls.version + 1)
    assert key({"name": "dgpruning"}) != implicit


def test_fit_and_evaluation_keys_leave_out_what_cannot_change_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from coreset_interp.pipeline import _fit_spec, evaluation_spec

    ctx = SimpleNamespace(model_key="tiny-train")

    def fit_spec(name: str, **fields: Any) -> dict[str, Any]:
        return _fit_spec(INTERPRETERS.get(name, **fields), ctx, 0, "c")  # type: ignore[arg-type]

    def eval_spec(name: str, **fields: Any) -> dict[str, Any]:
        return evaluation_spec(INTERPRETERS.get(name, **fields), "tiny-train", "tiny-val", 0)

    # Speed-only fields stay out of every key, evaluation-only ones out of the fit's.
    assert fit_spec("vebi", working_set=7, gram_batch=3) == fit_spec("vebi")
    assert eval_spec("vebi", working_set=7, gram_batch=3) == eval_spec("vebi")
    assert fit_spec("vebi", random_draws=2) == fit_spec("vebi")
    assert eval_spec("vebi", random_draws=2) != eval_spec("vebi")
    assert fit_spec("ice", candidates=2) == fit_spec("ice")
    assert eval_spec("ice", candidates=2) != eval_spec("ice")
    assert fit_spec("vebi", mu=1.0) != fit_spec("vebi")
    # A version bump changes both.
    before = fit_spec("topic"), eval_spec("topic")
    cls = INTERPRETERS.factory("topic")
    monkeypatch.setattr(cls, "version", cls.version + 1)
    assert fit_spec("topic") != before[0] and eval_spec("topic") != before[1]


@pytest.mark.parametrize("name", INTERPRETER_NAMES)
def test_speed_only_fields_do_not_split_report_series(name: str) -> None:
    """The report's series identity agrees with the cache keys: a speed-only field changes no number."""
    from coreset_interp.identity import can_change_a_number

    cls: Any = INTERPRETERS.factory(name)
    for field in cls.speed_only:
        assert not can_change_a_number(f"interpreter.{field}"), field
    for field in set(INTERPRETERS.fields(name)) - cls.speed_only:
        assert can_change_a_number(f"interpreter.{field}"), field
