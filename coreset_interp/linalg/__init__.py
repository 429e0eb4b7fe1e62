"""Dense per-class linear algebra in torch, on the job's device (CPU in tests, CUDA in real use)."""

from coreset_interp.linalg.nmf import SOLVERS, TorchNMF, fit_nmf, nnls_hals
from coreset_interp.linalg.sketch import nndsvda_init, randomized_svd, range_sketch

__all__ = ["SOLVERS", "TorchNMF", "fit_nmf", "nndsvda_init", "nnls_hals", "randomized_svd", "range_sketch"]
