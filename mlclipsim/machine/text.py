"""Text recognition: rapidocr's PP-OCRv4 pipeline (detection, angle classification, recognition).

``rapidocr`` returns the recognised lines in rapidocr's reading order (top to bottom, then left
to right), each with its quadrilateral in photo pixels and its recognition score; lines scoring
below ``text_score`` (rapidocr's 0.5) are dropped. rapidocr takes numpy images as BGR, so the
RGB photo is flipped before the call. The three ONNX files are resolved like every model file
(explicit ``det_path``/``cls_path``/``rec_path``, $MLCLIPSIM_WEIGHTS_DIR, the installed
``rapidocr-onnxruntime`` package).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from mlclipsim.machine.predictions import TextResult
from mlclipsim.machine.protocol import TaskModel
from mlclipsim.machine.registry import register_task_model, resolve_model_file
from mlclipsim.machine.segmentation import PPOCR_DET_FILE, rapidocr_spec

PPOCR_CLS_FILE = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
PPOCR_REC_FILE = "ch_PP-OCRv4_rec_infer.onnx"


class RapidOCRRecognizer(TaskModel):
    """rapidocr-onnxruntime's OCR as a ``text_recognition`` model.

    Args:
        det_path, cls_path, rec_path: explicit ONNX files (else found as described above).
        text_score: minimum recognition score of a kept line (0.5, rapidocr's default).
        use_cls: run the 0/180 degree line classifier (True, rapidocr's default).
        threads: onnxruntime intra-op threads of the three sessions.
    """

    name = "rapidocr"
    task = "text_recognition"

    def __init__(self, det_path: str | os.PathLike | None = None, cls_path: str | os.PathLike | None = None,
                 rec_path: str | os.PathLike | None = None, text_score: float = 0.5, use_cls: bool = True,
                 threads: int | None = None) -> None:
        super().__init__(threads)
        wanted = (("det", PPOCR_DET_FILE, det_path), ("cls", PPOCR_CLS_FILE, cls_path),
                  ("rec", PPOCR_REC_FILE, rec_path))
        files = {key: resolve_model_file(rapidocr_spec(self.name, filename), explicit)
                 for key, filename, explicit in wanted}
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as err:
            raise ImportError("rapidocr needs rapidocr-onnxruntime: pip install --no-deps "
                              "rapidocr-onnxruntime==1.4.4 (see requirements-nodeps.txt)") from err
        threads_option = self.threads if self.threads <= (os.cpu_count() or 1) else -1
        self.engine = RapidOCR(det_model_path=str(files["det"]), cls_model_path=str(files["cls"]),
                               rec_model_path=str(files["rec"]), intra_op_num_threads=threads_option,
                               inter_op_num_threads=1, text_score=float(text_score))
        logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        self.source = str(files["det"].parent)
        self.use_cls = bool(use_cls)

    def _predict(self, images: list[np.ndarray]) -> list[TextResult]:
        out = []
        for image in images:
            result, _ = self.engine(np.ascontiguousarray(image[..., ::-1]), use_cls=self.use_cls)
            if not result:
                out.append(TextResult([]))
                continue
            boxes = np.asarray([r[0] for r in result], np.float32).reshape(-1, 4, 2)
            scores = np.asarray([float(r[2]) for r in result])
            out.append(TextResult([str(r[1]) for r in result], boxes, scores))
        return out


register_task_model("rapidocr", RapidOCRRecognizer, description="rapidocr PP-OCRv4 text lines (ONNX)")
