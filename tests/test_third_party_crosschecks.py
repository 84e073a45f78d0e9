"""Hand-written-looking numbers checked against the well-kept libraries: pycocotools (AP), torchmetrics (PSNR)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from mlclipsim.machine.agreement import average_precision, detection_agreement, match_boxes
from mlclipsim.machine.predictions import Detections


def _scene(rng: np.random.Generator, n_ref: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference boxes (xyxy) and ranked predictions: jittered copies of some references plus false positives."""
    xy = rng.uniform(0, 200, (n_ref, 2))
    ref = np.concatenate([xy, xy + rng.uniform(10, 60, (n_ref, 2))], 1)
    kept = ref[rng.random(n_ref) < 0.7]
    jitter = rng.normal(0, 6, kept.shape)
    fp_xy = rng.uniform(0, 200, (int(rng.integers(0, 6)), 2))
    fps = np.concatenate([fp_xy, fp_xy + rng.uniform(10, 60, fp_xy.shape)], 1)
    pred = np.concatenate([kept + jitter, fps])
    pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
    return ref, pred, rng.permutation(len(pred)) / max(len(pred), 1) + 0.01


def _coco_eval(ref: np.ndarray, pred: np.ndarray, scores: np.ndarray):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):
        return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]

    gt = COCO()
    gt.dataset = {"images": [{"id": 1}], "categories": [{"id": 1}],
                  "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": xywh(b), "iscrowd": 0,
                                   "area": xywh(b)[2] * xywh(b)[3]} for i, b in enumerate(ref)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": xywh(b), "score": float(s)}
                         for b, s in zip(pred, scores)])
        evaluation = COCOeval(gt, dt, "bbox")
        evaluation.params.iouThrs = np.array([0.5])
        evaluation.params.maxDets = [1000]
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation


# n_ref whose recall steps k/n_ref are exactly points of COCO's float recall grid (np.linspace(0, 1, 101));
# for 10, 20, 50 some k/n_ref fall a rounding error below the grid point and COCO reads the next step.
@pytest.mark.parametrize("n_ref", [1, 2, 4, 5, 25])
def test_per_image_ap_matches_pycocotools(n_ref):
    pytest.importorskip("pycocotools", reason="the cross-check needs pycocotools (the dev extra)")
    rng = np.random.default_rng(n_ref)
    for _ in range(15):
        ref, pred, scores = _scene(rng, n_ref)
        if len(pred) == 0:
            continue
        evaluation = _coco_eval(ref, pred, scores)
        order, tp = match_boxes(pred, scores, np.zeros(len(pred)), ref, np.zeros(n_ref), iou_threshold=0.5)
        # Same greedy matching: COCO's matched ground truth per detection, in descending score order.
        coco_tp = evaluation.evalImgs[0]["dtMatches"][0] > 0
        assert np.array_equal(tp, coco_tp)
        # COCO averages the precision envelope at recall 0, 0.01, ..., 1; with n_ref dividing 100 that is the
        # all-point AP (ours) with the envelope at recall 0 (the best precision) as a 101st point.
        coco_ap = float(evaluation.eval["precision"][0, :, 0, 0, 0].mean())
        best_precision = float(np.max(np.cumsum(tp) / np.arange(1, tp.size + 1)))
        ours = average_precision(tp, n_ref)
        assert coco_ap == pytest.approx((100 * ours + best_precision) / 101, abs=1e-12)
        scored = detection_agreement(Detections(pred, scores, np.zeros(len(pred), np.int64)),
                                     Detections(ref, np.ones(n_ref), np.zeros(n_ref, np.int64)))
        assert scored["ap"] == ours


def _old_psnr_torch(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The hand-written PSNR that codec validation and the psnr baseline used before torchmetrics."""
    mse = (preds - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def _old_psnr_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """The hand-written PSNR of PSNR matching (and the dataset's psnr column) before torchmetrics."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(1.0 / mse))


def test_psnr_from_torchmetrics_matches_the_hand_written_psnr():
    """Within float32 rounding (torchmetrics works through ln with a float32 constant): at most 1e-5 dB."""
    from mlclipsim.distortions import psnr as numpy_psnr
    from mlclipsim.metrics.baselines import create_baseline, psnr

    generator = torch.Generator().manual_seed(0)
    target = torch.rand(16, 3, 24, 20, generator=generator)
    noise = torch.randn(16, 3, 24, 20, generator=generator) * torch.logspace(-4, -0.5, 16).view(16, 1, 1, 1)
    preds = (target + noise).clamp(0, 1)
    preds[0] = target[0]  # identical: the 100 dB cap
    expected = _old_psnr_torch(preds, target)
    assert torch.allclose(psnr(preds, target), expected, rtol=0, atol=1e-5)
    assert torch.allclose(create_baseline("psnr")(preds, target), expected, rtol=0, atol=1e-5)
    assert float(psnr(preds, target)[0]) == float(expected[0]) == 100.0
    for i in range(1, 16):
        a = target[i].permute(1, 2, 0).numpy()
        b = preds[i].permute(1, 2, 0).numpy()
        assert numpy_psnr(b, a) == pytest.approx(_old_psnr_numpy(b, a), abs=1e-5)
    assert numpy_psnr(target[0].numpy(), target[0].numpy()) == float("inf")
