"""The transfer selector (paper Sec. 4.5) returns the coreset the base selector picks on the source
model's features, for the target model's images."""

from __future__ import annotations

import numpy as np
import pytest

from coreset_interp.models import get_model
from coreset_interp.pipeline import activations_for, select_coreset
from coreset_interp.selectors import SELECTORS, get_selector

SOURCE = ["selector=transfer", "model@selector.source_model=resnet18"]


def test_transfer_uses_the_source_models_features(make_config, digits_workspace):
    ws = digits_workspace
    # An untrained resnet18 as the source: its features differ from the trained target's, cheaply.
    cfg = make_config([*SOURCE, "selector.source_model.weights=random"])
    idx, _, key = select_coreset(ws, cfg, 0.2, seed=0)
    # The source is a field of the selector, handed to the pipeline by its hook.
    assert SELECTORS.build(cfg["selector"]).source_model() == cfg["selector"]["source_model"]

    src_cfg = cfg["selector"]["source_model"]
    src_model, src_info = get_model(**src_cfg).load(ws.dataset, ws.cache, ws.device, progress=False)
    src, _ = activations_for(ws.cache, src_model, src_info["spec"], ws.dataset, "train", ws.device, cfg)
    expected = get_selector("moderate").select(src.g, ws.train.labels, 0.2, 0)
    own = get_selector("moderate").select(ws.train.g, ws.train.labels, 0.2, 0)
    np.testing.assert_array_equal(idx, expected)
    assert not np.array_equal(idx, own)
    assert len(idx) == len(own)

    # Another base selector on the same source gives that selector's coreset.
    random_source = "selector.source_model.weights=random"
    cfg_k = make_config([*SOURCE, random_source, "selector.base=kcenter"])
    idx_k, _, key_k = select_coreset(ws, cfg_k, 0.2, seed=0)
    np.testing.assert_array_equal(idx_k, get_selector("kcenter").select(src.g, ws.train.labels, 0.2, 0))
    assert key_k != key


def test_transfer_rejects_itself_as_base():
    with pytest.raises(ValueError, match="another selector"):
        get_selector("transfer", base="transfer")


def test_transfer_params_name_the_base():
    sel = get_selector("transfer", base="dgpruning", base_params={"k": 3})
    assert sel.params() == {
        "base": "dgpruning",
        "base_params": {"k": 3, "gamma_r": 0.1},
        "source_model": None,
    }
    assert sel.source_model() is None
    # The coreset key also holds the base selector's code version: its algorithm does the choosing.
    assert sel.key() == {"selector": "transfer", "version": 1, "params": sel.params(), "base_version": 1}
