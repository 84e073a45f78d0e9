"""Metrics: torchmetrics Metrics, functional forms and losses."""

from mlclipsim.metrics.functional.ml_clipsim import MLCLIPSimScorer, ReferenceFeatures, ml_clipsim
from mlclipsim.metrics.functional.ra_miqa import load_ra_miqa, ra_miqa
from mlclipsim.metrics.ml_clipsim_metric import MLCLIPSim, MLCLIPSimLoss
from mlclipsim.metrics.ra_miqa_metric import RAMIQA, RAMIQALoss
from mlclipsim.models.ra_miqa import RAMIQAModel

__all__ = ["MLCLIPSim", "MLCLIPSimLoss", "MLCLIPSimScorer", "ReferenceFeatures", "ml_clipsim",
           "RAMIQA", "RAMIQALoss", "RAMIQAModel", "load_ra_miqa", "ra_miqa"]
