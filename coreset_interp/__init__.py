"""coreset_interp: coreset-based interpretation of trained CNNs.

Select a small class-balanced coreset of the data with a coreset selection method, run an interpretation
method on it, and measure with a representation-similarity protocol whether the insights match those
learned from the full data.
"""

__version__ = "0.1.0"
