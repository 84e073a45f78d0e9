"""Continuous agreement scores (mlclipsim.machine.soft_agreement): values, limits, smoothness."""

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from mlclipsim.machine.agreement import agreement, match_box_pairs, match_boxes
from mlclipsim.machine.predictions import (
    Classification,
    Detections,
    FaceDetections,
    FaceEmbedding,
    SegmentationMask,
    TextResult,
)
from mlclipsim.machine.soft_agreement import (
    IOU_THRESHOLDS,
    SOFT_AGREEMENTS,
    js_divergence_bits,
    score_weights,
    soft_agreement,
    soft_consistency,
    threshold_band,
)


def dets(boxes, scores, labels=None):
    labels = [0] * len(boxes) if labels is None else labels
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, labels)


# ----------------------------------------------------------------------------- detection

def test_detection_identical_empty_and_disjoint():
    a = dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.6], [1, 2])
    assert soft_agreement(a, a) == {"soft_f1": 1.0, "soft_precision": 1.0, "soft_recall": 1.0}
    empty = dets([], [])
    assert soft_agreement(empty, empty)["soft_f1"] == 1.0
    assert soft_agreement(empty, a)["soft_f1"] == 0.0 and soft_agreement(a, empty)["soft_f1"] == 0.0
    other_class = dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.6], [3, 4])
    assert soft_agreement(other_class, a)["soft_f1"] == 0.0


def test_a_box_crossing_the_models_floor_no_longer_flips_the_label():
    reference = dets([[0, 0, 50, 50], [60, 60, 90, 90]], [0.9, 0.31])
    distorted = dets([[0, 0, 50, 50]], [0.9])                     # the 0.31 box fell below the 0.3 floor
    discrete = agreement(distorted, reference)["f1"]
    soft = soft_agreement(distorted, reference, score_floor=0.3)["soft_f1"]
    assert discrete == pytest.approx(2 / 3)                           # one of two boxes lost: a flip
    assert soft > 0.99                                                # weight (0.31-0.3)/0.7 ~ 0.014
    # the same box lost with a confident score costs a lot
    confident = dets([[0, 0, 50, 50], [60, 60, 90, 90]], [0.9, 0.9])
    assert soft_agreement(distorted, confident, score_floor=0.3)["soft_f1"] == pytest.approx(2 / 3)


def test_score_drop_and_localisation_are_graded():
    reference = dets([[0, 0, 100, 100]], [0.9])
    scores = [soft_agreement(dets([[0, 0, 100, 100]], [s]), reference, score_floor=0.3)["soft_f1"]
              for s in (0.9, 0.7, 0.5, 0.35)]
    assert scores[0] == 1.0 and all(x > y for x, y in zip(scores, scores[1:]))
    # min(w) / mean(w): score 0.5 -> w = 2/7 vs 6/7: F1 = 2 * (2/7) / (8/7) = 0.5
    assert scores[2] == pytest.approx(0.5)
    shifted = [soft_agreement(dets([[d, 0, 100 + d, 100]], [0.9]), reference)["soft_f1"] for d in (0, 5, 15, 30)]
    assert shifted[0] == 1.0 and all(x > y for x, y in zip(shifted, shifted[1:]))
    # shift 15: IoU = 85/115 = 0.739, above the thresholds 0.50..0.70 (5 of 10)
    assert shifted[2] == pytest.approx(5 / len(IOU_THRESHOLDS))
    assert agreement(dets([[15, 0, 115, 100]], [0.9]), reference)["f1"] == 1.0      # the discrete F1 sees nothing


def test_detection_label_is_the_recall_of_the_references_boxes_and_nan_without_them():
    class Detector:
        task = "detection"
        score_threshold = 0.3

    reference = dets([[0, 0, 50, 50], [60, 60, 90, 90]], [1.0, 0.65])
    lost_one = dets([[0, 0, 50, 50]], [1.0])
    assert soft_consistency(Detector(), lost_one, reference) == pytest.approx(1 / 1.5)   # w = 1 and 0.5
    hallucinated = dets([[0, 0, 50, 50], [60, 60, 90, 90], [100, 0, 120, 20]], [1.0, 0.65, 0.9])
    assert soft_consistency(Detector(), hallucinated, reference) == pytest.approx(1.0)  # false positives: not counted
    assert soft_agreement(hallucinated, reference, score_floor=0.3)["soft_f1"] < 0.9
    # nothing found on the clean reference (or only at the floor): the label does not apply
    for empty_reference in (dets([], []), dets([[0, 0, 50, 50]], [0.3])):
        assert np.isnan(soft_consistency(Detector(), lost_one, empty_reference))
        assert np.isnan(soft_consistency(Detector(), dets([], []), empty_reference))
        assert soft_agreement(dets([], []), dets([], []), score_floor=0.3)["soft_f1"] == 1.0   # F1 keeps its rule
    assert soft_consistency(Detector(), dets([], []), reference) == 0.0


def test_task_labels_are_undefined_where_a_voter_does_not_apply():
    from mlclipsim.machine.soft_agreement import soft_task_labels

    tasks = {"centernet": "detection", "nanodet": "detection", "selfie": "segmentation"}
    labels = soft_task_labels({"centernet": 0.2, "nanodet": 0.6, "selfie": 0.9}, tasks)
    assert labels == pytest.approx({"detection": 0.4, "segmentation": 0.9})
    labels = soft_task_labels({"centernet": float("nan"), "nanodet": 0.6, "selfie": 0.9}, tasks)
    assert np.isnan(labels["detection"]) and labels["segmentation"] == 0.9     # not NaNmean: not nanodet alone
    with pytest.raises(ValueError, match="No task"):
        soft_task_labels({"rvm": 0.5}, tasks)
    with pytest.raises(ValueError, match=r"\[0, 1\] or NaN"):
        soft_task_labels({"selfie": 1.5}, tasks)


def test_match_box_pairs_agrees_with_match_boxes():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 80, (12, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (12, 2))], 1)
    scores, labels = rng.uniform(0.3, 1, 12), rng.integers(0, 3, 12)
    ref = boxes[:8] + rng.normal(0, 3, (8, 4))
    for tau in (0.3, 0.5, 0.8):
        order, tp = match_boxes(boxes, scores, labels, ref, labels[:8], tau)
        order2, matched = match_box_pairs(boxes, scores, labels, ref, labels[:8], tau)
        np.testing.assert_array_equal(order, order2)
        np.testing.assert_array_equal(tp, matched >= 0)
        used = matched[matched >= 0]
        assert len(set(used.tolist())) == used.size                        # one to one
        assert np.all(labels[order][matched >= 0] == labels[:8][used])


def test_faces_use_the_same_soft_matching():
    a = FaceDetections([[0, 0, 20, 20]], [0.95])
    assert soft_agreement(a, a)["soft_f1"] == 1.0
    assert soft_agreement(FaceDetections([[0, 0, 20, 20]], [0.8]), a, score_floor=0.75)["soft_f1"] == pytest.approx(
        2 * 0.2 / 1.0)


def test_score_weights():
    np.testing.assert_allclose(score_weights([0.2, 0.3, 0.65, 1.0], 0.3), [0, 0, 0.5, 1])
    with pytest.raises(ValueError, match="floor"):
        score_weights([0.5], 1.0)


# ----------------------------------------------------------------------------- segmentation

def test_soft_iou_values():
    p = np.zeros((4, 4), np.float32)
    p[:2] = 1.0
    q = p.copy()
    q[:2, :2] = 0.5                                                   # half the object at probability 0.5
    full = soft_agreement(SegmentationMask(probs=q), SegmentationMask(probs=p), band=(0.0, 1.0))["soft_iou"]
    assert full == pytest.approx((4 * 0.5 + 4 * 1.0) / 8.0)           # fuzzy Jaccard sum min / sum max
    banded = soft_agreement(SegmentationMask(probs=q), SegmentationMask(probs=p))["soft_iou"]   # [0.1, 0.9]
    assert banded == pytest.approx((4 * 0.4 + 4 * 0.8) / (8 * 0.8))
    assert soft_agreement(SegmentationMask(probs=p), SegmentationMask(probs=p))["soft_iou"] == 1.0
    assert threshold_band(0.5) == pytest.approx((0.1, 0.9)) and threshold_band(0.3) == pytest.approx((0.06, 0.86))


def test_segmentation_label_is_the_fuzzy_miou_of_person_and_background():
    p = np.zeros((4, 4), np.float32)
    p[:2] = 1.0
    q = p.copy()
    q[:2, :2] = 0.5
    got = soft_agreement(SegmentationMask(probs=q), SegmentationMask(probs=p))["soft_miou"]
    person = (4 * 0.5 + 4 * 1.0) / 8.0                                # sum min / sum max of p and q
    background = 8.0 / (8.0 + 4 * 0.5)                                # of 1 - p and 1 - q
    assert got == pytest.approx(0.5 * (person + background))
    assert soft_consistency(None, SegmentationMask(probs=q), SegmentationMask(probs=p)) == pytest.approx(got)
    # a hallucinated region costs in proportion to its area: the background term grades it
    reference = np.zeros((40, 40), np.float32)
    reference[:4, :4] = 0.9                                           # a small person (1% of the image)
    values = []
    for side in (2, 6, 12, 24):
        d = reference.copy()
        d[20:20 + side, 10:10 + side] = 0.9
        values.append(soft_agreement(SegmentationMask(probs=d), SegmentationMask(probs=reference))["soft_miou"])
    assert all(x > y for x, y in zip(values, values[1:]))
    # label maps: hard IoU per class, background included
    a = np.zeros((4, 4), int)
    a[:2] = 1
    b = np.zeros((4, 4), int)
    b[:1] = 1
    assert soft_agreement(SegmentationMask(labels=b), SegmentationMask(labels=a))["soft_miou"] == pytest.approx(
        0.5 * (4 / 8 + 8 / 12))


def test_background_noise_is_both_empty_not_disagreement():
    rng = np.random.default_rng(1)
    a = SegmentationMask(probs=rng.uniform(0, 0.05, (32, 32)))
    b = SegmentationMask(probs=rng.uniform(0, 0.05, (32, 32)))
    assert soft_agreement(a, b)["soft_iou"] == 1.0
    assert soft_agreement(a, b, band=(0.0, 1.0))["soft_iou"] < 0.8     # raw fuzzy Jaccard would call it noise


def test_soft_iou_moves_smoothly_where_the_hard_iou_jumps():
    base = np.zeros((20, 20), np.float32)
    base[5:15, 5:15] = 0.9
    ref = SegmentationMask(probs=base)
    values = []
    for prob in (0.9, 0.7, 0.55, 0.45, 0.3):
        d = base.copy()
        d[5:15, 5:10] = prob                                          # half the object loses confidence
        values.append((soft_agreement(SegmentationMask(probs=d), ref)["soft_iou"],
                       agreement(SegmentationMask(probs=d), ref)["iou"]))
    soft, hard = zip(*values)
    assert all(x > y for x, y in zip(soft, soft[1:]))
    assert hard[2] == 1.0 and hard[3] == pytest.approx(0.5)          # the hard IoU jumps at 0.5


def test_label_maps_and_errors():
    a = np.zeros((6, 6), np.int64)
    a[:3] = 1
    b = a.copy()
    b[:3, :3] = 2
    got = soft_agreement(SegmentationMask(labels=b), SegmentationMask(labels=a))["soft_iou"]
    assert got == pytest.approx(agreement(SegmentationMask(labels=b), SegmentationMask(labels=a))["iou"])
    with pytest.raises(ValueError, match="sizes differ"):
        soft_agreement(SegmentationMask(probs=np.zeros((4, 4))), SegmentationMask(probs=np.zeros((4, 5))))
    with pytest.raises(ValueError, match="label map"):
        soft_agreement(SegmentationMask(labels=a), SegmentationMask(probs=np.zeros((6, 6))))


# ----------------------------------------------------------------------------- classification

def test_js_similarity_matches_scipy_and_limits():
    rng = np.random.default_rng(2)
    p, q = rng.dirichlet(np.ones(50)), rng.dirichlet(np.ones(50))
    assert js_divergence_bits(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-9)
    assert js_divergence_bits([1, 0], [0.5, 0.5]) == pytest.approx(0.3113, abs=1e-4)
    one, other = np.eye(10)[0], np.eye(10)[3]
    assert soft_agreement(Classification(one), Classification(one))["js"] == pytest.approx(1.0)
    assert soft_agreement(Classification(one), Classification(other))["js"] == pytest.approx(0.0, abs=1e-12)
    scores = soft_agreement(Classification(p), Classification(q))
    assert set(scores) == {"js", "soft_topk"} and 0 < scores["js"] < 1
    assert scores["soft_topk"] == agreement(Classification(p), Classification(q))["soft_topk"]
    assert soft_agreement(Classification(np.zeros(3)), Classification(one[:3]))["js"] == 0.0


def test_js_grades_a_confidence_change_that_top1_ignores():
    ref = Classification(np.array([0.7, 0.2, 0.1]))
    values = [soft_agreement(Classification(np.array([t, (1 - t) * 2 / 3, (1 - t) / 3])), ref)["js"]
              for t in (0.7, 0.6, 0.5, 0.4)]
    assert values[0] == pytest.approx(1.0) and all(x > y for x, y in zip(values, values[1:]))


# ----------------------------------------------------------------------------- text and faces

def test_soft_text_weights_lines_by_confidence():
    ref = TextResult(["STOP", "no parking"], scores=[0.95, 0.55])
    assert soft_agreement(ref, ref)["soft_text"] == 1.0
    lost_weak = soft_agreement(TextResult(["STOP"], scores=[0.95]), ref, score_floor=0.5)["soft_text"]
    lost_strong = soft_agreement(TextResult(["no parking"], scores=[0.55]), ref, score_floor=0.5)["soft_text"]
    assert lost_weak == pytest.approx(2 * 0.9 / 1.9) and lost_strong == pytest.approx(2 * 0.1 / 1.1)
    typo = soft_agreement(TextResult(["ST0P", "no parking"], scores=[0.95, 0.55]), ref)["soft_text"]
    assert 0.5 < typo < 1.0
    swapped = soft_agreement(TextResult(["no parking", "STOP"], scores=[0.55, 0.95]), ref)["soft_text"]
    assert swapped == pytest.approx(1.0)                               # lines are paired, not compared in order
    assert soft_agreement(TextResult([]), TextResult([]))["soft_text"] == 1.0
    assert soft_agreement(TextResult([]), ref)["soft_text"] == 0.0


def test_registry_and_consistency_reads_the_models_floor():
    assert set(SOFT_AGREEMENTS) == {"classification", "detection", "segmentation", "face_detection",
                                    "face_embedding", "text_recognition"}
    v = np.ones(8, np.float32)
    assert soft_agreement(FaceEmbedding(v), FaceEmbedding(v))["cosine"] == pytest.approx(1.0)

    class Detector:
        task = "detection"
        score_threshold = 0.3

    reference = dets([[0, 0, 50, 50], [60, 60, 90, 90]], [0.9, 0.31])
    distorted = dets([[0, 0, 50, 50]], [0.9])
    assert soft_consistency(Detector(), distorted, reference, score="soft_f1") > 0.99
    assert soft_consistency("detection", distorted, reference, score="soft_f1") == pytest.approx(1.8 / 2.11)  # floor 0
    assert soft_consistency(None, distorted, reference, score="soft_recall") < soft_consistency(
        None, distorted, reference, score="soft_precision")
    with pytest.raises(ValueError, match="Unknown continuous"):
        soft_consistency(None, distorted, reference, score="f1")
    with pytest.raises(TypeError):
        soft_agreement(distorted, Classification(v))


def test_machine_opinion_can_average_the_continuous_scores():
    from mlclipsim.machine.mmos import machine_opinion

    class Shrinking:
        """A 'detector' whose box score falls with the image's darkness."""

        name, task, score_threshold = "shrinking", "detection", 0.3

        def predict(self, images):
            return [dets([[0, 0, 8, 8]], [0.3 + 0.7 * float(np.mean(im)) / 255.0]) for im in images]

    reference = [np.full((8, 8, 3), 255, np.uint8)]
    darker = [np.full((8, 8, 3), 128, np.uint8)]
    discrete = machine_opinion([Shrinking()], darker, reference)[0]["detection"].score
    soft = machine_opinion([Shrinking()], darker, reference, continuous=True)[0]["detection"].score
    assert discrete == 1.0                                            # the box is still there
    assert soft == pytest.approx(128 / 255)                           # but with half the confidence (recall)


def test_probability_maps_are_cached_small_and_read_back_to_1_in_255(tmp_path):
    from mlclipsim.machine.predictions import load_predictions, save_predictions

    rng = np.random.default_rng(6)
    probs = np.clip(rng.normal(0.05, 0.03, (96, 128)), 0, 1).astype(np.float32)   # noisy background
    probs[20:60, 30:90] = rng.uniform(0.8, 1.0, (40, 60))
    mask = SegmentationMask(probs=probs, classes=("person",), threshold=0.4)
    path = save_predictions(tmp_path / "m", mask)
    back = load_predictions(path)[0]
    assert back.probs.dtype == np.float32 and back.threshold == 0.4 and back.classes == ("person",)
    assert np.abs(back.probs - probs).max() <= 1 / 510 + 1e-7
    assert path.stat().st_size < probs.nbytes / 4                      # float32 noise would not compress
    assert soft_agreement(back, mask)["soft_iou"] > 0.995
    again = load_predictions(save_predictions(tmp_path / "m2", back))[0]
    np.testing.assert_array_equal(again.probs, back.probs)              # stored values are fixed points
    labels = SegmentationMask(labels=np.arange(12).reshape(3, 4) % 3)
    np.testing.assert_array_equal(load_predictions(save_predictions(tmp_path / "l", labels))[0].labels, labels.labels)


def test_continuous_mmos_is_nan_where_a_voter_does_not_apply_and_discrete_mmos_still_refuses_nan():
    from mlclipsim.machine.mmos import mmos, mmos_by_task

    tasks = {"centernet": "detection", "nanodet": "detection", "selfie": "segmentation"}
    scores = {"centernet": float("nan"), "nanodet": 0.8, "selfie": 0.5}
    labels = mmos_by_task(scores, tasks, allow_nan=True)
    assert np.isnan(labels["detection"].score) and labels["segmentation"].score == pytest.approx(0.5)
    with pytest.raises(ValueError, match="agreement scores"):
        mmos({"centernet": float("nan")}, "detection")
