"""Real task models on real photos (facts from shared/OFFLINE.md), model-file resolution.

Needs the project's shared folder (``$MLCLIPSIM_SHARED_DIR``, default ``<repo>/../shared``) with
``models/`` and ``data/images/``; skipped without it. Photos are shrunk to <= 512 px.
"""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from mlclipsim.core.weights import MissingWeightsError
from mlclipsim.machine import MODELS_DIR_ENV, agreement, consistency, create_task_model, list_task_models
from mlclipsim.machine.boxes import box_iou

SHARED = Path(os.environ.get("MLCLIPSIM_SHARED_DIR", Path(__file__).resolve().parents[1].parent / "shared"))
MODELS = SHARED / "models"
IMAGES = SHARED / "data" / "images"

pytestmark = pytest.mark.skipif(not (MODELS / "centernet.onnx").is_file() or not IMAGES.is_dir(),
                                reason=f"no shared folder with models/ and data/images/ at {SHARED}")


@pytest.fixture(scope="module", autouse=True)
def models_env():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MODELS_DIR_ENV, str(MODELS))
        mp.setenv("MLCLIPSIM_OFFLINE", "1")
        yield


_CACHE: dict = {}


def model(name):
    if name not in _CACHE:
        _CACHE[name] = create_task_model(name, threads=2)
    return _CACHE[name]


def photo(name, side=512):
    if ("photo", name) not in _CACHE:
        img = Image.open(IMAGES / name).convert("RGB")
        img.thumbnail((side, side))
        _CACHE[("photo", name)] = np.asarray(img)
    return _CACHE[("photo", name)]


def jpeg(img, quality):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


ASTRONAUT, MOTORCYCLE = "skimage_astronaut.png", "skimage_motorcycle_left.png"


@pytest.mark.parametrize("name", ["centernet", "nanodet"])
def test_detectors_find_person_and_motorbike(name):
    imgs = [photo(ASTRONAUT), photo(MOTORCYCLE)]
    astro, moto = model(name).predict(imgs)
    assert "person" in astro.label_names()
    assert "motorbike" in moto.label_names()
    h, w = imgs[1].shape[:2]
    box = moto.boxes[moto.label_names().index("motorbike")]
    assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h          # photo pixels, not network pixels
    assert (box[2] - box[0]) * (box[3] - box[1]) > 0.3 * w * h
    assert np.all(np.diff(moto.scores) <= 0)


def test_detectors_agree_on_the_motorbike_box():
    a = model("centernet").predict([photo(MOTORCYCLE)])[0]
    b = model("nanodet").predict([photo(MOTORCYCLE)])[0]
    ia, ib = a.label_names().index("motorbike"), b.label_names().index("motorbike")
    assert box_iou(a.boxes[ia], b.boxes[ib])[0, 0] > 0.7


def test_jpeg_q10_lowers_detection_agreement():
    names = ("skimage_astronaut.png", "skimage_camera.png", "skimage_coffee.png", MOTORCYCLE)
    imgs = [photo(n) for n in names]
    lowered = []
    for name in ("centernet", "nanodet"):
        m = model(name)
        ref = m.predict(imgs)
        q95 = np.mean([consistency(m, d, r) for d, r in zip(m.predict([jpeg(i, 95) for i in imgs]), ref)])
        q10 = np.mean([consistency(m, d, r) for d, r in zip(m.predict([jpeg(i, 10) for i in imgs]), ref)])
        assert q95 >= 0.75, (name, q95)
        lowered.append(q10 < q95)
    assert any(lowered)


@pytest.mark.parametrize("name", ["selfie", "meet", "rvm"])
def test_person_masks_cover_the_astronaut(name):
    img = photo(ASTRONAUT)
    mask = model(name).predict([img])[0]
    assert mask.shape == img.shape[:2]
    assert 0.0 <= mask.probs.min() and mask.probs.max() <= 1.0
    assert mask.foreground_fraction() > 0.05
    assert agreement(mask, mask)["iou"] == 1.0


def test_rvm_keeps_aspect_on_wide_photos():
    img = photo(MOTORCYCLE)
    assert model("rvm").predict([img])[0].shape == img.shape[:2]


def test_ppocr_textmap_and_rapidocr_read_a_sign():
    img = photo("opencv-doc_scenetext01.jpg")
    text_map = model("ppocr-textmap").predict([img])[0]
    assert text_map.shape == img.shape[:2] and text_map.threshold == 0.3
    assert 0.005 < text_map.foreground_fraction() < 0.5
    no_text = model("ppocr-textmap").predict([photo(ASTRONAUT)])[0]
    assert no_text.foreground_fraction() < text_map.foreground_fraction()
    result = model("rapidocr").predict([img])[0]
    assert {"NOTICE", "PARKING"} <= set(result.lines)
    assert result.boxes.shape == (len(result.lines), 4, 2)


@pytest.mark.parametrize("name", ["blazeface", "blazeface-front", "mtcnn"])
def test_face_detectors_find_the_astronaut(name):
    faces = model(name).predict([photo(ASTRONAUT), photo(MOTORCYCLE)])
    assert len(faces[0]) == 1 and len(faces[1]) == 0
    # the astronaut's face: about x 170..280, y 60..180 (blazeface and mtcnn agree on it)
    assert box_iou(faces[0].boxes[0], [[175, 65, 275, 178]])[0, 0] > 0.5
    if name != "mtcnn":
        assert faces[0].keypoints.shape == (1, 6, 2)
        assert faces[0].scores[0] > 0.75


def test_faceres_cosines():
    m = model("faceres")
    astro = photo(ASTRONAUT)
    blurred = np.asarray(Image.fromarray(astro).filter(ImageFilter.GaussianBlur(4)))
    same, again, blur, other = m.predict([astro, astro.copy(), blurred, photo("skimage_camera.png")])
    assert same.vector.shape == (1024,) and same.box is not None
    assert agreement(same, again)["cosine"] > 0.999
    assert agreement(blur, same)["cosine"] < 0.9
    assert agreement(other, same)["cosine"] < 0.8
    whole = m.predict([photo("skimage_coffee.png")])[0]                     # no face: whole photo
    assert whole.box is None and whole.vector is not None


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_classifiers_see_a_cat(name):
    import torch

    before = torch.get_num_threads()
    pred = model(name).predict([photo("skimage_chelsea.png")])[0]
    assert torch.get_num_threads() == before                                # threads scoped to predict
    assert pred.probs.shape == (1000,) and pred.probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert pred.top1_name() in {"tabby", "tiger cat", "Egyptian cat"}


# ----------------------------------------------------------------------------- model files


def test_missing_model_file_names_the_ways(monkeypatch, tmp_path):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("MLCLIPSIM_WEIGHTS_DIR", raising=False)
    with pytest.raises(MissingWeightsError) as err:
        create_task_model("centernet")
    message = str(err.value)
    assert MODELS_DIR_ENV in message and "MLCLIPSIM_WEIGHTS_DIR" in message and "centernet.onnx" in message
    assert "path=" in message and "pretrained='random'" not in message
    monkeypatch.delenv(MODELS_DIR_ENV)
    monkeypatch.setenv("MLCLIPSIM_SHARED_DIR", str(tmp_path))  # no shared/models to fall back on
    with pytest.raises(MissingWeightsError, match=MODELS_DIR_ENV):
        create_task_model("selfie")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        create_task_model("nanodet", path=tmp_path / "nanodet.onnx")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        create_task_model("mobilenet_v2", path=tmp_path / "mobilenet_v2.pth")


def test_explicit_path_and_weights_dir(monkeypatch):
    monkeypatch.delenv(MODELS_DIR_ENV)
    assert create_task_model("blazeface-front", path=MODELS / "blazeface-front.onnx").source.endswith(
        "blazeface-front.onnx")
    monkeypatch.setenv("MLCLIPSIM_WEIGHTS_DIR", str(MODELS))
    assert create_task_model("blazeface-front").source == str(MODELS / "blazeface-front.onnx")


@pytest.mark.parametrize("name", [n for n in list_task_models() if n.startswith("torchvision/")])
def test_torchvision_models_never_run_untrained_offline(name, monkeypatch):
    monkeypatch.delenv("MLCLIPSIM_WEIGHTS_DIR", raising=False)
    with pytest.raises(MissingWeightsError, match="MLCLIPSIM_OFFLINE"):
        create_task_model(name)
