"""Prediction dataclasses, their on-disk cache, the protocol's input checks and the registry (no models)."""

import numpy as np
import pytest

from mlclipsim.machine import (
    TASKS,
    Classification,
    Detections,
    FaceDetections,
    FaceEmbedding,
    SegmentationMask,
    TaskModel,
    TaskModelProtocol,
    TextResult,
    create_task_model,
    list_task_models,
    load_predictions,
    prediction_from_dict,
    register_task_model,
    save_predictions,
)
from mlclipsim.machine.classes import COCO80, class_names, coco80_index
from mlclipsim.machine.registry import _TASK_MODELS


def _examples():
    labels = np.zeros((6, 5), np.int64)
    labels[1:3, 1:4] = 15
    return [
        Classification(np.array([0.1, 0.7, 0.2]), label_space=None),
        Detections([[1, 2, 30, 40]], [0.8], [3], label_space="coco80"),
        Detections(np.zeros((0, 4)), [], []),
        SegmentationMask(probs=np.random.default_rng(0).random((6, 5)), classes=("person",)),
        SegmentationMask(labels=labels, classes=class_names("voc21")),
        SegmentationMask(probs=np.zeros((3, 3)), classes=("text",), threshold=0.3),
        FaceDetections([[1, 1, 9, 9]], [0.9], np.ones((1, 6, 2))),
        FaceDetections(np.zeros((0, 4)), np.zeros(0)),
        FaceEmbedding(np.arange(4.0), box=[1, 2, 3, 4]),
        FaceEmbedding(None),
        TextResult(["NOTICE", "ünïcode"], np.ones((2, 4, 2)), [0.9, 0.8]),
        TextResult([]),
    ]


def _same(a, b):
    assert type(a) is type(b)
    for key, value in a.to_dict().items():
        other = b.to_dict()[key]
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, other)
            assert value.dtype == other.dtype
        else:
            assert value == other, key


def test_dict_round_trip():
    for pred in _examples():
        _same(pred, prediction_from_dict(pred.to_dict()))


def test_npz_round_trip(tmp_path):
    preds = _examples()
    path = save_predictions(tmp_path / "cache" / "preds", preds)
    assert path.suffix == ".npz"
    loaded = load_predictions(path)
    assert len(loaded) == len(preds)
    for a, b in zip(preds, loaded):
        _same(a, b)
    assert {p.task for p in loaded} == set(TASKS)


def test_validation_errors():
    with pytest.raises(ValueError, match="scores"):
        Detections([[0, 0, 1, 1]], [0.5, 0.2], [0])
    with pytest.raises(ValueError, match="exactly one"):
        SegmentationMask()
    with pytest.raises(ValueError, match="keypoints"):
        FaceDetections([[0, 0, 1, 1]], [0.5], np.zeros((2, 6, 2)))
    with pytest.raises(ValueError, match="Unknown prediction task"):
        prediction_from_dict({"task": "poetry"})


def test_names():
    assert len(COCO80) == 80 and COCO80[0] == "person" and COCO80[3] == "motorbike"
    assert coco80_index("motorcycle") == coco80_index("motorbike") == 3
    assert coco80_index("N/A") is None
    assert Detections([[0, 0, 1, 1]], [1], [3], label_space="coco80").label_names() == ["motorbike"]
    assert len(class_names("imagenet1k")) == 1000


class _Const(TaskModel):
    name = "const"
    task = "classification"

    def _predict(self, images):
        return [Classification(np.array([1.0, 0.0])) for _ in images]


def test_protocol_checks_inputs():
    model = _Const(threads=1)
    assert isinstance(model, TaskModelProtocol)
    img = np.zeros((5, 7, 3), np.uint8)
    assert len(model.predict([img, img])) == 2
    assert len(model.predict(np.zeros((3, 4, 4, 3), np.uint8))) == 3
    assert model.predict([]) == []
    with pytest.raises(ValueError, match="dtype"):
        model.predict([img.astype(np.float32)])
    with pytest.raises(ValueError, match="batch"):
        model.predict(img)
    with pytest.raises(ValueError, match="shape"):
        model.predict([np.zeros((5, 7), np.uint8)])
    with pytest.raises(TypeError):
        model.predict("image.png")
    with pytest.raises(ValueError):
        _Const(threads=0)


def test_registry():
    names = list_task_models()
    for expected in ("centernet", "nanodet", "selfie", "meet", "rvm", "ppocr-textmap", "blazeface",
                     "blazeface-front", "mtcnn", "faceres", "mobilenet_v2", "efficientnet-lite0", "rapidocr",
                     "torchvision/fasterrcnn_mobilenet_v3_large_fpn",
                     "torchvision/deeplabv3_mobilenet_v3_large"):
        assert expected in names
    assert list_task_models("face_detection") == ["blazeface", "blazeface-front", "mtcnn"]
    with pytest.raises(ValueError) as err:
        create_task_model("yolo-v99")
    assert "centernet" in str(err.value) and "rapidocr" in str(err.value)
    with pytest.raises(ValueError, match="already registered"):
        register_task_model("centernet", _Const)
    register_task_model("test-const", _Const)
    try:
        assert isinstance(create_task_model("test-const", threads=1), _Const)
        with pytest.raises(TypeError, match="does not accept"):
            create_task_model("test-const", colour="red")
    finally:
        del _TASK_MODELS["test-const"]
    with pytest.raises(ValueError, match="task must be"):
        register_task_model("no-task", lambda: None)
