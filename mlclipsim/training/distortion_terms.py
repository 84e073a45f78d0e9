"""Distortion terms of the codec loss: one registry, keyed by name, plus any loss given by import path.

A term computes a raw value from ``(x_hat, x)`` and maps it to a distortion ``D`` on the scale of
CompressAI's MSE term, so that the published lambda ladders keep their meaning:

==============  =====================================  ==========================================
term            D                                      lambda ladder it was made for
==============  =====================================  ==========================================
``mse``         255**2 * MSE                           0.0018 0.0035 0.0067 0.0130 0.0250 0.0483
``ms-ssim``     1 - MS-SSIM                            2.40 4.58 8.73 16.64 31.73 60.50
``ml-clipsim``  scale * (1 - ML-CLIPSim)               the MSE ladder (``scale`` calibrated, below)
import path     scale * value (or scale * (1 - value)  the MSE ladder if ``scale`` is chosen so
                for a Metric with higher_is_better)
==============  =====================================  ==========================================

The loss (:class:`~mlclipsim.training.codec_loss.MLRateDistortionLoss`) adds ``D = sum_i w_i * D_i``; with
weights summing to 1, a mix of terms that are each on the MSE scale stays on it.

A term spec (YAML or Python) is a name, or a mapping with ``name``, optional ``weight`` (default 1,
non-negative), optional ``label`` (the key its raw value is logged under) and the term's options:

.. code-block:: yaml

    terms:
      - {name: mse, weight: 0.5}
      - {name: ml-clipsim, weight: 0.5, backbone: torchvision/mobilenet_v2}
      - {name: "torch.nn:L1Loss", weight: 1.0, scale: 5000.0}             # any nn.Module loss
      - {name: "torchmetrics.image.StructuralSimilarityIndexMeasure",     # any differentiable Metric
         init_args: {data_range: 1.0}}

ML-CLIPSim scale. ``scale`` makes the ML-CLIPSim term interchangeable with MSE under one lambda: it
is the ratio of the slopes of the two distortions along a rate-distortion curve,
``scale = (dD_mse/dR) / (d(1 - ML-CLIPSim)/dR)``, measured at 0.5 bpp. A rate-distortion optimum
satisfies ``lambda * dD/dR = -1``, so with this scale the same lambda asks for the same trade-off
(hence about the same rate) near 0.5 bpp, the middle of the ladder. Measured with
``python -m mlclipsim.training.calibrate_lambda`` (JPEG 4:2:0 at 13 qualities as the probe codec,
on 256x256 centre crops of the shared photos; the numbers ship in
``mlclipsim/weights/term_scales/ml-clipsim.json`` with the command of each, as :data:`CALIBRATED_SCALES`, and in
codecs/README.md). The same probe gives for MS-SSIM a slope ratio next to CompressAI's own ladder
ratio, which is the check that the method lands where CompressAI's ladders are. A backbone or cosine
map without a calibrated scale needs ``scale`` explicitly (run the script with ``--backbone``).

Adding a term: decorate a factory with ``@register_term("name")`` (it receives the spec's options
as keyword arguments and returns a :class:`DistortionTerm`), or give its import path in the spec.

RA-MIQA term. ``ra-miqa`` is a no-reference term (``needs_reference = False``: called with the
reconstructions alone), ``D = scale * (1 - predicted machine quality)`` with a shipped RA-MIQA head.
Its scale is measured the same way (slope ratio along JPEG at 0.5 bpp; :data:`RA_MIQA_SCALES`). Alone
it can be gamed: nothing ties the reconstruction to the photo. The recipes mix it with MSE.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlclipsim.backbones.cnn_encoders import CNN_SPECS
from mlclipsim.core.registry import ENTRY_POINT_GROUPS, Registry, first_doc_line
from mlclipsim.metrics import MLCLIPSimLoss, RAMIQALoss
from mlclipsim.training.msssim import MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_levels
from mlclipsim.weights import shipped_record

TermSpec = str | Mapping[str, Any]

# Lambda ladders of CompressAI's pretrained zoo models (quality 1..6; 7 and 8 continue for MSE).
MSE_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
MS_SSIM_LAMBDAS = (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00)

SCALES_FOLDER = "term_scales"
"""Calibrated term scales ship as ``mlclipsim/weights/term_scales/<term>.json``, each with its command and result."""


def calibrated_scale_records(term: str) -> list[dict[str, Any]]:
    """The shipped scale records of a term (``mlclipsim/weights/term_scales/<term>.json``; [] when none ship)."""
    record = shipped_record(SCALES_FOLDER, f"{term}.json")
    return list(record["scales"]) if record else []


CALIBRATED_SCALES: dict[tuple[str, str, str], float] = {
    (r["backbone"], r["cosine_map"], r["resize"]): float(r["scale"]) for r in calibrated_scale_records("ml-clipsim")
}
"""(backbone, cosine_map, resize policy) -> scale, from ``mlclipsim/weights/term_scales/ml-clipsim.json``.

Measured by ``MLCLIPSIM_OFFLINE=1 python -m mlclipsim.training.calibrate_lambda`` on all 86 shared photos.

Slope ratio ``dD_mse / d(1 - ML-CLIPSim)`` along JPEG's rate-distortion curve (256-px centre crops):

=========================  ========  =========  ========
                           0.5 bpp   0.75 bpp   1.0 bpp
=================================  ========  =========  ========
mobilenet_v2, rescale              1354.8    989.8     995.6
mobilenet_v2, clamp                 679.0     495.2      497.9
mobilenet_v2, rescale, native      1434.3    981.7     888.8
mobilenet_v2, clamp, native         720.1     492.1      445.2
MS-SSIM (check)                    1724.3    1819.5     2095.4
=================================  ========  =========  ========

The ``native`` rows (``--resize native``: the encoder runs on the 256-px crops as they are, as the
small recipes run it on their 128-px training crops, at a third of the cost of resizing them to
224 px) are in ``benchmarks/results/codecs/calibrate_lambda_native.json``.

The scale kept is the 0.5-bpp value. The MS-SSIM row is the check of the method: CompressAI's own
ladders give ``lambda_ms-ssim / lambda_mse`` = 1253..1333, within a factor 1.4 of the probe's value
(JPEG's block artefacts cost MS-SSIM more than a learned codec's blur does), so expect the
ml-clipsim term's rates within about that factor of the MSE model's at the same lambda, and sweep
the ladder one step either way when rates must match exactly. At the JPEG quality nearest 0.5 bpp
(q15), ``scale * (1 - ML-CLIPSim)`` pulls on the pixels about 20x harder than ``255**2 * MSE``
(median ratio of gradient norms 20.1 for both maps, with the calibrated MobileNetV2 layer weights):
the term's gradient is concentrated on what the encoder sees, not spread over all pixels.
"""

RA_MIQA_SCALES: dict[tuple[str, str], float] = {
    (r["task"], r["target"]): float(r["scale"]) for r in calibrated_scale_records("ra-miqa")
}
"""(task, target) of a shipped RA-MIQA head (MobileNetV2 hybrid) -> scale of ``1 - RA-MIQA``, from
``mlclipsim/weights/term_scales/ra-miqa.json``.

Measured by ``MLCLIPSIM_OFFLINE=1 python -m mlclipsim.training.calibrate_lambda --resize native
--cosine-map rescale --ra-miqa detection classification`` on all 86 shared photos (256-px centre crops,
JPEG probe; ``benchmarks/results/codecs/calibrate_lambda_ra_miqa.json``). Slope ratio
``dD_mse / d(1 - RA-MIQA)``:

=====================  ========  =========  ========
head                   0.5 bpp   0.75 bpp   1.0 bpp
=====================  ========  =========  ========
detection/consistency   725.2     575.6      633.1
classification/cons.    929.5     815.4     1012.4
=====================  ========  =========  ========

Unlike ``1 - ML-CLIPSim``, ``1 - RA-MIQA`` does not reach 0 at the reference: along the probe it
flattens at 0.27 (detection) and 0.40 (classification) above q80, where the head stops telling
qualities apart.
"""

_STRAY = 0.45  # reconstructions are clipped to [-0.45, 1.45] (straight-through) before ML-CLIPSim / RA-MIQA


def _bounded(preds: torch.Tensor) -> torch.Tensor:
    """``preds`` clipped to [-_STRAY, 1 + _STRAY] in the forward pass, identity in the backward pass."""
    return preds + (preds.clamp(-_STRAY, 1.0 + _STRAY) - preds).detach()


def _positive_scale(term: str, scale: Any) -> float:
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"{term} scale must be a positive number, got {scale!r}.")
    return float(scale)


class DistortionTerm(nn.Module):
    """One distortion term: ``forward(x_hat, reference) -> raw`` (a scalar tensor), ``distortion(raw) -> D``.

    Attributes:
        name: the key the raw value is logged under.
        weight: its weight in ``D`` (non-negative).
        needs_reference: False for no-reference terms (called as ``term(x_hat, None)``).
    """

    needs_reference: bool = True

    def __init__(self, name: str, weight: float = 1.0) -> None:
        super().__init__()
        self.name = name
        self.weight = float(weight)

    def prepare(self, target: torch.Tensor) -> Any:
        """Reference-side work done once per batch without gradients (default: the images themselves)."""
        return target

    def distortion(self, raw: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weight={self.weight}"


class MSETerm(DistortionTerm):
    """``raw = MSE(x_hat, x)`` on [0,1] images; ``D = 255**2 * raw`` (CompressAI's convention)."""

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(preds, target)

    def distortion(self, raw: torch.Tensor) -> torch.Tensor:
        return 255.0**2 * raw


class MSSSIMTerm(DistortionTerm):
    """``raw = MS-SSIM(x_hat, x)`` (data range 1); ``D = 1 - raw`` (CompressAI's convention).

    Crops whose smaller side is at most 160 px are scored at fewer scales (see
    :mod:`mlclipsim.training.msssim`); the lambda ladder then holds only approximately.
    """

    def __init__(self, name: str = "ms-ssim", weight: float = 1.0) -> None:
        super().__init__(name, weight)
        self._warned = False

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        levels = ms_ssim_levels(*preds.shape[-2:])
        if levels < len(MS_SSIM_WEIGHTS) and not self._warned:
            self._warned = True
            warnings.warn(f"{preds.shape[-2]}x{preds.shape[-1]} crops are too small for 5-scale MS-SSIM "
                          f"(needs > 160 px); the ms-ssim term uses {levels} scale(s), so CompressAI's MS-SSIM "
                          "lambda ladder holds only approximately.", stacklevel=2)
        return ms_ssim(preds, target, data_range=1.0, levels=levels)

    def distortion(self, raw: torch.Tensor) -> torch.Tensor:
        return 1.0 - raw


class MLCLIPSimTerm(DistortionTerm):
    """``raw = ML-CLIPSim(x_hat, x)``; ``D = scale * (1 - raw)``.

    The reference features are computed once per batch in :meth:`prepare` (no gradients). The
    reconstructions are clipped to [-0.45, 1.45] with a straight-through gradient before scoring, so a
    codec trained from random weights never stops on the metric's range check (NaN still raises).

    Args:
        backbone, pretrained, layers, weights, resize, allow_download, backbone_options: as for
            :class:`~mlclipsim.MLCLIPSimLoss`. Default backbone ``torchvision/mobilenet_v2`` (real
            weights offline); CLIP backbones (``ViT-B-32`` with ``pretrained: openai``) need a network.
        cosine_map: default ``"rescale"``: every token keeps a gradient, which a codec trained from
            scratch needs.
        scale: the factor that puts the term on the MSE scale; None takes it from
            :data:`CALIBRATED_SCALES` for (backbone, cosine_map, resize), else fails saying how to measure it.
        backbone_options: passed to the encoder; a registered CNN runs channels-last unless
            ``{"channels_last": false}`` is given (faster on CPU, equal to float rounding).
    """

    def __init__(self, name: str = "ml-clipsim", weight: float = 1.0, backbone: Any = "torchvision/mobilenet_v2",
                 pretrained: str | os.PathLike | None = None, layers: Sequence[str] | None = None,
                 weights: Mapping[str, float] | None = None, resize: str = "resize", cosine_map: str = "rescale",
                 scale: float | None = None, allow_download: bool | None = None,
                 backbone_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, weight)
        self.scale = resolve_ml_clipsim_scale(backbone, cosine_map, scale, resize)  # before the (slower) encoder
        options = dict(backbone_options or {})
        if isinstance(backbone, str) and backbone in CNN_SPECS:
            options.setdefault("channels_last", True)
        self.loss = MLCLIPSimLoss(backbone, pretrained=pretrained, layers=layers, weights=weights, resize=resize,
                                  cosine_map=cosine_map, allow_download=allow_download, **options)

    def prepare(self, target: torch.Tensor) -> Any:
        return self.loss.reference_features(target)

    def forward(self, preds: torch.Tensor, reference: Any) -> torch.Tensor:
        return 1.0 - self.loss(_bounded(preds), reference)

    def distortion(self, raw: torch.Tensor) -> torch.Tensor:
        return self.scale * (1.0 - raw)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale:.6g}"


def resolve_ml_clipsim_scale(backbone: Any, cosine_map: str, scale: float | None, resize: str = "resize") -> float:
    """``scale`` if given (must be positive), else the calibrated value for (backbone, cosine_map, resize)."""
    if scale is not None:
        return _positive_scale("ml-clipsim", scale)
    name = backbone if isinstance(backbone, str) else getattr(backbone, "name", type(backbone).__name__)
    key = (name, cosine_map, resize)
    if key in CALIBRATED_SCALES and CALIBRATED_SCALES[key] > 0:
        return CALIBRATED_SCALES[key]
    known = ", ".join(f"{b} (cosine_map {m}, resize {r})" for b, m, r in CALIBRATED_SCALES)
    raise ValueError(f"No calibrated ml-clipsim scale for backbone {name!r} with cosine_map {cosine_map!r} and resize "
                     f"{resize!r} (calibrated: {known}). Measure one with `python -m "
                     f"mlclipsim.training.calibrate_lambda --backbone {name} --cosine-map {cosine_map} --resize "
                     f"{resize}` and pass it as the term's `scale` option.")


class ImportedTerm(DistortionTerm):
    """A loss given by import path: an ``nn.Module`` loss or a differentiable torchmetrics ``Metric``.

    ``raw`` is what it returns for ``(x_hat, x)`` (it must be a scalar); ``D = scale * raw``, or
    ``scale * (1 - raw)`` when ``higher_is_better`` (default: the Metric's own attribute, False for
    plain modules). A Metric is used through ``forward`` (the batch value, no cross-process sync) and
    reset after every call, so nothing accumulates.
    """

    def __init__(self, name: str, module: nn.Module, weight: float = 1.0, scale: float = 1.0,
                 higher_is_better: bool = False) -> None:
        super().__init__(name, weight)
        self.module = module
        self.scale = float(scale)
        self.higher_is_better = bool(higher_is_better)

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from torchmetrics import Metric

        value = self.module(preds, target)
        if isinstance(self.module, Metric):
            self.module.reset()
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"Term {self.name!r} returned {shape}; a distortion term must return a scalar tensor "
                             "(for a loss module set reduction='mean').")
        if preds.requires_grad and torch.is_grad_enabled() and not value.requires_grad:
            raise ValueError(f"Term {self.name!r} returned a value without gradient: it is not differentiable "
                             "and cannot train a codec.")
        return value.reshape(())

    def distortion(self, raw: torch.Tensor) -> torch.Tensor:
        return self.scale * ((1.0 - raw) if self.higher_is_better else raw)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale:.6g}, higher_is_better={self.higher_is_better}"


# ------------------------------------------------------------------------------------------- registry

TermFactory = Callable[..., DistortionTerm]
DISTORTION_TERMS: Registry[TermFactory] = Registry(
    "distortion term", ENTRY_POINT_GROUPS["distortion term"],
    unknown_message="Unknown distortion term {name!r}; choose one of {quoted}, or an import path "
                    "'package.module:Class' of an nn.Module loss or a differentiable torchmetrics Metric.")
"""Registered terms (plugins: entry-point group ``mlclipsim.loss_terms``, pointing at a term factory)."""


def register_term(name: str, description: str = "",
                  overwrite: bool = False) -> Callable[[TermFactory], TermFactory]:
    """Register a factory ``f(name=..., weight=..., **options) -> DistortionTerm`` under ``name``.

    A taken name needs ``overwrite=True``; the description defaults to the factory's first docstring line.
    """

    def decorate(factory: TermFactory) -> TermFactory:
        return DISTORTION_TERMS.register(name, factory, description or first_doc_line(factory), overwrite=overwrite)

    return decorate


def list_terms() -> list[str]:
    """Names of the registered distortion terms (an import path is accepted too)."""
    return DISTORTION_TERMS.names()


register_term("mse")(MSETerm)
register_term("ms-ssim")(MSSSIMTerm)
register_term("ml-clipsim")(MLCLIPSimTerm)


class RAMIQATerm(DistortionTerm):
    """No-reference term: ``raw = 1 - RA-MIQA(x_hat)`` (mean predicted machine quality); ``D = scale * raw``.

    It is called with the reconstructions alone (``needs_reference = False``): nothing ties the image
    to the photo it codes, so on its own a codec can game it (see codecs/README.md); mix it with a
    fidelity term. Reconstructions are clipped to [-0.45, 1.45] (straight-through) before scoring.

    Args:
        task, target: the RA-MIQA head (see :class:`~mlclipsim.metrics.RAMIQALoss`; default the shipped
            detection consistency head).
        weights: an RA-MIQA weights file (None: the shipped head).
        scale: the factor that puts the term on the MSE scale; None takes it from
            :data:`RA_MIQA_SCALES` for (task, target), else fails saying how to measure it.
        allow_download: for the frozen encoders' weights.
    """

    needs_reference = False

    def __init__(self, name: str = "ra-miqa", weight: float = 1.0, task: str = "detection",
                 target: str = "consistency", weights: str | os.PathLike | None = None, scale: float | None = None,
                 allow_download: bool | None = None) -> None:
        super().__init__(name, weight)
        self.scale = resolve_ra_miqa_scale(task, target, scale, weights)
        self.loss = RAMIQALoss(task=task, target=target, weights=weights, allow_download=allow_download)

    def forward(self, preds: torch.Tensor, reference: Any = None) -> torch.Tensor:
        return self.loss(_bounded(preds))  # 1 - predicted machine quality

    def distortion(self, raw: torch.Tensor) -> torch.Tensor:
        return self.scale * raw

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, head={self.loss.head!r}, scale={self.scale:.6g}"


def resolve_ra_miqa_scale(task: str, target: str, scale: float | None,
                          weights: str | os.PathLike | None = None) -> float:
    """``scale`` if given (must be positive), else the calibrated value of the shipped (task, target) head."""
    if scale is not None:
        return _positive_scale("ra-miqa", scale)
    if weights is None and (task, target) in RA_MIQA_SCALES:
        return RA_MIQA_SCALES[(task, target)]
    which = f"weights {str(weights)!r}" if weights is not None else f"head {task}/{target}"
    known = ", ".join(f"{t}/{g}" for t, g in RA_MIQA_SCALES)
    raise ValueError(f"No calibrated ra-miqa scale for {which} (calibrated: the shipped heads {known}). Measure one "
                     f"with `python -m mlclipsim.training.calibrate_lambda --ra-miqa {task}` (for the shipped "
                     "heads) and pass it as the term's `scale` option.")


register_term("ra-miqa")(RAMIQATerm)


def _valid_choices(exclude: Sequence[str] = ()) -> str:
    names = ", ".join(repr(n) for n in list_terms() if n not in exclude)
    return f"{names}, or an import path 'package.module:Class' of an nn.Module loss or a differentiable " \
           "torchmetrics Metric"


def build_term(spec: TermSpec | DistortionTerm) -> DistortionTerm:
    """Build one term from a name, a mapping ``{name, weight, label, **options}`` or a ready term."""
    if isinstance(spec, DistortionTerm):
        _check_weight(spec.weight, spec.name)
        return spec
    if isinstance(spec, str):
        options: dict[str, Any] = {"name": spec}
    elif isinstance(spec, Mapping):
        options = dict(spec)
    else:
        raise TypeError(f"A distortion term is a name or a mapping with 'name', got {type(spec).__name__}; "
                        f"valid names: {_valid_choices()}.")
    if "name" not in options or not isinstance(options["name"], str):
        raise ValueError(f"Term spec {dict(options)!r} has no 'name'; valid names: {_valid_choices()}.")
    name = options.pop("name")
    weight = options.pop("weight", 1.0)
    label = options.pop("label", None)
    _check_weight(weight, name)
    if name in DISTORTION_TERMS:
        factory = DISTORTION_TERMS[name]
        _check_options(name, factory, options)
        return factory(name=label or name, weight=float(weight), **options)
    if ":" in name or "." in name:
        return _imported_term(name, label, float(weight), options)
    raise DISTORTION_TERMS.unknown(name)


def build_terms(specs: Sequence[TermSpec | DistortionTerm]) -> list[DistortionTerm]:
    """Build every term; labels are made unique (``mse``, ``mse-2``, ...)."""
    if isinstance(specs, str | Mapping) or not specs:
        raise ValueError(f"terms must be a non-empty list of term specs, got {specs!r}; valid names: "
                         f"{_valid_choices()}.")
    terms = [build_term(spec) for spec in specs]
    if not any(term.weight > 0 for term in terms):
        raise ValueError("At least one distortion term needs a positive weight.")
    seen: dict[str, int] = {}
    for term in terms:
        count = seen.get(term.name, 0) + 1
        seen[term.name] = count
        if count > 1:
            term.name = f"{term.name}-{count}"
    return terms


def _check_weight(weight: Any, name: str) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"Term {name!r} has weight {weight!r}; weights must be non-negative finite numbers.")


def _check_options(name: str, factory: Callable, options: Mapping[str, Any]) -> None:
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    allowed = [p for p in parameters if p not in ("name", "weight")]
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise ValueError(f"Term {name!r} has no option(s) {unknown}; its options are {allowed} "
                         "(plus 'weight' and 'label').")


def import_object(path: str) -> Any:
    """Import ``package.module:Name`` or ``package.module.Name``."""
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"{path!r} is not an import path; write 'package.module:Class' or 'package.module.Class'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"Cannot import module {module_name!r} for term {path!r} ({err}). Valid terms: "
                         f"{_valid_choices()}.") from None
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"Module {module_name!r} has no {attribute!r} (term {path!r}). Valid terms: "
                             f"{_valid_choices()}.")
        obj = getattr(obj, part)
    return obj


def _imported_term(path: str, label: str | None, weight: float, options: dict[str, Any]) -> ImportedTerm:
    from torchmetrics import Metric

    allowed = {"init_args", "scale", "higher_is_better"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"Term {path!r} (an import path) has no option(s) {unknown}; its options are "
                         f"{sorted(allowed)} (plus 'weight' and 'label'); constructor arguments go in init_args.")
    target = import_object(path)
    if not (inspect.isclass(target) and issubclass(target, nn.Module)):
        raise ValueError(f"{path!r} is {type(target).__name__} {target!r}, not a differentiable loss: an import-path "
                         "term must name an nn.Module loss class (e.g. 'torch.nn:L1Loss') or a torchmetrics Metric "
                         f"with is_differentiable=True (wrap a function in an nn.Module). Valid terms: "
                         f"{_valid_choices()}.")
    if issubclass(target, Metric) and target.is_differentiable is not True:
        raise ValueError(f"{path!r} is a torchmetrics Metric with is_differentiable={target.is_differentiable!r}; "
                         "a codec can only be trained with a differentiable term.")
    scale = options.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"Term {path!r}: scale must be a positive number, got {scale!r}.")
    init_args = options.get("init_args") or {}
    if not isinstance(init_args, Mapping):
        raise ValueError(f"Term {path!r}: init_args must be a mapping of constructor arguments, got {init_args!r}.")
    try:
        module = target(**init_args)
    except TypeError as err:
        raise ValueError(f"Cannot build {path!r} with init_args {dict(init_args)!r}: {err}") from None
    higher = options.get("higher_is_better")
    if higher is None:
        higher = bool(getattr(module, "higher_is_better", False)) if isinstance(module, Metric) else False
    return ImportedTerm(label or target.__name__.lower(), module, weight=weight, scale=float(scale),
                        higher_is_better=higher)
