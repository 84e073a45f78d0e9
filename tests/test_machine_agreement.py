"""Agreement scores, consistency/accuracy/composite and MMOS on hand-built predictions (no models)."""

import math

import numpy as np
import pytest

from mlclipsim.machine import (
    AGREEMENTS,
    MMOS,
    TASKS,
    Classification,
    Detections,
    FaceDetections,
    FaceEmbedding,
    SegmentationMask,
    TextResult,
    accuracy,
    agreement,
    composite,
    consistency,
    machine_opinion,
    mmos,
)
from mlclipsim.machine.agreement import average_precision, edit_similarity, jaro_winkler, levenshtein
from mlclipsim.machine.mmos import mmos_by_task
from mlclipsim.machine.protocol import TaskModel


def _dets(boxes, scores=None, labels=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return Detections(boxes, np.linspace(0.9, 0.5, n) if scores is None else scores,
                      np.zeros(n, int) if labels is None else labels)


def _probs(values):
    p = np.zeros(10, np.float32)
    for i, v in values.items():
        p[i] = v
    return Classification(p)


def _mask(box, shape=(20, 20)):
    m = np.zeros(shape, np.float32)
    if box is not None:
        y0, x0, y1, x1 = box
        m[y0:y1, x0:x1] = 0.9
    return SegmentationMask(probs=m, classes=("person",))


NONEMPTY = {
    "classification": _probs({1: 0.6, 2: 0.3, 3: 0.1}),
    "detection": _dets([[0, 0, 10, 10], [20, 20, 40, 50]], labels=[0, 3]),
    "segmentation": _mask((2, 2, 10, 12)),
    "face_detection": FaceDetections([[5, 5, 25, 30]], [0.9], np.ones((1, 6, 2))),
    "face_embedding": FaceEmbedding(np.arange(1, 9, dtype=np.float32)),
    "text_recognition": TextResult(["HELLO", "world"]),
}
EMPTY = {
    "classification": Classification(np.zeros(10)),
    "detection": _dets(np.zeros((0, 4))),
    "segmentation": _mask(None),
    "face_detection": FaceDetections(np.zeros((0, 4)), np.zeros(0)),
    "face_embedding": FaceEmbedding(None),
    "text_recognition": TextResult([]),
}


def test_registry_covers_every_task_with_a_default_score():
    assert set(AGREEMENTS) == set(TASKS)
    for spec in AGREEMENTS.values():
        assert spec.default in spec.scores
    assert AGREEMENTS["detection"].default == "f1"


@pytest.mark.parametrize("task", TASKS)
def test_identical_scores_one(task):
    scores = agreement(NONEMPTY[task], NONEMPTY[task])
    assert set(scores) == set(AGREEMENTS[task].scores)
    assert all(v == pytest.approx(1.0) for v in scores.values()), scores


@pytest.mark.parametrize("task", TASKS)
def test_empty_rules(task):
    assert set(agreement(EMPTY[task], EMPTY[task]).values()) == {1.0}
    assert set(agreement(EMPTY[task], NONEMPTY[task]).values()) == {0.0}
    assert set(agreement(NONEMPTY[task], EMPTY[task]).values()) == {0.0}


def test_scores_are_in_unit_interval_for_random_pairs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        xa, xb = rng.uniform(0, 50, (5, 2)), rng.uniform(0, 50, (4, 2))
        a = _dets(np.hstack([xa, xa + rng.uniform(5, 30, (5, 2))]), rng.random(5), rng.integers(0, 2, 5))
        b = _dets(np.hstack([xb, xb + rng.uniform(5, 30, (4, 2))]), rng.random(4), rng.integers(0, 2, 4))
        for v in agreement(a, b).values():
            assert 0.0 <= v <= 1.0


# ----------------------------------------------------------------------------- detection


def test_class_mismatch_does_not_match():
    ref = _dets([[0, 0, 10, 10]], labels=[1])
    pred = _dets([[0, 0, 10, 10]], labels=[2])
    assert agreement(pred, ref) == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "ap": 0.0}


def test_iou_below_tau_does_not_match():
    ref = _dets([[0, 0, 10, 10]])
    pred = _dets([[4, 0, 14, 10]])            # IoU = 60 / 140 = 0.43
    assert agreement(pred, ref)["f1"] == 0.0
    assert agreement(pred, ref, iou_threshold=0.4)["f1"] == 1.0
    assert consistency("detection", pred, ref, iou_threshold=0.4) == 1.0


def test_matching_is_one_to_one_and_greedy_by_score():
    ref = _dets([[0, 0, 10, 10], [100, 100, 110, 110]])
    pred = _dets([[0, 0, 10, 10], [1, 0, 11, 10]], scores=[0.5, 0.9])   # both overlap the first box
    s = agreement(pred, ref)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == 0.5
    # the higher-scored duplicate takes the match; the other is a false positive
    pred2 = _dets([[0, 0, 10, 10], [0, 0, 10, 10]])
    s2 = agreement(pred2, _dets([[0, 0, 10, 10]]))
    assert (s2["precision"], s2["recall"], s2["f1"]) == (0.5, 1.0, pytest.approx(2 / 3))


def test_average_precision_hand_computed():
    # 2 reference boxes; ranked predictions: TP (0.9), FP (0.8), TP (0.7)
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 0.5 * 1 + 0.5 * 2/3 = 5/6
    ref = _dets([[0, 0, 10, 10], [50, 50, 60, 60]])
    pred = _dets([[0, 0, 10, 10], [200, 200, 210, 210], [50, 50, 60, 60]], scores=[0.9, 0.8, 0.7])
    assert agreement(pred, ref)["ap"] == pytest.approx(5 / 6)
    # a false positive ranked first: precision 1/2 at recall 1 -> AP 0.5
    pred_fp_first = _dets([[200, 200, 210, 210], [0, 0, 10, 10]], scores=[0.9, 0.8])
    assert agreement(pred_fp_first, _dets([[0, 0, 10, 10]]))["ap"] == pytest.approx(0.5)
    assert average_precision(np.array([True, True]), 2) == 1.0
    assert average_precision(np.array([True]), 2) == 0.5


def test_face_detection_uses_box_f1():
    ref = FaceDetections([[0, 0, 10, 10], [30, 30, 40, 40]], [0.9, 0.8])
    pred = FaceDetections([[0, 0, 10, 10]], [0.95])
    s = agreement(pred, ref)
    assert s["f1"] == pytest.approx(2 / 3) and s["precision"] == 1.0 and s["recall"] == 0.5


# ----------------------------------------------------------------------------- other tasks


def test_segmentation_iou_and_classes_present_in_either():
    a = _mask((0, 0, 10, 10))                 # 100 px
    b = _mask((0, 5, 10, 15))                 # overlap 50 px, union 150
    assert agreement(a, b)["iou"] == pytest.approx(1 / 3)
    la = np.zeros((4, 4), int)
    lb = np.zeros((4, 4), int)
    la[:2, :2] = 1                            # class 1 in both, identical
    lb[:2, :2] = 1
    la[3, 3] = 2                              # class 2 only in a -> IoU 0
    ma = SegmentationMask(labels=la, classes=("bg", "x", "y"))
    mb = SegmentationMask(labels=lb, classes=("bg", "x", "y"))
    assert agreement(ma, mb)["iou"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="sizes differ"):
        agreement(a, _mask((0, 0, 5, 5), shape=(30, 30)))


def test_segmentation_threshold_is_the_masks_own_unless_given():
    probs = np.full((4, 4), 0.4, np.float32)
    low = SegmentationMask(probs=probs, classes=("text",), threshold=0.3)
    assert not low.is_empty
    assert agreement(low, low)["iou"] == 1.0
    assert agreement(low, SegmentationMask(probs=np.zeros((4, 4)), threshold=0.3))["iou"] == 0.0
    empty_at_half = SegmentationMask(probs=np.zeros((4, 4)))
    assert agreement(low, empty_at_half, threshold=0.5)["iou"] == 1.0          # both empty at 0.5


def test_classification_scores_hand_computed():
    a = _probs({0: 0.5, 1: 0.3, 2: 0.2})
    b = _probs({1: 0.6, 0: 0.2, 5: 0.2})
    s = agreement(a, b, k=3)
    assert s["top1"] == 0.0
    assert s["topk"] == pytest.approx(2 / 3)
    # top-3 renormalised: a = {0: .5, 1: .3, 2: .2}, b = {1: .6, 0: .2, 5: .2}; min-sum = .2 + .3 = .5
    assert s["soft_topk"] == pytest.approx(0.5)
    assert agreement(a, a)["soft_topk"] == pytest.approx(1.0)


def test_face_embedding_cosine_mapping():
    u = FaceEmbedding(np.array([1.0, 0.0]))
    assert agreement(u, FaceEmbedding(np.array([3.0, 0.0])))["cosine"] == pytest.approx(1.0)
    assert agreement(u, FaceEmbedding(np.array([0.0, 2.0])))["cosine"] == pytest.approx(0.0)
    assert agreement(u, FaceEmbedding(np.array([-1.0, 0.0])))["cosine"] == 0.0          # max(cos, 0)
    assert agreement(u, FaceEmbedding(np.array([1.0, 1.0])))["cosine"] == pytest.approx(math.sqrt(0.5))


def test_text_similarities():
    assert levenshtein("kitten", "sitting") == 3
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert jaro_winkler("MARTHA", "MARHTA") == pytest.approx(0.9611, abs=1e-4)
    assert jaro_winkler("DIXON", "DICKSONX") == pytest.approx(0.8133, abs=1e-4)
    assert jaro_winkler("abc", "xyz") == 0.0
    s = agreement(TextResult(["NOTICE", " PARKING "]), TextResult(["NOTICE PARKlNG"]))
    assert s["edit"] == pytest.approx(1 - 1 / 14)
    assert 0.9 < s["jaro_winkler"] < 1.0


# ----------------------------------------------------------------------------- API


def test_consistency_accuracy_composite():
    ref = _dets([[0, 0, 10, 10], [50, 50, 60, 60]])
    pred = _dets([[0, 0, 10, 10]])
    assert consistency("centernet", pred, ref) == pytest.approx(2 / 3)      # registry name -> detection f1
    assert consistency(None, pred, ref, score="recall") == 0.5
    with pytest.raises(ValueError, match="Unknown detection score"):
        consistency(None, pred, ref, score="iou")
    with pytest.raises(ValueError, match="task"):
        consistency("selfie", pred, ref)
    with pytest.raises(TypeError):
        agreement(pred, _mask((0, 0, 2, 2)))
    cls = _probs({3: 0.7, 4: 0.3})
    assert accuracy(cls, 3, score="top1") == 1.0 and accuracy(cls, 4, score="top1") == 0.0
    assert accuracy(TextResult(["abc"]), "abc") == 1.0
    assert composite(1.0, 0.0) == 0.5
    assert composite(1.0, 0.0, lam=0.8) == pytest.approx(0.8)
    np.testing.assert_allclose(composite(np.array([1.0, 0.5]), np.array([0.0, 0.5]), lam=0.25), [0.25, 0.5])
    with pytest.raises(ValueError):
        composite(1.0, 1.0, lam=1.5)


def test_mmos_weighted_and_grouped():
    m = mmos({"a": 1.0, "b": 0.5}, "detection")
    assert isinstance(m, MMOS) and m.score == pytest.approx(0.75) and m.weights == {"a": 0.5, "b": 0.5}
    w = mmos({"a": 1.0, "b": 0.5}, "detection", weights={"a": 3, "b": 1})
    assert w.score == pytest.approx(0.875) and w.per_model == {"a": 1.0, "b": 0.5}
    with pytest.raises(ValueError, match="No weight"):
        mmos({"a": 1.0, "b": 0.5}, "detection", weights={"a": 1})
    with pytest.raises(ValueError):
        mmos({"a": 1.5}, "detection")
    grouped = mmos_by_task({"centernet": 1.0, "nanodet": 0.0, "selfie": 0.4})
    assert set(grouped) == {"detection", "segmentation"}
    assert grouped["detection"].score == 0.5 and grouped["segmentation"].score == pytest.approx(0.4)


class _BrightnessDetector(TaskModel):
    """A toy model: one box when the image is bright."""

    name = "toy"
    task = "detection"

    def _predict(self, images):
        return [_dets([[0, 0, 4, 4]]) if img.mean() > 100 else _dets(np.zeros((0, 4))) for img in images]


def test_machine_opinion_with_images_and_cached_references():
    model = _BrightnessDetector()
    bright, dark = np.full((8, 8, 3), 200, np.uint8), np.zeros((8, 8, 3), np.uint8)
    out = machine_opinion([model], [bright, dark], [bright, bright])
    assert [o["detection"].score for o in out] == [1.0, 0.0]
    cached = {"toy": model.predict([dark, dark])}
    out2 = machine_opinion([model], [bright, dark], cached)
    assert [o["detection"].score for o in out2] == [0.0, 1.0]
