"""Person segmentation (MediaPipe Selfie and Meet, RobustVideoMatting) and PP-OCR's text map.

Each returns a :class:`~mlclipsim.machine.predictions.SegmentationMask` with ``probs`` (H, W) at the
photo's size (bilinear), for one class.

- ``selfie``: NHWC 1x256x256x3, stretched, RGB 0..1; ``activation_10:0`` is the person
  probability (sigmoid inside the net).
- ``meet``: NHWC 1x144x256x3 (H x W), stretched, RGB 0..1; ``segment:0`` holds logits
  (background, person): person probability = softmax channel 1.
- ``rvm``: NHWC 1xHxWx3, RGB 0..1, the photo scaled to ``long_side`` (512) px on its long side;
  ``pha`` is the alpha matte of the people.
- ``ppocr-textmap``: NCHW, BGR, (x/255 - 0.5)/0.5, scaled as rapidocr's ``DetPreProcess``
  (short side up to ``limit_side_len`` 736, both sides rounded to multiples of 32); the PP-OCRv4
  detection net's per-pixel text probability, class ``text``. Its own binarisation threshold 0.3
  (DB's ``thresh``) is stored in the mask and used by the agreement.

RVM's recurrent states are frozen to zero inside the file (one image, no video history).
Model files: ``selfie.onnx``, ``meet.onnx``, ``rvm.onnx`` (see :mod:`mlclipsim.machine.registry`);
``ch_PP-OCRv4_det_infer.onnx`` from the installed ``rapidocr-onnxruntime`` package.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlclipsim.core.weights import WeightSpec
from mlclipsim.machine._image import long_side_size, resize_map, resize_rgb
from mlclipsim.machine.predictions import SegmentationMask
from mlclipsim.machine.protocol import OnnxTaskModel
from mlclipsim.machine.registry import models_dir_spec, register_task_model, resolve_model_file


class _PersonSegmenter(OnnxTaskModel):
    task = "segmentation"
    FILE = ""
    CLASSES = ("person",)

    def __init__(self, path: str | os.PathLike | None = None, threads: int | None = None) -> None:
        super().__init__(threads)
        model_file = resolve_model_file(models_dir_spec(self.name, self.FILE), path)
        self.session = self._session(model_file)
        self.source = str(model_file)

    def _prob(self, image: np.ndarray) -> np.ndarray:
        """Person probability at some network resolution (h', w')."""
        raise NotImplementedError

    def _predict(self, images: list[np.ndarray]) -> list[SegmentationMask]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            prob = np.clip(resize_map(self._prob(image), w, h), 0.0, 1.0)
            out.append(SegmentationMask(probs=prob, classes=self.CLASSES))
        return out


class SelfieSegmenter(_PersonSegmenter):
    """MediaPipe Selfie Segmentation (general, 256x256). Marks the salient subject (also animals)."""

    name = "selfie"
    FILE = "selfie.onnx"

    def _prob(self, image: np.ndarray) -> np.ndarray:
        x = resize_rgb(image, 256, 256).astype(np.float32)[None] / 255.0
        return self.session.run(["activation_10:0"], {"input_1:0": x})[0][0, :, :, 0]


class MeetSegmenter(_PersonSegmenter):
    """MediaPipe Meet segmentation (landscape 256 wide x 144 high)."""

    name = "meet"
    FILE = "meet.onnx"

    def _prob(self, image: np.ndarray) -> np.ndarray:
        x = resize_rgb(image, 256, 144).astype(np.float32)[None] / 255.0
        z = self.session.run(["segment:0"], {"input_1:0": x})[0][0]
        return 1.0 / (1.0 + np.exp(np.clip(z[..., 0] - z[..., 1], -80, 80)))     # softmax channel 1


class RVMSegmenter(_PersonSegmenter):
    """RobustVideoMatting MobileNetV3 (GPL-3.0 model): alpha matte of the people.

    Args:
        long_side: the photo is scaled (aspect kept, sides rounded to multiples of 16) to this many
            pixels on its long side before the net (512: cost grows with the pixel count).
    """

    name = "rvm"
    FILE = "rvm.onnx"

    def __init__(self, path: str | os.PathLike | None = None, long_side: int = 512,
                 threads: int | None = None) -> None:
        super().__init__(path, threads)
        self.long_side = int(long_side)

    def _prob(self, image: np.ndarray) -> np.ndarray:
        h, w = long_side_size(image.shape[0], image.shape[1], self.long_side, multiple=16)
        x = resize_rgb(image, w, h).astype(np.float32)[None] / 255.0
        return self.session.run(["pha"], {"src": x})[0][0, :, :, 0]


# ----------------------------------------------------------------------------- PP-OCR text map

PPOCR_DET_FILE = "ch_PP-OCRv4_det_infer.onnx"


def rapidocr_package_file(filename: str):
    """Locator for a model file inside the installed rapidocr-onnxruntime package."""

    def locate() -> Path:
        import importlib.util

        found = importlib.util.find_spec("rapidocr_onnxruntime")
        if found is None or not found.submodule_search_locations:
            raise ImportError("rapidocr-onnxruntime is not installed")
        return Path(list(found.submodule_search_locations)[0]) / "models" / filename

    return locate


def rapidocr_spec(owner: str, filename: str) -> WeightSpec:
    return WeightSpec(
        owner=owner, tag="default", filename=filename, package_path=rapidocr_package_file(filename),
        package_hint="pip install --no-deps rapidocr-onnxruntime==1.4.4 (see requirements-nodeps.txt)",
        download_hint="no download at run time: the PP-OCR ONNX files ship inside rapidocr-onnxruntime",
    )


class PPOCRTextMap(OnnxTaskModel):
    """The text-probability map of rapidocr's PP-OCRv4 detection net, as one-class segmentation.

    Pre-processing follows rapidocr's ``DetPreProcess`` (config ``Det``): BGR, x/255 then
    (x - 0.5) / 0.5, scaled so the short side is at least ``limit_side_len`` (736, ``limit_type``
    "min"; "max" caps the long side instead), each side rounded to a multiple of 32. rapidocr's
    whole-pipeline steps (2000 px cap, letterbox for very wide images) are not applied.

    Args:
        path: explicit ``ch_PP-OCRv4_det_infer.onnx``.
        limit_side_len, limit_type: as rapidocr's ``Det`` config.
        threads: onnxruntime intra-op threads.
    """

    name = "ppocr-textmap"
    task = "segmentation"
    THRESHOLD = 0.3

    def __init__(self, path: str | os.PathLike | None = None, limit_side_len: int = 736,
                 limit_type: str = "min", threads: int | None = None) -> None:
        super().__init__(threads)
        if limit_type not in ("min", "max"):
            raise ValueError(f"limit_type must be 'min' or 'max', got {limit_type!r}")
        model_file = resolve_model_file(rapidocr_spec(self.name, PPOCR_DET_FILE), path)
        self.session = self._session(model_file)
        self.source = str(model_file)
        self.input_name = self.session.get_inputs()[0].name
        self.limit_side_len = int(limit_side_len)
        self.limit_type = limit_type

    def _input_size(self, h: int, w: int) -> tuple[int, int]:
        if self.limit_type == "max":
            ratio = self.limit_side_len / max(h, w) if max(h, w) > self.limit_side_len else 1.0
        else:
            ratio = self.limit_side_len / min(h, w) if min(h, w) < self.limit_side_len else 1.0
        rh = max(32, int(round(int(h * ratio) / 32) * 32))
        rw = max(32, int(round(int(w * ratio) / 32) * 32))
        return rh, rw

    def _predict(self, images: list[np.ndarray]) -> list[SegmentationMask]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            rh, rw = self._input_size(h, w)
            x = resize_rgb(image, rw, rh)[..., ::-1].astype(np.float32) / 255.0
            x = ((x - 0.5) / 0.5).transpose(2, 0, 1)[None]
            prob = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0][0, 0]
            prob = np.clip(resize_map(prob, w, h), 0.0, 1.0)
            out.append(SegmentationMask(probs=prob, classes=("text",), threshold=self.THRESHOLD))
        return out


register_task_model("selfie", SelfieSegmenter, description="MediaPipe Selfie person segmentation (ONNX, 256)")
register_task_model("meet", MeetSegmenter, description="MediaPipe Meet person segmentation (ONNX, 144x256)")
register_task_model("rvm", RVMSegmenter, description="RobustVideoMatting person alpha (ONNX, GPL-3.0 model)")
register_task_model("ppocr-textmap", PPOCRTextMap,
                    description="PP-OCRv4 text probability map (rapidocr ONNX)")
