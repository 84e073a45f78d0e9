"""Trainable network architectures that are not metrics themselves: RA-MIQA (:mod:`~mlclipsim.models.ra_miqa`).

Metrics (:mod:`mlclipsim.metrics`) wrap these models; training (:mod:`mlclipsim.training`) fits them.
"""

from mlclipsim.models.ra_miqa import RAMIQAModel

__all__ = ["RAMIQAModel"]
