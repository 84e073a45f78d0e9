"""Metrics: torchmetrics Metrics, functional forms and losses."""

from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer, ReferenceFeatures, ml_clipsim
from mlclipsim.metrics.ml_clipsim_metric import MLCLIPSim, MLCLIPSimLoss

__all__ = ["MLCLIPSim", "MLCLIPSimLoss", "MLCLIPSimScorer", "ReferenceFeatures", "ml_clipsim"]
