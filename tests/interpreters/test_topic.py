"""Topic-based interpretation: the thresholded projection on a hand-made case, seeded training with its
budget, maps and accuracy on the embedded default, and an end-to-end job."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from coreset_interp.interpreters import InterpretContext, get_interpreter
from coreset_interp.interpreters.topic import Topic, concept_scores, reconstruct
from coreset_interp.selectors import get_selector

EPS = 1e-3  # the reference's constant in the denominator


def test_thresholded_projection_on_a_hand_made_case() -> None:
    # Two concepts along the axes; the second is given unnormalised (columns are normalised).
    concepts = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    f = torch.tensor(
        [
            [2.0, 0.0],  # only concept 0 fires
            [1.0, 1.0],  # both fire (cos 0.707 > 0.2)
            [1.0, 0.1],  # cos with concept 1 is 0.0995 < 0.2: masked out
            [0.0, 0.0],  # nothing fires
            [-1.0, 0.5],  # concept 1 fires (cos 0.447); concept 0 has negative cosine
        ]
    )
    v, cos = concept_scores(f, concepts, beta=0.2)
    expected = torch.tensor(
        [
            [2.0 / (2.0 + EPS), 0.0],
            [1.0 / (2.0 + EPS), 1.0 / (2.0 + EPS)],
            [1.0 / (1.0 + EPS), 0.0],
            [0.0, 0.0],
            [0.0, 0.5 / (0.5 + EPS)],
        ]
    )
    torch.testing.assert_close(v, expected)
    torch.testing.assert_close(cos[1], torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]))
    # A higher threshold switches the diagonal case off entirely.
    v_hi, _ = concept_scores(f, concepts, beta=0.8)
    torch.testing.assert_close(v_hi[1], torch.zeros(2))


def test_reconstruction_net_has_no_biases() -> None:
    g1, g2 = torch.randn(3, 7), torch.randn(7, 5)
    assert torch.equal(reconstruct(torch.zeros(4, 3), g1, g2), torch.zeros(4, 5))
    v = torch.rand(4, 3)
    torch.testing.assert_close(reconstruct(v, g1, g2), torch.relu(v @ g1) @ g2)


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="budget"):
        Topic(budget="minutes")
    with pytest.raises(ValueError, match="init"):
        Topic(init="zeros")


def test_topic_on_the_embedded_default(digits_context: InterpretContext) -> None:
    ctx = digits_context
    coreset = get_selector("random").select(ctx.train.g, ctx.train.labels, 0.2, 0)
    topic = Topic(steps=60)
    fit = topic.fit(ctx, coreset, seed=0)
    d = ctx.train.map_shape[0]
    assert fit.concepts.shape == (d, 10) and fit.g1.shape == (10, 500) and fit.g2.shape == (500, d)
    # Seeded: the same seed gives the same concepts, another seed others.
    short = Topic(steps=5)
    first = short.fit(ctx, coreset, seed=0)
    np.testing.assert_array_equal(short.fit(ctx, coreset, seed=0).concepts, first.concepts)
    assert not np.allclose(short.fit(ctx, coreset, seed=1).concepts, first.concepts)
    desc = topic.describe(fit)
    assert desc["topic_budget"] == "steps" and desc["topic_steps"] == 60
    assert desc["topic_epochs"] == pytest.approx(60 * 128 / len(coreset))
    ev = topic.evaluate(fit, ctx)
    assert ev["intact_accuracy"] > 0.9
    # The concepts keep what the head needs: within 10 points of the intact model after 60 steps.
    assert ev["accuracy"] > ev["intact_accuracy"] - 0.10
    idx = ctx.val.class_indices(7)
    z = topic.maps(fit, ctx, idx)
    assert z.shape == (len(idx) * 2 * 2, 10) and z.dtype == np.float32
    # Scores are non-negative shares of the masked projections: each row sums to at most 1.
    assert (z >= 0).all() and (z.sum(axis=1) <= 1 + 1e-6).all() and z.sum() > 0


def test_epoch_budget_scales_with_the_coreset(digits_context: InterpretContext) -> None:
    ctx = digits_context
    topic = Topic(budget="epochs", epochs=2, batch_size=64)
    small = get_selector("random").select(ctx.train.g, ctx.train.labels, 0.1, 0)
    fit = topic.fit(ctx, small, seed=0)
    assert fit.steps == 2 * math.ceil(len(small) / 64)
    assert topic.describe(fit)["topic_budget"] == "epochs"
    assert topic.describe(fit)["topic_epochs"] == pytest.approx(fit.steps * 64 / len(small))


@pytest.mark.slow
def test_topic_job_writes_complete_results(make_config: Callable[..., dict[str, Any]]) -> None:
    from coreset_interp.pipeline import run

    assert isinstance(get_interpreter("topic"), Topic)
    cfg = make_config(
        [
            "interpreter=topic",
            "interpreter.steps=30",
            "selector=random",
            "ratio.percents=[10,50]",
            "metric.null_reference=false",
        ]
    )
    res = run(cfg)
    full = res["full"]
    assert {"accuracy", "intact_accuracy", "completeness", "topic_budget", "topic_steps"} <= set(full)
    assert full["topic_steps"] == 30 and full["fit_seconds"] > 0
    assert [e["percent"] for e in res["ratios"]] == [10, 50]
    for entry in res["ratios"]:
        assert entry["topic_steps"] == 30
        assert 0 <= entry["accuracy"] <= 1
        assert entry["angular_distance"] is not None and 0 <= entry["angular_distance"] <= np.pi
        assert len(entry["angular_distance_per_class"]) == 10


def test_full_epochs_budget_is_data_relative(digits_context: InterpretContext) -> None:
    """Protects the data-relative budget: ``epochs_of_full`` passes over the whole train split, the same
    step count for a 10 % coreset as for the full data (a per-rho epoch budget gives the coreset 10x fewer
    steps), recorded as ``topic_budget``/``topic_steps``."""
    ctx = digits_context
    topic = Topic(budget="full_epochs", epochs_of_full=0.25, batch_size=64)
    expected = math.ceil(0.25 * ctx.train.n / 64)
    small = get_selector("random").select(ctx.train.g, ctx.train.labels, 0.1, 0)
    assert topic.step_count(len(small), ctx.train.n) == topic.step_count(ctx.train.n, ctx.train.n) == expected
    fit = topic.fit(ctx, small, seed=0)
    assert fit.steps == expected
    desc = topic.describe(fit)
    assert desc["topic_budget"] == "full_epochs" and desc["topic_steps"] == expected
    per_rho = Topic(budget="epochs", epochs=2, batch_size=64)
    assert per_rho.step_count(len(small), ctx.train.n) < per_rho.step_count(ctx.train.n, ctx.train.n)
    with pytest.raises(ValueError, match="epochs_of_full"):
        Topic(budget="full_epochs", epochs_of_full=0)
