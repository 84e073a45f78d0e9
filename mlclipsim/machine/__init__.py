"""Task models behind one protocol, agreement scores between their predictions, and MMOS labels.

- :mod:`~mlclipsim.machine.protocol`: :class:`TaskModel` (``name``, ``task``, batched ``predict``).
- :mod:`~mlclipsim.machine.predictions`: one dataclass per task, saved/loaded as ``.npz``.
- :mod:`~mlclipsim.machine.registry`: ``create_task_model(name, **options)``, ``list_task_models()``;
  model files through the weight resolution, plus ``$MLCLIPSIM_MODELS_DIR``.
- adapters: :mod:`.detection`, :mod:`.segmentation`, :mod:`.faces`, :mod:`.classification`,
  :mod:`.text`, :mod:`.torchvision_models`.
- :mod:`~mlclipsim.machine.agreement`: agreement in [0, 1] per task; consistency, accuracy, composite.
- :mod:`~mlclipsim.machine.mmos`: mean machine opinion score per task.
"""

# the adapter modules register their models on import (heavy libraries load only when a model is built)
from mlclipsim.machine import classification, detection, faces, segmentation, text, torchvision_models  # noqa: F401
from mlclipsim.machine.agreement import AGREEMENTS, accuracy, agreement, composite, consistency
from mlclipsim.machine.mmos import MMOS, machine_opinion, mmos
from mlclipsim.machine.predictions import (
    TASKS,
    Classification,
    Detections,
    FaceDetections,
    FaceEmbedding,
    Prediction,
    SegmentationMask,
    TextResult,
    load_predictions,
    prediction_from_dict,
    save_predictions,
)
from mlclipsim.machine.protocol import DEFAULT_THREADS, TaskModel, TaskModelProtocol
from mlclipsim.machine.registry import (
    MODELS_DIR_ENV,
    create_task_model,
    list_task_models,
    register_task_model,
    task_of,
)

__all__ = [
    "TASKS", "Classification", "Detections", "FaceDetections", "FaceEmbedding", "Prediction",
    "SegmentationMask", "TextResult", "load_predictions", "prediction_from_dict", "save_predictions",
    "DEFAULT_THREADS", "TaskModel", "TaskModelProtocol", "MODELS_DIR_ENV", "create_task_model",
    "list_task_models", "register_task_model", "task_of", "AGREEMENTS", "accuracy", "agreement", "composite",
    "consistency", "MMOS", "machine_opinion", "mmos",
]
