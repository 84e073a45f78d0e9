"""On-disk images and datasets.

The Lightning DataModules (which import Lightning) load on first use, so that reading an image
does not pay for importing Lightning.
"""

from importlib import import_module
from typing import Any

from mlclipsim.core.images import ImageReadError, list_images, read_image, read_image_array

_LAZY = {name: "mlclipsim.data.datamodules" for name in (
    "MachineQualityDataModule", "MachineQualityDataset", "PreferencePairsDataModule", "PreferencePairsDataset",
    "load_manifest", "load_pairs")}

__all__ = ["ImageReadError", "list_images", "read_image", "read_image_array", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlclipsim.data' has no attribute {name!r}")
