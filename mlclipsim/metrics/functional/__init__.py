"""Functional forms of the metrics."""

from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer, ReferenceFeatures, ml_clipsim

__all__ = ["MLCLIPSimScorer", "ReferenceFeatures", "ml_clipsim"]
