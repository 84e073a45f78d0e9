"""Continuous agreement: scores that use the models' full outputs instead of one threshold.

:mod:`mlclipsim.machine.agreement` scores discrete events (a box kept or dropped at the model's
score threshold, a top-1 flip, a mask at 0.5): what a user's pipeline sees, but a label that jumps
when a borderline box crosses the threshold. The scores here move smoothly with the model's
confidences, so that mild and strong distortions are graded rather than flipped. Each is in
[0, 1], 1 = the same output; :func:`soft_agreement` returns them per task and
:func:`soft_consistency` gives the default one for a model (reading its own score threshold).

**Detection and face detection** (``soft_recall``, default for detection; ``soft_f1``, default
for face detection; ``soft_precision``).
Each box gets the weight w(s) = clip((s - f) / (1 - f), 0, 1), with f the model's own score
floor (the threshold below which it drops boxes, e.g. CenterNet 0.3). For an IoU threshold tau
the boxes are matched as in the discrete score (greedy by descending score, same class,
IoU >= tau) and

    soft_f1(tau) = 2 * sum_matched min(w_pred, w_ref) / (sum w_pred + sum w_ref),

averaged over tau in 0.50:0.05:0.95 (COCO's range). Why this form: with the matching held fixed,
sum w is the number of boxes with score > t averaged over score thresholds t uniform in [f, 1],
and sum min(w_pred, w_ref) the number of matched pairs that both survive t, so soft_f1 is the F1
of the counts averaged over every score threshold from the model's floor to 1 (a ratio of means:
the mean of per-threshold F1s would count the many high thresholds at which both lists are empty
as full agreement). A box that crosses the floor has weight ~0, so it no longer flips the label;
averaging over IoU thresholds grades localisation as COCO's AP does. ``soft_precision`` and
``soft_recall`` divide by sum w_pred and sum w_ref alone.

Why ``soft_recall`` is the detection label (benchmarks/results/label_reliability.md, chosen on 8
pilot photos, checked on 4 others): it counts only the objects the model found on the clean
reference ("how much of what it saw does it still see"), and it is **NaN where the reference holds
no box above the floor**: a detector that finds nothing on the clean image cannot lose anything, and
the F1's empty rule (1 while it still sees nothing, 0 at its first false positive) is a coin flip,
not a measurement. On the pilot's references where only one of CenterNet / NanoDet finds anything,
the two detectors' F1 labels agreed at SRCC 0.05-0.06 within the reference, against 0.79-0.94 on
8 of the 9 where both find objects; pooled, those references took the check photos' voter
reliability to -0.10 (0.94 without them).
The label of a task is undefined (NaN) where any of its voters is (:func:`soft_task_labels`).
Measured and not kept (no gain on the choice photos beyond noise): class-agnostic matching, the raw
score as weight (floor 0), weights multiplied instead of min, IoU 0.5 only or 0.3:0.7, ranks within
the reference. The cache keeps only boxes above each model's own threshold, so a floor below it
cannot be tried without running the detectors again.

**Segmentation** (``soft_miou``, default; ``soft_iou``). ``soft_miou`` is the mean over the two
classes, the person and the background, of the fuzzy Jaccard index of their probability maps:

    soft_miou = (sum min(p, q) / sum max(p, q) + sum min(1-p, 1-q) / sum max(1-p, 1-q)) / 2

(label maps: the hard IoU per class present in either map, background included, mean over classes).
Why: the pilot's people are small (on 6 of its 7 person photos at least one of the three
segmenters marks < 0.1% of the clean image as person), so the person IoU alone is a ratio of tiny
sums that jumps with a few pixels; the background term adds what a distortion makes a model
hallucinate (snow or noise marked as person) in proportion to its area, as the standard mIoU
does. Measured (voter reliability of Selfie/Meet/RVM on the 5 choice photos with a person):
banded person IoU 0.70, fuzzy person IoU (band 0-1) 0.71, fuzzy mIoU 0.73, banded mIoU 0.72;
narrower bands, a hard threshold, IoU smoothed by a constant, recall on the region the reference
marks, IoU inside the detectors' person boxes and 1 - mean |p - q| were lower, map correlation and
pooled maps about equal. On the 2 check photos with a person it reaches 0.54 (pilot design 0.27):
below the 0.70 target; the report says why. Dice needs no option: the soft Dice
2 sum min / (sum p + sum q) = 2 J / (1 + J) is an increasing function of the fuzzy Jaccard J
(sum p + sum q = sum min + sum max), so it ranks images identically.

``soft_iou``: the person IoU's intersection and union counts averaged over
binarisation thresholds t uniform in [lo, hi] around the mask's own threshold T
(lo = 0.2 T, hi = T + 0.8 (1 - T): [0.1, 0.9] for T = 0.5):

    soft_iou = sum_px (clip(min(p, q), lo, hi) - lo) / sum_px (clip(max(p, q), lo, hi) - lo),

per class present in either map (label maps: one-hot, so it equals the hard IoU), mean over
classes. With lo = 0, hi = 1 it is the fuzzy (Ruzicka) Jaccard index sum min / sum max; the band
keeps the networks' near-zero background probabilities (a photo without people) from turning
"both see nothing" into a low score.

**Classification** (``js``, default; ``soft_topk``). ``js`` = 1 - JSD(p, q) with the Jensen-Shannon
divergence in bits (base 2, so in [0, 1]) of the two full softmax vectors: symmetric, finite for
disjoint supports, and it sees the whole distribution, not only the top classes. ``soft_topk`` is
the histogram intersection of the renormalised top-5 distributions (as in the discrete scores).

**Face embedding** (``cosine``): max(cos, 0), already continuous (see the discrete module).

**Text** (``soft_text``). Lines are paired one to one, greedily by string similarity
(normalised edit similarity, the discrete score's), each line weighted by its recognition
confidence above the model's floor (w as for boxes), and

    soft_text = 2 * sum_pairs min(w_a, w_b) * sim(a, b) / (sum w_a + sum w_b).

Empty outputs follow the discrete rule: both empty (after weighting: total weight 0) = 1, one
empty = 0, except ``soft_recall``, NaN without reference boxes (above).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlclipsim.machine.agreement import (
    classification_agreement,
    edit_similarity,
    face_embedding_agreement,
    match_box_pairs,
)
from mlclipsim.machine.predictions import (
    TASKS,
    Classification,
    Detections,
    FaceDetections,
    Prediction,
    SegmentationMask,
    TextResult,
)

IOU_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.5, 0.951, 0.05), 2))
"""COCO's IoU thresholds 0.50:0.05:0.95."""


@dataclass(frozen=True)
class SoftSpec:
    """Per task: ``fn(pred, reference, **options) -> {score: value}``, its score names, the default."""

    task: str
    fn: Callable[..., dict[str, float]]
    scores: tuple[str, ...]
    default: str


def _both_empty(total: float, names: tuple[str, ...]) -> dict[str, float] | None:
    return dict.fromkeys(names, 1.0) if total <= 0 else None


def score_weights(scores: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """w(s) = clip((s - floor) / (1 - floor), 0, 1): a confidence's share of the thresholds [floor, 1].

    Weights below 1e-6 are 0, so that a float32 score stored at the floor (0.3 -> 0.30000001)
    counts as at the floor."""
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"score floor must be in [0, 1), got {floor}")
    w = np.clip((np.asarray(scores, np.float64) - floor) / (1.0 - floor), 0.0, 1.0)
    return np.where(w < 1e-6, 0.0, w)


# ----------------------------------------------------------------------------- detection

DETECTION_SOFT_SCORES = ("soft_f1", "soft_precision", "soft_recall")


def soft_detection_agreement(pred: Detections | FaceDetections, reference: Detections | FaceDetections,
                             score_floor: float = 0.0,
                             iou_thresholds: tuple[float, ...] = IOU_THRESHOLDS) -> dict[str, float]:
    """Score-weighted F1 / precision / recall averaged over IoU thresholds (module docstring).

    ``soft_recall`` is NaN when the reference's boxes carry no weight (none above ``score_floor``):
    there is nothing the distorted image could lose.

    Args:
        score_floor: the model's own score threshold f (boxes below it were never kept).
        iou_thresholds: the IoU thresholds averaged over (COCO's 0.50:0.05:0.95).
    """
    if not iou_thresholds:
        raise ValueError("Give at least one IoU threshold")
    wp, wr = score_weights(pred.scores, score_floor), score_weights(reference.scores, score_floor)
    total_p, total_r = float(wp.sum()), float(wr.sum())
    empty = _both_empty(total_p + total_r, DETECTION_SOFT_SCORES)
    if empty is not None:
        return {**empty, "soft_recall": float("nan")}
    f1, precision, recall = [], [], []
    for tau in iou_thresholds:
        order, ref_index = match_box_pairs(pred.boxes, pred.scores, pred.labels, reference.boxes,
                                           reference.labels, tau)
        hit = ref_index >= 0
        matched = float(np.minimum(wp[order[hit]], wr[ref_index[hit]]).sum())
        f1.append(2.0 * matched / (total_p + total_r))
        precision.append(matched / total_p if total_p > 0 else 0.0)
        recall.append(matched / total_r if total_r > 0 else float("nan"))
    return {"soft_f1": float(np.mean(f1)), "soft_precision": float(np.mean(precision)),
            "soft_recall": float(np.mean(recall))}


# ----------------------------------------------------------------------------- segmentation

SEGMENTATION_SOFT_SCORES = ("soft_miou", "soft_iou")


def fuzzy_jaccard(p: np.ndarray, q: np.ndarray) -> float:
    """sum min(p, q) / sum max(p, q) of two maps in [0, 1] (1 when both are all zero)."""
    union = float(np.maximum(p, q).sum(dtype=np.float64))
    return 1.0 if union <= 0 else float(np.minimum(p, q).sum(dtype=np.float64)) / union


def threshold_band(threshold: float, spread: float = 0.8) -> tuple[float, float]:
    """[lo, hi] = [(1 - spread) T, T + spread (1 - T)]: [0.1, 0.9] for T = 0.5."""
    if not 0.0 < spread <= 1.0:
        raise ValueError(f"spread must be in (0, 1], got {spread}")
    return (1.0 - spread) * threshold, threshold + spread * (1.0 - threshold)


def soft_segmentation_agreement(pred: SegmentationMask, reference: SegmentationMask,
                                band: tuple[float, float] | None = None) -> dict[str, float]:
    """Fuzzy mIoU (person and background) and banded person IoU of probability maps (hard IoUs per
    class for label maps); see the module docstring.

    Args:
        band: (lo, hi) binarisation thresholds ``soft_iou`` averages over; default
            :func:`threshold_band` of the reference's own threshold. (0, 1) gives the fuzzy Jaccard
            index sum min / sum max. ``soft_miou`` is always fuzzy (bands lowered its reliability).
    """
    if pred.shape != reference.shape:
        raise ValueError(f"Mask sizes differ: {pred.shape} vs {reference.shape}; predictions must be made on "
                         "images of the same size")
    if (pred.probs is None) != (reference.probs is None):
        raise ValueError("Cannot compare a probability map with a label map")
    if pred.probs is not None:
        lo, hi = band if band is not None else threshold_band(reference.threshold)
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"band must satisfy 0 <= lo < hi <= 1, got {(lo, hi)}")
        p, q = pred.probs.astype(np.float32), reference.probs.astype(np.float32)  # type: ignore[union-attr]
        inter = float((np.clip(np.minimum(p, q), lo, hi) - lo).sum(dtype=np.float64))
        union = float((np.clip(np.maximum(p, q), lo, hi) - lo).sum(dtype=np.float64))
        miou = 0.5 * (fuzzy_jaccard(p, q) + fuzzy_jaccard(1.0 - p, 1.0 - q))
        return {"soft_miou": miou, "soft_iou": 1.0 if union <= 0 else inter / union}
    ma, mb = pred.class_masks(), reference.class_masks()
    ious = []
    for c in sorted(set(ma) | set(mb)):
        a, b = ma.get(c), mb.get(c)
        ious.append(0.0 if a is None or b is None
                    else float(np.logical_and(a, b).sum()) / float(np.logical_or(a, b).sum()))
    bg_a, bg_b = pred.labels == pred.background, reference.labels == reference.background  # type: ignore[operator]
    bg_union = float(np.logical_or(bg_a, bg_b).sum())
    background = 1.0 if bg_union == 0 else float(np.logical_and(bg_a, bg_b).sum()) / bg_union
    return {"soft_miou": float(np.mean([*ious, background])), "soft_iou": float(np.mean(ious)) if ious else 1.0}


# ----------------------------------------------------------------------------- classification

CLASSIFICATION_SOFT_SCORES = ("js", "soft_topk")


def js_divergence_bits(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits of two probability vectors (renormalised), in [0, 1]."""
    p = np.clip(np.asarray(p, np.float64), 0.0, None)
    q = np.clip(np.asarray(q, np.float64), 0.0, None)
    if p.shape != q.shape:
        raise ValueError(f"Class counts differ: {p.shape} vs {q.shape}")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, 1.0))


def soft_classification_agreement(pred: Classification, reference: Classification, k: int = 5) -> dict[str, float]:
    """1 - JSD in bits of the full softmax, and the soft top-k overlap."""
    if pred.is_empty or reference.is_empty:
        value = float(pred.is_empty and reference.is_empty)
        return dict.fromkeys(CLASSIFICATION_SOFT_SCORES, value)
    return {"js": 1.0 - js_divergence_bits(pred.probs, reference.probs),
            "soft_topk": classification_agreement(pred, reference, k=k)["soft_topk"]}


# ----------------------------------------------------------------------------- faces and text

FACE_EMBEDDING_SOFT_SCORES = ("cosine",)
TEXT_SOFT_SCORES = ("soft_text",)


def soft_text_agreement(pred: TextResult, reference: TextResult, score_floor: float = 0.0) -> dict[str, float]:
    """Confidence-weighted similarity of one-to-one paired lines (module docstring)."""
    lines_a = [(line.strip(), w) for line, w in zip(pred.lines, score_weights(pred.scores, score_floor))
               if line.strip()]
    lines_b = [(line.strip(), w) for line, w in zip(reference.lines, score_weights(reference.scores, score_floor))
               if line.strip()]
    total = sum(w for _, w in lines_a) + sum(w for _, w in lines_b)
    if total <= 0:
        return {"soft_text": 1.0}
    if not lines_a or not lines_b:
        return {"soft_text": 0.0}
    sim = np.array([[edit_similarity(a, b) for b, _ in lines_b] for a, _ in lines_a])
    used_a, used_b = set(), set()
    matched = 0.0
    for flat in np.argsort(-sim, axis=None, kind="stable"):
        i, j = divmod(int(flat), sim.shape[1])
        if i in used_a or j in used_b or sim[i, j] <= 0:
            continue
        used_a.add(i)
        used_b.add(j)
        matched += min(lines_a[i][1], lines_b[j][1]) * sim[i, j]
    return {"soft_text": float(np.clip(2.0 * matched / total, 0.0, 1.0))}


# ----------------------------------------------------------------------------- registry and API

SOFT_AGREEMENTS: dict[str, SoftSpec] = {
    "classification": SoftSpec("classification", soft_classification_agreement, CLASSIFICATION_SOFT_SCORES, "js"),
    "detection": SoftSpec("detection", soft_detection_agreement, DETECTION_SOFT_SCORES, "soft_recall"),
    "segmentation": SoftSpec("segmentation", soft_segmentation_agreement, SEGMENTATION_SOFT_SCORES, "soft_miou"),
    "face_detection": SoftSpec("face_detection", soft_detection_agreement, DETECTION_SOFT_SCORES, "soft_f1"),
    "face_embedding": SoftSpec("face_embedding", face_embedding_agreement, FACE_EMBEDDING_SOFT_SCORES, "cosine"),
    "text_recognition": SoftSpec("text_recognition", soft_text_agreement, TEXT_SOFT_SCORES, "soft_text"),
}
assert set(SOFT_AGREEMENTS) == set(TASKS)

FLOOR_ATTRIBUTES = {"detection": "score_threshold", "face_detection": "score_threshold",
                    "text_recognition": "text_score"}
"""Per task, the model attribute holding the score below which the model drops an output."""


def soft_agreement(pred: Prediction, reference: Prediction, **options: Any) -> dict[str, float]:
    """All continuous agreement scores of ``pred`` against ``reference`` (same task), each in [0, 1]
    or NaN where it does not apply (``soft_recall`` without reference boxes).

    Options go to the task's function: ``score_floor`` and ``iou_thresholds`` (detection, face
    detection), ``score_floor`` (text), ``band`` (segmentation), ``k`` (classification)."""
    task = getattr(pred, "task", None)
    if task not in SOFT_AGREEMENTS:
        raise TypeError(f"Not a prediction: {type(pred).__name__}")
    if getattr(reference, "task", None) != task:
        raise TypeError(f"Cannot compare a {task} prediction with a {type(reference).__name__}")
    return SOFT_AGREEMENTS[task].fn(pred, reference, **options)


def model_score_floor(model: Any) -> float:
    """The model's own score threshold for its task (0 when it has none or is given by name only)."""
    task = getattr(model, "task", None)
    attribute = FLOOR_ATTRIBUTES.get(task or "")
    value = getattr(model, attribute, None) if attribute else None
    return float(value) if value is not None and 0.0 <= float(value) < 1.0 else 0.0


def soft_consistency(model: Any, distorted_pred: Prediction, reference_pred: Prediction,
                     score: str | None = None) -> float:
    """The default (or named) continuous agreement of a model's outputs on a distorted image and its reference.

    Args:
        model: the task model (its ``score_threshold`` / ``text_score`` becomes the score floor), a
            registry name or task kind (floor 0), or None.
        score: a score name of the task (default: the task's default).
    """
    task = distorted_pred.task
    model_task = getattr(model, "task", None)
    if model_task is not None and model_task != task:
        raise ValueError(f"The model's task is {model_task!r} but the prediction is a {task!r} one")
    spec = SOFT_AGREEMENTS[task]
    name = score or spec.default
    if name not in spec.scores:
        raise ValueError(f"Unknown continuous {task} score {name!r}; choose from {spec.scores}")
    options: dict[str, Any] = {}
    if task in FLOOR_ATTRIBUTES:
        options["score_floor"] = model_score_floor(model)
    return soft_agreement(distorted_pred, reference_pred, **options)[name]


def soft_task_labels(per_model: Mapping[str, float], tasks: Mapping[str, str]) -> dict[str, float]:
    """Per task, the mean of its voters' continuous scores; NaN where any voter's score is NaN.

    A task's label is defined only where it applies for every voter (e.g. detection: every detector
    finds something on the clean reference), so that its reliability is the one measured between
    the voters (benchmarks/results/label_reliability.md); a label from the voters that happen to
    apply would mix one- and two-voter means of unknown reliability.

    Args:
        per_model: model name -> score in [0, 1] or NaN.
        tasks: model name -> task.
    """
    groups: dict[str, list[float]] = {}
    for name, value in per_model.items():
        if name not in tasks:
            raise ValueError(f"No task given for model {name!r}")
        value = float(value)
        if not (np.isnan(value) or 0.0 <= value <= 1.0):
            raise ValueError(f"Score of {name!r} is {value!r}; continuous scores are in [0, 1] or NaN")
        groups.setdefault(tasks[name], []).append(value)
    return {task: float("nan") if np.isnan(values).any() else float(np.mean(values))
            for task, values in groups.items()}
