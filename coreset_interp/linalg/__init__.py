"""Dense per-class linear algebra in torch, on the job's device (CPU in tests, CUDA in real use)."""

from coreset_interp.linalg.nmf import TorchNMF, fit_nmf, nndsvda_init, nnls_hals, randomized_svd

__all__ = ["TorchNMF", "fit_nmf", "nndsvda_init", "nnls_hals", "randomized_svd"]
