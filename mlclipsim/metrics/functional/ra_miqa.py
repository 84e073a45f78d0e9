"""RA-MIQA, functional form and weight resolution: predicted machine quality of images, no reference.

``ra_miqa(images, task="detection")`` scores (N,3,H,W) images in [0,1] with the trained RA-MIQA
model of that task and target; gradients flow to the images (all preprocessing is tensor code).

Trained weights are found like every encoder's (:mod:`mlclipsim.core.weights`), in this order:

1. an explicit path: ``weights="/path/to/ra_miqa.pt"`` (written by ``mlclipsim train-ramiqa``);
2. ``$MLCLIPSIM_WEIGHTS_DIR/ra_miqa_<name>.pt``;
3. the file shipped inside the package: ``mlclipsim/weights/ra_miqa/<name>.pt``;
4. no download exists.

``<name>`` is ``mobilenet_v2_<task>_<target>`` (the offline hybrid on MobileNetV2). The package ships
two heads, detection and classification consistency (the offline data engine labels consistency
only; accuracy and composite heads need ground-truth annotations that it does not have; a
segmentation head is trained with ``mlclipsim train-ramiqa`` but does not ship). When none is found, one
:class:`~mlclipsim.backbones.MissingWeightsError` names every way to provide it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from mlclipsim.backbones import WeightSpec, load_weights
from mlclipsim.metrics.frozen import freeze
from mlclipsim.metrics.functional.ml_clipsim import Reduction, reduce
from mlclipsim.metrics.input_checks import check_device, check_images
from mlclipsim.models.ra_miqa import RAMIQAModel, head_name

WEIGHTS_PACKAGE = "mlclipsim.weights"
WEIGHTS_FOLDER = "ra_miqa"
DEFAULT_ENCODER_TAG = "mobilenet_v2"


def shipped_name(task: str, target: str = "consistency", encoder_tag: str = DEFAULT_ENCODER_TAG) -> str:
    """File name of a shipped RA-MIQA model, e.g. ``mobilenet_v2_detection_consistency.pt``."""
    head_name(task, target)
    return f"{encoder_tag}_{task}_{target}.pt"


def shipped_path(task: str, target: str = "consistency", encoder_tag: str = DEFAULT_ENCODER_TAG) -> Path:
    """Where the package keeps that file (it may be absent: see :func:`ra_miqa_weight_spec`)."""
    return Path(str(resources.files(WEIGHTS_PACKAGE) / WEIGHTS_FOLDER / shipped_name(task, target, encoder_tag)))


def ra_miqa_weight_spec(task: str, target: str = "consistency", encoder_tag: str = DEFAULT_ENCODER_TAG) -> WeightSpec:
    name = shipped_name(task, target, encoder_tag)

    def packaged() -> Path:
        path = shipped_path(task, target, encoder_tag)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not in this installation")
        return path

    return WeightSpec(
        owner=f"RA-MIQA {task}/{target}", tag=encoder_tag, filename=f"ra_miqa_{name}", package_path=packaged,
        package_hint="shipped with mlclipsim in mlclipsim/weights/ra_miqa/ (reinstall mlclipsim, or train one with "
                     "`mlclipsim train-ramiqa --config mlclipsim/configs/ra_miqa.yaml` and pass weights=PATH)",
        download_hint="no download exists for RA-MIQA heads; train one with `mlclipsim train-ramiqa`",
    )


def load_ra_miqa(task: str = "detection", target: str = "consistency", weights: str | os.PathLike | None = None,
                 allow_download: bool | None = None) -> RAMIQAModel:
    """The trained RA-MIQA model for ``task``/``target`` (see the module docstring for where it comes from).

    Raises:
        MissingWeightsError: no weights file was found (the message names every way to provide one).
        ValueError: the file has no head for ``task``/``target``.
    """
    head = head_name(task, target)
    model = load_weights(ra_miqa_weight_spec(task, target), weights,
                         load_file=lambda path: RAMIQAModel.from_file(path, allow_download=allow_download),
                         load_upstream=None)
    model.head_index(head)  # raises, naming the heads the file has
    return model


@lru_cache(maxsize=4)
def _cached_model(task: str, target: str, weights: str | None) -> RAMIQAModel:
    """The shipped (or given) model, built once and frozen: no grad graph unless the images need one."""
    return freeze(load_ra_miqa(task, target, weights))


def score_images(model: RAMIQAModel, images: torch.Tensor, head: str, range_tolerance: float = 1e-3) -> torch.Tensor:
    """Validated (N,3,H,W) images of any float dtype -> (N,) predicted quality of one head, in the model's dtype
    (the images are cast to it, as ML-CLIPSim casts them to its encoder's)."""
    check_images(images, range_tolerance=range_tolerance)
    parameter = next(model.net.parameters(), None)
    if parameter is not None:
        check_device(images, parameter.device)
        images = images.to(parameter.dtype)
    index = model.head_index(head)
    return model(images)[:, index]


def ra_miqa(images: torch.Tensor, task: str = "detection", target: str = "consistency",
            weights: str | os.PathLike | None = None, model: RAMIQAModel | None = None,
            reduction: Reduction = "mean") -> torch.Tensor:
    """Predicted machine quality of ``images`` (no reference), higher is better.

    Args:
        images: (N,3,H,W) float in [0,1], any H, W >= 32; gradients flow to them.
        task, target: which head (tasks classification, detection, segmentation; target consistency).
        weights: an RA-MIQA file; None takes the shipped one (models are built once and cached).
        model: an already built :class:`RAMIQAModel` (then ``weights`` is ignored).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` for the (N,) per-image scores.

    Predictions are on the scale of the training labels (mean consistency of the task's models, [0, 1]):
    in (0, 1) for a bounded model (a sigmoid on each head, the default for new models), unclipped for the
    heads trained before that option (``model.config["bounded"]`` says which).
    """
    head = head_name(task, target)
    if model is None:
        model = _cached_model(task, target, None if weights is None else os.fspath(weights))
    return reduce(score_images(model, images, head), reduction)
