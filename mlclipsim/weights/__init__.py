"""Data that ships with mlclipsim, each record with its provenance (the command that produced it), and its reader.

- ``ml_clipsim/<backbone>.json``: calibrated ML-CLIPSim layer weights (:mod:`mlclipsim.metrics.layer_weights`);
- ``ra_miqa/<name>.pt`` (+ ``.json``): trained RA-MIQA heads (:mod:`mlclipsim.metrics.functional.ra_miqa`);
- ``term_scales/<term>.json``: calibrated scales of the codec-loss terms
  (:mod:`mlclipsim.training.distortion_terms`).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

PACKAGE = "mlclipsim.weights"


def shipped_record(folder: str, filename: str) -> dict[str, Any] | None:
    """The JSON record ``mlclipsim/weights/<folder>/<filename>``, or None when none ships.

    >>> shipped_record("term_scales", "ra-miqa.json")["scales"][0]["scale"]
    725.2
    >>> shipped_record("term_scales", "no-such-term.json") is None
    True
    """
    path = resources.files(PACKAGE) / folder / filename
    if not path.is_file():
        return None
    return json.loads(path.read_text())
