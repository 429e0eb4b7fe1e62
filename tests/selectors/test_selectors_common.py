"""Contract tests shared by every registered selector: budgets, balance, output form, determinism, errors,
and the registry <-> ``conf/selector/*.yaml`` correspondence."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from coreset_interp.selectors import SELECTORS, class_budget, get_selector, list_selectors
from coreset_interp.selectors.base import class_seed_sequence

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "selector"
NAMES = ["full", "random", "moderate", "dgpruning", "kcenter", "kernel_thinning"]
RATIOS = [0.05, 0.1, 0.33, 0.5, 0.95, 1.0]
# Tiny classes (1, 2, 3 samples; 5 = dgpruning's k, so its random fallback) beside ordinary ones.
CLASS_SIZES = {0: 1, 1: 2, 2: 3, 3: 5, 4: 7, 5: 20, 6: 64}


def _data(seed: int = 0, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative clustered features with class labels in shuffled (interleaved) order."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in CLASS_SIZES.items()])
    rng.shuffle(labels)
    centres = rng.gamma(2.0, 1.0, size=(len(CLASS_SIZES), d))
    feats = np.maximum(0.0, centres[labels] + rng.normal(0.0, 0.5, size=(len(labels), d)))
    return feats.astype(np.float32), labels


def test_registered_names_are_the_expected_ones() -> None:
    assert set(NAMES) <= set(list_selectors())
    assert list_selectors() == sorted(list_selectors())


def test_every_registered_name_has_a_yaml_and_every_yaml_is_registered() -> None:
    yamls = {p.stem for p in CONF_DIR.glob("*.yaml")} - {"transfer"}  # transfer is the pipeline's
    assert yamls == set(list_selectors()) - {"transfer"}


@pytest.mark.parametrize("name", NAMES)
def test_yaml_builds_its_selector(name: str) -> None:
    cfg = yaml.safe_load((CONF_DIR / f"{name}.yaml").read_text())
    # Flat: `name` plus the constructor's fields, each with its default written out.
    assert cfg["name"] == name
    fields = {k: v for k, v in cfg.items() if k != "name"}
    assert list(fields) == SELECTORS.fields(name)
    sel = SELECTORS.build(cfg)
    assert sel.name == name
    assert sel.params() == fields


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown selector 'nope'") as err:
        get_selector("nope")
    for name in NAMES:
        assert name in str(err.value)


def test_class_budget_rounds_half_up_on_the_decimal_ratio() -> None:
    assert class_budget(5, 0.5) == 3  # round(2.5) would give 2
    assert class_budget(7, 0.5) == 4
    assert class_budget(50, 0.05) == 3  # 2.5 -> 3
    assert class_budget(90, 0.35) == 32  # float 0.35 * 90 = 31.499999999999996
    assert class_budget(1, 0.05) == 1  # never empty
    assert class_budget(9, 0.05) == 1
    assert class_budget(1300, 0.1) == 130
    assert class_budget(7, 1.0) == 7
    for bad in (0.0, -0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            class_budget(10, bad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ratio", RATIOS)
def test_budgets_balance_and_output_form(name: str, ratio: float, caplog: pytest.LogCaptureFixture) -> None:
    feats, labels = _data()
    with caplog.at_level(logging.ERROR):  # dgpruning's fallback warnings are expected here
        idx = get_selector(name).select(feats, labels, ratio, seed=3)
    assert idx.dtype == np.int64
    assert idx.ndim == 1
    assert np.all(np.diff(idx) > 0), "sorted and unique"
    assert idx.min() >= 0 and idx.max() < len(labels)
    for c, n_c in CLASS_SIZES.items():
        expected = n_c if name == "full" else class_budget(n_c, ratio)
        assert np.sum(labels[idx] == c) == expected, (c, n_c)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed(name: str) -> None:
    feats, labels = _data(1)
    sel = get_selector(name)
    a = sel.select(feats, labels, 0.3, seed=7)
    b = get_selector(name).select(feats.copy(), labels.copy(), 0.3, seed=7)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["random", "kernel_thinning"])
def test_different_seeds_give_different_coresets(name: str) -> None:
    feats, labels = _data(2)
    sel = get_selector(name)
    results = {tuple(sel.select(feats, labels, 0.25, seed=s)) for s in range(4)}
    assert len(results) > 1


@pytest.mark.parametrize("name", ["moderate", "kcenter", "dgpruning"])
def test_deterministic_methods_ignore_the_seed(name: str) -> None:
    feats, labels = _data(2)
    # No class of <= k = 5 samples, where dgpruning would fall back to random.
    labels = np.where(labels < 4, 6, labels)
    sel = get_selector(name)
    np.testing.assert_array_equal(sel.select(feats, labels, 0.25, seed=0), sel.select(feats, labels, 0.25, 9))


def test_class_seed_depends_on_seed_and_label_only() -> None:
    state = class_seed_sequence(0, 3).generate_state(2)
    np.testing.assert_array_equal(state, class_seed_sequence(0, np.int64(3)).generate_state(2))
    assert not np.array_equal(state, class_seed_sequence(1, 3).generate_state(2))
    assert not np.array_equal(state, class_seed_sequence(0, -3).generate_state(2))
    assert not np.array_equal(state, class_seed_sequence(0, 4).generate_state(2))


def test_a_class_keeps_its_random_choice_when_other_classes_change() -> None:
    feats, labels = _data(3)
    sel = get_selector("random")
    keep = labels != 6
    full = sel.select(feats, labels, 0.5, seed=4)
    part = np.flatnonzero(keep)[sel.select(feats[keep], labels[keep], 0.5, seed=4)]
    np.testing.assert_array_equal(np.intersect1d(full, np.flatnonzero(labels == 5)), part[labels[part] == 5])


def test_string_labels_work() -> None:
    feats, labels = _data(4)
    names = np.array([f"class_{c}" for c in labels])
    idx = get_selector("random").select(feats, names, 0.5, seed=0)
    assert np.sum(names[idx] == "class_6") == class_budget(64, 0.5)


def test_full_ignores_the_ratio() -> None:
    feats, labels = _data()
    np.testing.assert_array_equal(get_selector("full").select(feats, labels, 0.05), np.arange(len(labels)))


def test_progress_bar_option_runs() -> None:
    feats, labels = _data()
    idx = get_selector("random").select(feats, labels, 0.5, seed=0, progress=True)
    np.testing.assert_array_equal(idx, get_selector("random").select(feats, labels, 0.5, seed=0))


@pytest.mark.parametrize("name", NAMES)
def test_invalid_inputs_raise_value_error(name: str) -> None:
    feats, labels = _data()
    sel = get_selector(name)
    for ratio in (0.0, -0.5, 1.5, float("nan"), float("inf"), "0.5", None, True):
        with pytest.raises(ValueError, match="ratio"):
            sel.select(feats, labels, ratio)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        sel.select(feats[:, 0], labels, 0.5)
    with pytest.raises(ValueError, match="2-D"):
        sel.select(feats[None], labels, 0.5)
    with pytest.raises(ValueError, match="1-D"):
        sel.select(feats, labels[:, None], 0.5)
    with pytest.raises(ValueError, match="different lengths"):
        sel.select(feats, labels[:-1], 0.5)
    for bad in (np.nan, np.inf, -np.inf):
        broken = feats.copy()
        broken[5, 2] = bad
        with pytest.raises(ValueError, match="NaN or infinite.*row 5"):
            sel.select(broken, labels, 0.5)
    with pytest.raises(ValueError, match="empty"):
        sel.select(np.zeros((0, 3)), np.zeros(0, dtype=int), 0.5)
    with pytest.raises(ValueError, match="empty"):
        sel.select(np.zeros((4, 0)), np.zeros(4, dtype=int), 0.5)
    with pytest.raises(ValueError, match="empty class.*99"):
        sel.select(feats, labels, 0.5, classes=[*CLASS_SIZES, 99])
    with pytest.raises(ValueError, match="outside the given classes"):
        sel.select(feats, labels, 0.5, classes=[0, 1])
    for seed in (-1, 1.5, "0"):
        with pytest.raises(ValueError, match="seed"):
            sel.select(feats, labels, 0.5, seed=seed)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="real numbers"):
        sel.select(feats.astype(complex), labels, 0.5)


def test_classes_argument_accepts_the_exact_class_list() -> None:
    feats, labels = _data()
    idx = get_selector("random").select(feats, labels, 0.5, classes=list(CLASS_SIZES))
    assert len(idx) == sum(class_budget(n, 0.5) for n in CLASS_SIZES.values())


def test_a_selector_returning_the_wrong_size_is_caught() -> None:
    from coreset_interp.selectors.base import Selector

    class Broken(Selector):
        name = "broken"

        def _select_class(self, feats_c: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
            return np.arange(max(1, m - 1))

    feats, labels = _data()
    with pytest.raises(RuntimeError, match="expected .* distinct positions"):
        Broken().select(feats, labels, 0.5)


def test_registry_has_every_class_once() -> None:
    assert len(set(list_selectors())) == len(list_selectors())
    for name in NAMES:
        assert name in SELECTORS
