"""mlclipsim: how much an image still serves machines.

Public names: the ML-CLIPSim metric, loss and functional form, and their reference features;
the RA-MIQA (no-reference) metric, loss and functional form. They are imported on first use
(PEP 562), so that ``import mlclipsim.cli`` and ``mlclipsim --help`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlclipsim.metrics import RAMIQA, MLCLIPSim, MLCLIPSimLoss, RAMIQALoss, ReferenceFeatures, ml_clipsim, ra_miqa

__version__ = "0.1.0"

__all__ = ["MLCLIPSim", "MLCLIPSimLoss", "ReferenceFeatures", "ml_clipsim", "RAMIQA", "RAMIQALoss", "ra_miqa",
           "__version__"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("mlclipsim.metrics"), name)
        globals()[name] = value
        return value
    try:  # subpackages: mlclipsim.metrics etc. after a plain `import mlclipsim`
        return importlib.import_module(f"mlclipsim.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"mlclipsim.{name}":
            raise
        raise AttributeError(f"module 'mlclipsim' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
