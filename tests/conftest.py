"""Shared fixtures: no downloads, the shared photos/models, tiny open_clip models made on purpose."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

# Nothing downloads in tests: a missing weight file must fail loudly, never fetch or fall back.
os.environ.setdefault("MLCLIPSIM_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]


def _find_shared() -> Path:
    """$MLCLIPSIM_SHARED_DIR, else ../shared beside the checkout, else /work/shared (this workplace's)."""
    if os.environ.get("MLCLIPSIM_SHARED_DIR"):
        return Path(os.environ["MLCLIPSIM_SHARED_DIR"])
    for candidate in (REPO.parent / "shared", Path("/work/shared")):
        if (candidate / "data" / "images").is_dir():
            return candidate
    return REPO.parent / "shared"


SHARED = _find_shared()
os.environ.setdefault("MLCLIPSIM_SHARED_DIR", str(SHARED))
os.environ.setdefault("MLCLIPSIM_MODELS_DIR", str(SHARED / "models"))

TINY_VIT = "mlclipsim-test-vit"
TINY_RESNET = "mlclipsim-test-rn"
_TEXT = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
TINY_CONFIGS = {
    TINY_VIT: {"embed_dim": 16, "vision_cfg": {"image_size": 64, "layers": 4, "width": 32, "head_width": 16,
                                               "patch_size": 16}, "text_cfg": _TEXT},
    TINY_RESNET: {"embed_dim": 16, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8,
                                                  "patch_size": None}, "text_cfg": _TEXT},
}


def _register_tiny_models() -> None:
    import open_clip

    from mlclipsim.backbones import register_open_clip_config

    for name, config in TINY_CONFIGS.items():
        if name not in open_clip.list_models():
            register_open_clip_config(name, config)


_register_tiny_models()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data" / "images").is_dir():
        pytest.skip(f"shared photos not found at {SHARED} (set MLCLIPSIM_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def astronaut(shared_dir: Path) -> torch.Tensor:
    """The astronaut photo, shrunk to 256x256, as (1,3,256,256) in [0,1]."""
    from PIL import Image

    with Image.open(shared_dir / "data" / "images" / "skimage_astronaut.png") as image:
        array = np.array(image.convert("RGB").resize((256, 256), Image.BICUBIC), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def tiny_encoder(name: str = TINY_VIT, seed: int = 0, **options):
    """A small randomly initialised open_clip encoder (random weights asked for by name)."""
    from mlclipsim.backbones import create_backbone

    torch.manual_seed(seed)
    return create_backbone(name, pretrained="random", **options)


@pytest.fixture(scope="session")
def mobilenet():
    """The real offline MobileNetV2 encoder (ImageNet weights from the offline package)."""
    from mlclipsim.backbones import create_backbone

    return create_backbone("torchvision/mobilenet_v2")


def random_images(n: int = 2, size: tuple[int, int] = (64, 64), seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *size, generator=generator)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: small models on a CPU that others share (2 threads spin-wait)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_two_gloo_workers(worker: Callable, *args) -> dict:
    """Run ``worker(rank, 2, port, *args, queue)`` in 2 spawned processes; returns {rank: value} from the queue.

    Each worker puts one ``(rank, value)`` tuple on the queue; every process must exit with status 0.
    """
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=worker, args=(rank, 2, port, *args, queue)) for rank in range(2)]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=240) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return results
