"""torchmetrics conformance: every Metric the library ships passes the checks torchmetrics runs on its own metrics.

The metrics: ML-CLIPSim on a tiny, randomly initialised encoder of each backbone family the registry builds
(open_clip ViT and modified ResNet, torchvision MobileNetV2 / ResNet / EfficientNet, EfficientNet-Lite), and
RA-MIQA with each patch-encoder family (the MobileNetV2 hybrid, a timm ViT), loaded from a weights file as
users load it. The checks: class vs functional over batches, forward vs update, compute before update,
pickle / deepcopy / clone, state_dict (frozen networks out, strict round trip, old checkpoints, persistent
states), precision (fp16 / fp64 inputs, set_dtype, a parent's .half() / .double()), differentiability
(gradients reach the distorted input, finite at identical inputs, gradcheck in float64), MetricCollection with
compute groups, merge_state, composition, compute_on_cpu, torch.jit.script, plot, frozen parameters, and one
two-process gloo run (sync on and off, dist_sync_on_step, uneven shares) for all of them at once.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, replace
from itertools import chain

import matplotlib
import pytest
import torch
import torch.distributed as dist
from conftest import TINY_RESNET, TINY_VIT, random_images, run_two_gloo_workers, tiny_encoder
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, TotalVariation

from mlclipsim import MLCLIPSim, MLCLIPSimLoss, RAMIQALoss, ml_clipsim, ra_miqa
from mlclipsim.backbones import FrozenEncoder
from mlclipsim.backbones.cnn_encoders import CNN_SPECS, CNNEncoder
from mlclipsim.metrics.functional.ra_miqa import _cached_model, score_images
from mlclipsim.metrics.ra_miqa_metric import RAMIQA
from mlclipsim.models.ra_miqa import RAMIQAModel

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = (32, 32)
BATCH_SIZES = (2, 1, 2)  # uneven batches: rank 0 takes the first two in the gloo run, rank 1 the last


# ------------------------------------------------------------------------------------------- the cases


def _tiny_cnn(registered: str, build: Callable[[], nn.Module]) -> CNNEncoder:
    """The registered CNN's spec (trunk, layer names, defaults) around a tiny network, random weights."""
    spec = replace(CNN_SPECS[registered], build=build)
    return CNNEncoder(f"tiny/{registered}", spec, pretrained="random", resize="native")


def _tiny_resnet() -> nn.Module:
    from torchvision.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1])


def _tiny_efficientnet() -> nn.Module:
    from torchvision.models import EfficientNet
    from torchvision.models.efficientnet import _efficientnet_conf

    setting, last_channel = _efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
    return EfficientNet(setting, dropout=0.0, last_channel=last_channel)


def _tiny_lite() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0", width_coefficient=0.25)


def _tiny_mobilenet() -> nn.Module:
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(weights=None, width_mult=0.25)


ENCODERS: dict[str, Callable[[], FrozenEncoder]] = {
    "open_clip-vit": lambda: tiny_encoder(TINY_VIT),
    "open_clip-resnet": lambda: tiny_encoder(TINY_RESNET),
    "torchvision-mobilenet_v2": lambda: _tiny_cnn("torchvision/mobilenet_v2", _tiny_mobilenet),
    "torchvision-resnet": lambda: _tiny_cnn("torchvision/resnet50", _tiny_resnet),
    "torchvision-efficientnet": lambda: _tiny_cnn("torchvision/efficientnet_b0", _tiny_efficientnet),
    "efficientnet-lite": lambda: _tiny_cnn("efficientnet-lite0", _tiny_lite),
}
RA_MIQA_MODELS: dict[str, dict] = {  # trained parts random; frozen encoders real (offline MobileNetV2), as shipped,
    # so that every load of the file (metric, functional cache) builds the same model
    "hybrid": {"view_size": 32, "dim": 16, "depth": 1, "num_heads": 2},
    "timm-vit": {"patch_encoder": "timm/vit_tiny_patch16_224", "pretrained": "random", "vit_options": {"depth": 1},
                 "view_size": 32},
}
CASES = [f"MLCLIPSim[{name}]" for name in ENCODERS] + [f"RAMIQA[{name}]" for name in RA_MIQA_MODELS]
"""Checks that depend on the network (dtypes, pickling, gradients, functional) run on every case."""
METRIC_CASES = ["MLCLIPSim[open_clip-vit]", "RAMIQA[hybrid]"]
"""Checks of the Metric shell (states, collections, state_dict hooks, jit, plot) run once per metric class."""


@dataclass
class Case:
    """One shipped metric: how to make it, its per-image functional and three batches of inputs."""

    metric: Metric
    make: Callable[..., Metric]  # fresh metric sharing the frozen network, with torchmetrics kwargs
    functional: Callable[..., torch.Tensor]  # inputs -> (N,) per-image scores
    batches: list[tuple[torch.Tensor, ...]]
    frozen: str  # the attribute holding the frozen network
    companion: Callable[[], Metric]  # a torchmetrics metric with the same update signature
    reference: bool  # full-reference (preds, target) or no-reference (images)

    def score(self, metric: Metric, *inputs: torch.Tensor) -> torch.Tensor:
        """Per-image scores through a (possibly converted) metric instance's own network."""
        if self.reference:
            return metric.scorer(*inputs)
        return score_images(metric.model, inputs[0], metric.head)


def _pairs(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    batches = []
    for i, n in enumerate(BATCH_SIZES):
        target = random_images(n, SIZE, seed=seed + i)
        noise = 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(seed + 10 + i))
        batches.append(((target + noise).clamp(0, 1), target))
    return batches


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    built = {}
    for name, make_encoder in ENCODERS.items():
        torch.manual_seed(0)
        encoder = make_encoder()
        built[f"MLCLIPSim[{name}]"] = Case(
            metric=MLCLIPSim(encoder), make=lambda encoder=encoder, **kw: MLCLIPSim(encoder, **kw),
            functional=lambda p, t, encoder=encoder: ml_clipsim(p, t, backbone=encoder, reduction="none"),
            batches=_pairs(seed=1), frozen="scorer", companion=lambda: PeakSignalNoiseRatio(data_range=1.0),
            reference=True)
    folder = tmp_path_factory.mktemp("ra_miqa")
    for name, options in RA_MIQA_MODELS.items():
        torch.manual_seed(0)
        path = folder / f"{name}.pt"
        RAMIQAModel(heads=["classification/consistency", "detection/consistency"], **options).save(path)
        metric = RAMIQA(task="detection", weights=path)
        built[f"RAMIQA[{name}]"] = Case(
            metric=metric, make=lambda model=metric.model, **kw: RAMIQA(task="detection", model=model, **kw),
            functional=lambda images, path=path: ra_miqa(images, task="detection", weights=path, reduction="none"),
            batches=[(random_images(n, SIZE, seed=20 + i),) for i, n in enumerate(BATCH_SIZES)], frozen="model",
            companion=TotalVariation, reference=False)
    return built


def _expected(case: Case, batches: list[tuple[torch.Tensor, ...]] | None = None) -> float:
    with torch.no_grad():
        return torch.cat([case.functional(*b) for b in (batches or case.batches)]).mean().item()


def _frozen_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return dict(chain(module.named_parameters(), module.named_buffers()))


# ------------------------------------------------------------------------------------ single process


@pytest.mark.parametrize("name", CASES)
def test_class_matches_functional_and_forward_matches_update(cases, name):
    case = cases[name]
    updated, forwarded = case.make(), case.make()
    for batch in case.batches:
        updated.update(*batch)
        with torch.no_grad():
            value = forwarded(*batch)
            assert value.item() == pytest.approx(case.functional(*batch).mean().item(), abs=1e-5)
    expected = _expected(case)
    assert updated.compute().item() == pytest.approx(expected, abs=1e-5)
    assert forwarded.compute().item() == pytest.approx(expected, abs=1e-5)
    assert updated.compute().dtype == torch.float32 and updated.update_count == len(case.batches)


@pytest.mark.parametrize("name", METRIC_CASES)
def test_compute_before_update_warns_and_returns_nan_as_torchmetrics_does(cases, name):
    metric = cases[name].make()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(metric.compute())
    metric.update(*cases[name].batches[0])
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(metric.compute())


@pytest.mark.parametrize("name", CASES)
def test_pickle_deepcopy_and_clone_are_independent_working_copies(cases, name):
    case = cases[name]
    metric = case.make()
    metric.update(*case.batches[0])
    first = metric.compute().item()
    for copy in (pickle.loads(pickle.dumps(metric)), metric.clone()):  # clone() is torchmetrics' deepcopy
        assert copy.compute().item() == pytest.approx(first, abs=1e-7)
        copy.update(*case.batches[1])
        assert copy.compute().item() == pytest.approx(_expected(case, case.batches[:2]), abs=1e-5)
        assert metric.compute().item() == first
        assert not copy.state_dict()  # the frozen network stays out in the copy too


@pytest.mark.filterwarnings("ignore:The ``compute`` method")  # states loaded, not updated: torchmetrics warns
@pytest.mark.parametrize("name", METRIC_CASES)
def test_state_dict_holds_no_frozen_weights_and_round_trips_strictly(cases, name):
    case = cases[name]
    holder = nn.ModuleDict({"head": nn.Linear(2, 1), "metric": case.make()})
    assert not holder["metric"].state_dict()
    state = holder.state_dict()
    assert sorted(state) == ["head.bias", "head.weight"]

    # a module whose metric holds other frozen weights: a strict load passes and does not overwrite them
    other = nn.ModuleDict({"head": nn.Linear(2, 1), "metric": case.metric.clone()})
    frozen = getattr(other["metric"], case.frozen)
    with torch.no_grad():
        for tensor in _frozen_tensors(frozen).values():
            if tensor.is_floating_point():
                tensor.add_(0.5)
    before = {k: v.clone() for k, v in _frozen_tensors(frozen).items()}
    other.load_state_dict(state, strict=True)
    assert torch.equal(other["head"].weight, holder["head"].weight)
    assert all(torch.equal(before[k], v) for k, v in _frozen_tensors(frozen).items())

    # a checkpoint written before (frozen weights inside) still loads strictly and changes nothing frozen
    old = dict(state)
    old.update({f"metric.{case.frozen}.{k}": v + 1.0 for k, v in _frozen_tensors(frozen).items()
                if v.is_floating_point()})
    other.load_state_dict(old, strict=True)
    assert all(torch.equal(before[k], v) for k, v in _frozen_tensors(frozen).items())

    # after the round trip the metric still works; persistent states round-trip
    loaded = nn.ModuleDict({"head": nn.Linear(2, 1), "metric": case.make()})
    loaded.load_state_dict(state, strict=True)
    loaded["metric"].update(*case.batches[0])
    assert loaded["metric"].compute().item() == pytest.approx(_expected(case, case.batches[:1]), abs=1e-5)
    loaded["metric"].persistent(True)
    assert sorted(loaded["metric"].state_dict()) == ["score_sum", "total"]
    restored = case.make()
    restored.persistent(True)
    restored.load_state_dict(loaded["metric"].state_dict(), strict=True)
    assert restored.compute().item() == pytest.approx(loaded["metric"].compute().item(), abs=1e-7)


@pytest.mark.parametrize("name", CASES)
def test_precision_fp16_fp64_set_dtype_and_parent_casts(cases, name):
    case = cases[name]
    batch = case.batches[0]
    reference = case.make()
    reference.update(*batch)
    value = reference.compute().item()

    rounded = case.make()  # fp16 inputs to a float32 metric: cast up, as ML-CLIPSim does
    rounded.update(*[x.half() for x in batch])
    exact = case.make()
    exact.update(*[x.half().float() for x in batch])
    assert rounded.compute().item() == pytest.approx(exact.compute().item(), abs=1e-6)

    wide = case.make()  # fp64 inputs to a float32 metric
    wide.update(*[x.double() for x in batch])
    assert wide.compute().item() == pytest.approx(value, abs=1e-5)

    double = case.metric.clone().set_dtype(torch.float64)
    assert all(p.dtype == torch.float64 for p in double.parameters())
    double.update(*[x.double() for x in batch])
    assert double.compute().item() == pytest.approx(value, abs=1e-4)

    parent = nn.ModuleDict({"metric": case.metric.clone()}).double()  # a LightningModule cast as a whole
    parent["metric"].update(*batch)
    assert parent["metric"].compute().item() == pytest.approx(value, abs=1e-4)

    parent = nn.ModuleDict({"metric": double}).half()  # (reuses the float64 copy: its weights came from float32)
    double.reset()
    assert all(p.dtype == torch.float16 for p in parent.parameters())
    parent["metric"].update(*[x.half() for x in batch])
    half = parent["metric"].compute()
    assert torch.isfinite(half) and half.item() == pytest.approx(value, abs=0.03)


@pytest.mark.parametrize("name", CASES)
def test_gradients_reach_the_distorted_input_and_stay_finite(cases, name):
    case = cases[name]
    assert type(case.metric).is_differentiable
    metric = case.make()
    first, *rest = case.batches[0]
    preds = first.clone().requires_grad_()
    metric(preds, *rest).backward()
    assert torch.isfinite(preds.grad).all() and preds.grad.abs().sum() > 0
    # identical inputs (no-reference: a flat grey image): no NaN
    same = (rest[0].clone() if case.reference else torch.full_like(first, 0.5)).requires_grad_()
    value = metric(same, *rest)
    value.backward()
    assert torch.isfinite(same.grad).all()
    if case.reference:
        assert value.item() == pytest.approx(1.0, abs=1e-5)
    # the gradient is the true derivative: in float64, along a random direction u, grad . u equals the central
    # difference (what torch.autograd.gradcheck's fast mode checks, without its slow full-Jacobian report)
    double = case.metric.clone().set_dtype(torch.float64)
    x, *others = [t[:1].double() for t in case.batches[0]]
    x = (0.1 + 0.8 * x).requires_grad_()  # away from the [0,1] range check
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    case.score(double, x, *others).sum().backward()
    step = 1e-6
    with torch.no_grad():
        numerical = (case.score(double, x + step * direction, *others)
                     - case.score(double, x - step * direction, *others)).sum() / (2 * step)
    assert (x.grad * direction).sum().item() == pytest.approx(numerical.item(), rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("name", METRIC_CASES)
def test_collection_compute_groups_merge_state_composition_and_compute_on_cpu(cases, name):
    case = cases[name]
    expected = _expected(case)
    collection = MetricCollection({"a": case.make(), "b": case.make(), "other": case.companion()},
                                  compute_groups=True)
    for batch in case.batches:
        collection.update(*batch)
    assert any({"a", "b"} <= set(group) for group in collection.compute_groups.values())
    values = collection.compute()
    assert values["a"].item() == pytest.approx(expected, abs=1e-5)
    assert values["b"].item() == pytest.approx(expected, abs=1e-5)

    merged, other = case.make(), case.make()
    merged.update(*case.batches[0])
    for batch in case.batches[1:]:
        other.update(*batch)
    merged.merge_state(other)
    assert merged.compute().item() == pytest.approx(expected, abs=1e-5)

    composed = 1 - case.make()
    summed = case.make() + case.make()
    for batch in case.batches:
        composed.update(*batch)
        summed.update(*batch)
    assert composed.compute().item() == pytest.approx(1 - expected, abs=1e-5)
    assert summed.compute().item() == pytest.approx(2 * expected, abs=1e-5)
    with torch.no_grad():
        assert composed(*case.batches[0]).item() == pytest.approx(1 - _expected(case, case.batches[:1]), abs=1e-5)

    on_cpu = case.make(compute_on_cpu=True)
    for batch in case.batches:
        on_cpu.update(*batch)
    assert on_cpu.compute().item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize("name", METRIC_CASES)
def test_torch_jit_script_compiles_the_metric_and_a_module_holding_it(cases, name):
    case = cases[name]
    metric = case.make()
    assert case.frozen in type(metric).__jit_ignored_attributes__  # the declaration, as torchmetrics' LPIPS
    scripted = torch.jit.script(metric)
    assert isinstance(scripted, torch.jit.ScriptModule)

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.metric = metric

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    holder = Holder()
    x = case.batches[0][0]
    assert torch.equal(torch.jit.script(holder)(x), holder(x))


@pytest.mark.parametrize("name", METRIC_CASES)
def test_plot_draws_single_and_multiple_values(cases, name):
    import matplotlib.pyplot as plt

    case = cases[name]
    metric = case.make()
    try:
        metric.update(*case.batches[0])
        fig, ax = metric.plot()
        assert fig is not None and list(ax.lines[0].get_ydata()) == pytest.approx([metric.compute().item()])
        if case.reference:
            assert ax.get_ylim() == pytest.approx((-0.1, 1.1))
        with torch.no_grad():
            values = [metric(*batch) for batch in case.batches]
        _, axes = plt.subplots()
        assert metric.plot(values, ax=axes) == (None, axes)
        assert list(axes.lines[0].get_ydata()) == pytest.approx([v.item() for v in values])
    finally:
        plt.close("all")


def test_every_frozen_network_is_frozen_and_the_functionals_build_no_graph(cases, tmp_path):
    x, y = cases[CASES[0]].batches[0]
    modules = [case.metric for case in cases.values()]
    trainable_copy = deepcopy(cases["RAMIQA[hybrid]"].metric.model).requires_grad_(True)
    modules += [MLCLIPSimLoss(tiny_encoder(TINY_VIT)), RAMIQALoss(model=trainable_copy)]
    path = tmp_path / "ra_miqa.pt"
    cases["RAMIQA[hybrid]"].metric.model.save(path)
    assert not ra_miqa(x, weights=path).requires_grad
    assert not ml_clipsim(x, y, backbone=TINY_VIT, pretrained="random").requires_grad
    modules.append(_cached_model("detection", "consistency", os.fspath(path)))
    for module in modules:
        trainable = [name for name, p in module.named_parameters() if p.requires_grad]
        assert not trainable, f"{type(module).__name__} has trainable frozen parameters: {trainable[:3]}"


# ------------------------------------------------------------------------------------ two processes


def _gloo_worker(rank: int, world_size: int, port: int, blobs: dict[str, bytes], queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        results = {}
        for name, blob in blobs.items():
            # pickled in the parent: a fresh process must be able to load them
            synced, local, stepped, batches = pickle.loads(blob)
            share = batches[:2] if rank == 0 else batches[2:]
            for batch in share:
                synced.update(*batch)
                local.update(*batch)
            with torch.no_grad():
                step_value = stepped(*share[0])  # rank 0: batch 0, rank 1: batch 2
            results[name] = {"synced": synced.compute().item(), "local": local.compute().item(),
                             "step": step_value.item(), "stepped": stepped.compute().item(),
                             "totals": (synced.total.item(), local.total.item())}  # own states after compute
        queue.put((rank, results))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_sync_on_and_off_and_dist_sync_on_step(cases):
    blobs = {name: pickle.dumps((case.make(), case.make(sync_on_compute=False), case.make(dist_sync_on_step=True),
                                 case.batches)) for name, case in cases.items()}
    results = run_two_gloo_workers(_gloo_worker, blobs)
    for name, case in cases.items():
        b0, b1, b2 = case.batches
        everything, rank0, rank1 = _expected(case), _expected(case, [b0, b1]), _expected(case, [b2])
        first_steps = _expected(case, [b0, b2])
        for rank, local, own in ((0, rank0, len(b0[0]) + len(b1[0])), (1, rank1, len(b2[0]))):
            got = results[rank][name]
            assert got["synced"] == pytest.approx(everything, abs=1e-5), (name, rank)
            assert got["local"] == pytest.approx(local, abs=1e-5), (name, rank)
            assert got["step"] == pytest.approx(first_steps, abs=1e-5), (name, rank)
            assert got["stepped"] == pytest.approx(first_steps, abs=1e-5), (name, rank)
            assert got["totals"] == (own, own), (name, rank)  # compute unsyncs: each process keeps its own states
