"""Metrics: shape metric, accuracy, coverage, cost."""
