"""Reality checks beside every Phi (SPEC section 5): where a Phi lies between "the method's own run-to-run
noise" and "an unrelated model". One module per check, re-exported here:

- :mod:`coreset_interp.reality_floor`: the noise floor (Phi between fits on bootstrap resamples of the full
  train split) and the normalised score phi_normalised = (Phi - floor) / (null - floor);
- :mod:`coreset_interp.reality_cascade`: cascading randomisation (the model-parameter randomisation test
  from the top down, the last step being the null model);
- :mod:`coreset_interp.reality_seeds`: a rho's entry over several selection seeds, mean and std.

Floor and cascade are cached artifacts keyed by model x interpreter (not by selector or rho), so a sweep
computes each once.
"""

from __future__ import annotations

from coreset_interp.reality_cascade import cascade, cascade_model, cascade_stages
from coreset_interp.reality_floor import (
    REALITY_VERSION,
    bootstrap_indices,
    bootstrap_key,
    bootstrap_seed,
    noise_floor,
    normalise,
    normalised_value,
)
from coreset_interp.reality_seeds import combine_selection_seeds, selection_seeds, with_selection_seeds

__all__ = [
    "REALITY_VERSION",
    "bootstrap_indices",
    "bootstrap_key",
    "bootstrap_seed",
    "cascade",
    "cascade_model",
    "cascade_stages",
    "combine_selection_seeds",
    "noise_floor",
    "normalise",
    "normalised_value",
    "selection_seeds",
    "with_selection_seeds",
]
