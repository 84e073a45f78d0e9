"""mlclipsim: how much an image still serves machines.

Public names: the ML-CLIPSim metric, loss and functional form, and their reference features.
"""

from mlclipsim.metrics import MLCLIPSim, MLCLIPSimLoss, ReferenceFeatures, ml_clipsim

__version__ = "0.1.0"

__all__ = ["MLCLIPSim", "MLCLIPSimLoss", "ReferenceFeatures", "ml_clipsim", "__version__"]
