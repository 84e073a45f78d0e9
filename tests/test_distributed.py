"""torchmetrics state sync: a 2-process gloo run gives the single-process value."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
from conftest import TINY_VIT, random_images, run_two_gloo_workers, tiny_encoder


def _worker(rank: int, world_size: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        from mlclipsim import MLCLIPSim

        metric = MLCLIPSim(tiny_encoder(TINY_VIT, seed=0))
        reference, distorted = random_images(6, seed=1), random_images(6, seed=2)
        for start in range(rank * 3, rank * 3 + 3, 2):  # rank 0: images 0-2, rank 1: images 3-5
            metric.update(distorted[start:min(start + 2, rank * 3 + 3)], reference[start:min(start + 2, rank * 3 + 3)])
        queue.put((rank, metric.compute().item()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_sync_equals_single_process():
    from mlclipsim import MLCLIPSim

    metric = MLCLIPSim(tiny_encoder(TINY_VIT, seed=0))
    metric.update(random_images(6, seed=2), random_images(6, seed=1))
    expected = metric.compute().item()

    results = run_two_gloo_workers(_worker)
    assert results[0] == pytest.approx(expected, abs=1e-6)
    assert results[1] == pytest.approx(expected, abs=1e-6)
