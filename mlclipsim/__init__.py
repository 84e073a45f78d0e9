"""mlclipsim: how much an image still serves machines.

Public names: the ML-CLIPSim metric, loss and functional form, and their reference features;
the RA-MIQA (no-reference) metric, loss and functional form.
"""

from mlclipsim.metrics import RAMIQA, MLCLIPSim, MLCLIPSimLoss, RAMIQALoss, ReferenceFeatures, ml_clipsim, ra_miqa

__version__ = "0.1.0"

__all__ = ["MLCLIPSim", "MLCLIPSimLoss", "ReferenceFeatures", "ml_clipsim", "RAMIQA", "RAMIQALoss", "ra_miqa",
           "__version__"]
