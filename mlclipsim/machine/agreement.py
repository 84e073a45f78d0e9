"""How far two predictions of one task agree: named scores, each in [0, 1], 1 = the same answer.

``agreement(pred, reference)`` returns a dict of scores for the prediction's task;
:data:`AGREEMENTS` holds, per task, the function, its score names and the default score.

Scores per task, the default first:

- classification: ``soft_topk``, ``top1``, ``topk`` (k = 5; see below).
- detection: ``f1``, ``precision``, ``recall``, ``ap``; the reference boxes are the ground truth;
  greedy one-to-one matching, equal class, IoU >= ``iou_threshold`` (0.5).
- segmentation: ``iou``: mask IoU (pixels with probability > the mask's threshold, 0.5 unless the
  model says otherwise), averaged over the classes present in either mask; background is no class.
- face_detection: ``f1``, ``precision``, ``recall``, ``ap``, as detection with one class.
- face_embedding: ``cosine`` = max(cos(u, v), 0).
- text_recognition: ``edit``, ``jaro_winkler``, on the lines joined with one space.

**Empty predictions**, for every task and every score: empty vs empty = 1.0 (both models see
nothing: they agree), empty vs non-empty = 0.0. Empty means: no box; no pixel above threshold in
any class; no face vector; no text; no probability mass.

**Classification.** ``top1`` = 1 when the argmax classes are equal. ``topk`` = |T_a ∩ T_b| / k
with T the k most probable classes. ``soft_topk`` = Σ_c min(q_a(c), q_b(c)) where q is the
distribution renormalised over its own top-k classes (0 elsewhere): the histogram intersection
of the two truncated distributions. It is 1 only for the same top-k set with the same relative
probabilities, 0 for disjoint sets, and moves smoothly with the confidence, so it grades images
where ``top1`` only flips. It is the default because MMOS labels need graded values.

**Detection.** Predicted boxes are visited by descending score; each takes the still unmatched
reference box of the same class with the highest IoU, if that IoU >= tau (COCO-style greedy
matching). TP = matched predictions; precision = TP / #pred, recall = TP / #ref,
F1 = 2 TP / (#pred + #ref). ``ap``: VOC all-point interpolated average precision of the ranked
predictions against the reference boxes (all classes pooled in one ranking; matching stays
class-aware): AP = Σ (r_i - r_{i-1}) · max_{j >= i} p_j. Reference scores are not used.

**Face embedding.** The mapping is max(cos, 0) rather than (1 + cos) / 2: the embedding is a
global average of non-negative activations, so cosines of real crops are >= 0 and max(cos, 0)
keeps the model's own scale (other person ~0.40, the same face after JPEG q10 ~0.88), whereas
(1 + cos) / 2 would squeeze every real pair into [0.5, 1] and make unrelated faces look 70 %
similar.

**Text.** ``edit`` = 1 - Levenshtein(a, b) / max(|a|, |b|); ``jaro_winkler`` = Jaro-Winkler
similarity (prefix scale 0.1, prefix up to 4, Winkler's boost above a Jaro similarity of 0.7). Both
case- and punctuation-sensitive; both from rapidfuzz.

``consistency(model, distorted_pred, reference_pred)`` is the default score of the agreement
between a model's output on a distorted image and on its reference; ``accuracy(pred, truth)``
the same against ground truth; ``composite(c, a, lam)`` = lam·c + (1 - lam)·a.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rapidfuzz.distance import JaroWinkler, Levenshtein

from mlclipsim.machine.boxes import box_iou
from mlclipsim.machine.predictions import (
    TASKS,
    Classification,
    Detections,
    FaceDetections,
    FaceEmbedding,
    Prediction,
    SegmentationMask,
    TextResult,
)
from mlclipsim.machine.registry import task_of


@dataclass(frozen=True)
class AgreementSpec:
    """Per task: ``fn(pred, reference, **options) -> {score: value}``, its score names, the default."""

    task: str
    fn: Callable[..., dict[str, float]]
    scores: tuple[str, ...]
    default: str


def _empty_rule(a_empty: bool, b_empty: bool, names: tuple[str, ...]) -> dict[str, float] | None:
    if a_empty and b_empty:
        return dict.fromkeys(names, 1.0)
    if a_empty or b_empty:
        return dict.fromkeys(names, 0.0)
    return None


# ----------------------------------------------------------------------------- classification

CLASSIFICATION_SCORES = ("soft_topk", "top1", "topk")


def classification_agreement(pred: Classification, reference: Classification, k: int = 5) -> dict[str, float]:
    """top-1 indicator, top-k set overlap and soft top-k overlap (see the module docstring)."""
    empty = _empty_rule(pred.is_empty, reference.is_empty, CLASSIFICATION_SCORES)
    if empty is not None:
        return empty
    if pred.probs.shape != reference.probs.shape:
        raise ValueError(f"Class counts differ: {pred.probs.shape[0]} vs {reference.probs.shape[0]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ta, tb = pred.topk(k), reference.topk(k)
    qa = np.zeros(pred.probs.shape, np.float64)
    qb = np.zeros(pred.probs.shape, np.float64)
    qa[ta] = np.clip(pred.probs[ta], 0, None)
    qb[tb] = np.clip(reference.probs[tb], 0, None)
    qa /= max(qa.sum(), 1e-12)
    qb /= max(qb.sum(), 1e-12)
    return {
        "soft_topk": float(np.clip(np.minimum(qa, qb).sum(), 0.0, 1.0)),
        "top1": float(ta[0] == tb[0]),
        "topk": len(set(ta.tolist()) & set(tb.tolist())) / float(min(k, pred.probs.size)),
    }


# ----------------------------------------------------------------------------- detection

DETECTION_SCORES = ("f1", "precision", "recall", "ap")


def match_boxes(pred_boxes: np.ndarray, pred_scores: np.ndarray, pred_labels: np.ndarray,
                ref_boxes: np.ndarray, ref_labels: np.ndarray,
                iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching by descending prediction score.

    Returns (order, tp): ``order`` the prediction indices by descending score, ``tp[i]`` True when
    prediction ``order[i]`` matched a reference box (same label, IoU >= iou_threshold, the
    unmatched one with the highest IoU)."""
    order, matched = match_box_pairs(pred_boxes, pred_scores, pred_labels, ref_boxes, ref_labels, iou_threshold)
    return order, matched >= 0


def match_box_pairs(pred_boxes: np.ndarray, pred_scores: np.ndarray, pred_labels: np.ndarray,
                    ref_boxes: np.ndarray, ref_labels: np.ndarray,
                    iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """:func:`match_boxes` returning, for prediction ``order[i]``, the index of the reference box it
    matched (``-1``: none) instead of a TP flag."""
    order = np.argsort(-np.asarray(pred_scores, np.float64), kind="stable")
    matched = np.full(order.size, -1, np.int64)
    if order.size == 0 or len(ref_boxes) == 0:
        return order, matched
    iou = box_iou(pred_boxes[order], ref_boxes)
    iou = np.where(np.asarray(pred_labels)[order][:, None] == np.asarray(ref_labels)[None, :], iou, -1.0)
    taken = np.zeros(len(ref_boxes), bool)
    for i in range(order.size):
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_threshold:
            taken[j] = True
            matched[i] = j
    return order, matched


def average_precision(tp: np.ndarray, n_reference: int) -> float:
    """VOC all-point interpolated AP of a ranked TP/FP list against ``n_reference`` true boxes."""
    if n_reference == 0:
        return float(tp.size == 0)
    if tp.size == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_reference
    precision = ctp / np.arange(1, tp.size + 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def detection_agreement(pred: Detections | FaceDetections, reference: Detections | FaceDetections,
                        iou_threshold: float = 0.5) -> dict[str, float]:
    """Precision, recall, F1 and AP of ``pred`` with ``reference`` as ground truth."""
    empty = _empty_rule(pred.is_empty, reference.is_empty, DETECTION_SCORES)
    if empty is not None:
        return empty
    order, tp = match_boxes(pred.boxes, pred.scores, pred.labels, reference.boxes, reference.labels,
                            iou_threshold)
    n_tp, n_pred, n_ref = int(tp.sum()), len(pred), len(reference)
    return {
        "f1": 2.0 * n_tp / (n_pred + n_ref),
        "precision": n_tp / n_pred,
        "recall": n_tp / n_ref,
        "ap": average_precision(tp, n_ref),
    }


# ----------------------------------------------------------------------------- segmentation

SEGMENTATION_SCORES = ("iou",)


def segmentation_agreement(pred: SegmentationMask, reference: SegmentationMask,
                           threshold: float | None = None) -> dict[str, float]:
    """Mean IoU over the classes present in either mask (``threshold`` overrides the masks' own)."""
    if pred.shape != reference.shape:
        raise ValueError(f"Mask sizes differ: {pred.shape} vs {reference.shape}; predictions must be made on "
                         "images of the same size")
    ma, mb = pred.class_masks(threshold), reference.class_masks(threshold)
    empty = _empty_rule(not ma, not mb, SEGMENTATION_SCORES)
    if empty is not None:
        return empty
    ious = []
    for c in sorted(set(ma) | set(mb)):
        a, b = ma.get(c), mb.get(c)
        if a is None or b is None:
            ious.append(0.0)
            continue
        ious.append(float(np.logical_and(a, b).sum()) / float(np.logical_or(a, b).sum()))
    return {"iou": float(np.mean(ious))}


# ----------------------------------------------------------------------------- faces

FACE_EMBEDDING_SCORES = ("cosine",)


def face_embedding_agreement(pred: FaceEmbedding, reference: FaceEmbedding) -> dict[str, float]:
    """max(cosine, 0) of the two vectors."""
    empty = _empty_rule(pred.is_empty, reference.is_empty, FACE_EMBEDDING_SCORES)
    if empty is not None:
        return empty
    u, v = pred.vector.astype(np.float64), reference.vector.astype(np.float64)  # type: ignore[union-attr]
    if u.shape != v.shape:
        raise ValueError(f"Embedding sizes differ: {u.shape} vs {v.shape}")
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return {"cosine": float(nu == nv)}
    return {"cosine": float(np.clip(np.dot(u, v) / (nu * nv), 0.0, 1.0))}


# ----------------------------------------------------------------------------- text

TEXT_SCORES = ("edit", "jaro_winkler")


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each cost 1), by rapidfuzz.

    >>> levenshtein("kitten", "sitting")
    3
    """
    return int(Levenshtein.distance(a, b))


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(|a|, |b|); 1 for two empty strings (rapidfuzz's normalised similarity)."""
    return float(Levenshtein.normalized_similarity(a, b))


def jaro_winkler(a: str, b: str, prefix_scale: float = 0.1) -> float:
    """Jaro-Winkler similarity in [0, 1] by rapidfuzz; 1 for two empty strings, 0 when one is empty.

    Winkler's definition: a common prefix of up to 4 characters raises a Jaro similarity above 0.7 by
    ``prefix * prefix_scale * (1 - jaro)``.

    >>> round(jaro_winkler("MARTHA", "MARHTA"), 4)
    0.9611
    """
    return float(JaroWinkler.similarity(a, b, prefix_weight=prefix_scale))


def text_agreement(pred: TextResult, reference: TextResult) -> dict[str, float]:
    """Normalised edit similarity and Jaro-Winkler of the joined lines."""
    a, b = pred.text(), reference.text()
    empty = _empty_rule(not a, not b, TEXT_SCORES)
    if empty is not None:
        return empty
    return {"edit": edit_similarity(a, b), "jaro_winkler": jaro_winkler(a, b)}


# ----------------------------------------------------------------------------- registry and API

AGREEMENTS: dict[str, AgreementSpec] = {
    "classification": AgreementSpec("classification", classification_agreement, CLASSIFICATION_SCORES,
                                    "soft_topk"),
    "detection": AgreementSpec("detection", detection_agreement, DETECTION_SCORES, "f1"),
    "segmentation": AgreementSpec("segmentation", segmentation_agreement, SEGMENTATION_SCORES, "iou"),
    "face_detection": AgreementSpec("face_detection", detection_agreement, DETECTION_SCORES, "f1"),
    "face_embedding": AgreementSpec("face_embedding", face_embedding_agreement, FACE_EMBEDDING_SCORES,
                                    "cosine"),
    "text_recognition": AgreementSpec("text_recognition", text_agreement, TEXT_SCORES, "edit"),
}
assert set(AGREEMENTS) == set(TASKS)


def agreement(pred: Prediction, reference: Prediction, **options: Any) -> dict[str, float]:
    """All agreement scores of ``pred`` against ``reference`` (same task), each in [0, 1].

    Options go to the task's function: ``k`` (classification), ``iou_threshold`` (detection,
    face detection), ``threshold`` (segmentation)."""
    task = getattr(pred, "task", None)
    if task not in AGREEMENTS:
        raise TypeError(f"Not a prediction: {type(pred).__name__}")
    if getattr(reference, "task", None) != task:
        raise TypeError(f"Cannot compare a {task} prediction with a {type(reference).__name__}")
    return AGREEMENTS[task].fn(pred, reference, **options)


def _task_of_model(model: Any) -> str | None:
    if model is None:
        return None
    if isinstance(model, str):
        if model in AGREEMENTS:
            return model
        return task_of(model)
    return getattr(model, "task", None)


def _score(pred: Prediction, reference: Prediction, task: str | None, score: str | None,
           options: dict) -> float:
    if task is not None and task != pred.task:
        raise ValueError(f"The model's task is {task!r} but the prediction is a {pred.task!r} one")
    spec = AGREEMENTS[pred.task]
    name = score or spec.default
    if name not in spec.scores:
        raise ValueError(f"Unknown {pred.task} score {name!r}; choose from {spec.scores}")
    return agreement(pred, reference, **options)[name]


def consistency(model: Any, distorted_pred: Prediction, reference_pred: Prediction, score: str | None = None,
                **options: Any) -> float:
    """Agreement of a model's prediction on a distorted image with its prediction on the reference.

    Args:
        model: the :class:`TaskModel`, its registry name, a task kind, or None (task taken from
            the predictions); checked against the predictions' task.
        score: which score (default: the task's default, e.g. "f1" for detection).
        options: passed to the task's agreement function.
    """
    return _score(distorted_pred, reference_pred, _task_of_model(model), score, options)


def accuracy(pred: Prediction, ground_truth: Any, score: str | None = None, **options: Any) -> float:
    """Agreement of a prediction with ground truth.

    ``ground_truth`` is a prediction of the same task (e.g. boxes with scores 1), or for
    classification a class index (one-hot), or for text a string / list of lines."""
    if isinstance(pred, Classification) and isinstance(ground_truth, (int, np.integer)):
        one_hot = np.zeros_like(pred.probs)
        one_hot[int(ground_truth)] = 1.0
        ground_truth = Classification(one_hot, label_space=pred.label_space)
    elif isinstance(pred, TextResult) and isinstance(ground_truth, (str, list, tuple)):
        ground_truth = TextResult([ground_truth] if isinstance(ground_truth, str) else list(ground_truth))
    return _score(pred, ground_truth, None, score, options)


def composite(consistency_score: Any, accuracy_score: Any, lam: float = 0.5) -> Any:
    """lam · consistency + (1 - lam) · accuracy (floats or arrays), lam in [0, 1]."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    if isinstance(consistency_score, np.ndarray) or isinstance(accuracy_score, np.ndarray):
        c, a = np.asarray(consistency_score, np.float64), np.asarray(accuracy_score, np.float64)
        return lam * c + (1.0 - lam) * a
    return lam * float(consistency_score) + (1.0 - lam) * float(accuracy_score)
