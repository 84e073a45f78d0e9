"""RA-MIQA: the network, the metric / loss / functional, the shipped weights, training and DDP sync."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_images

from mlclipsim.backbones import MissingWeightsError
from mlclipsim.models.ra_miqa import RAMIQAModel, parse_heads

HEADS = ["classification/consistency", "detection/consistency", "segmentation/consistency"]
SMALL = {"view_size": 64, "dim": 32, "depth": 1, "num_heads": 2}


def small_model(seed: int = 0, pretrained: str | None = "random", **options) -> RAMIQAModel:
    """A small RA-MIQA on MobileNetV2 (random encoder weights asked for by name, unless pretrained=None)."""
    torch.manual_seed(seed)
    return RAMIQAModel(**{"pretrained": pretrained, **SMALL, **options}).eval()


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A small untrained RA-MIQA on the real MobileNetV2 weights, saved as a file (same in every process)."""
    path = tmp_path_factory.mktemp("ra_miqa") / "small.pt"
    small_model(seed=3, pretrained=None, heads=HEADS).save(path)
    return path


# ------------------------------------------------------------------------------------------ network


@pytest.mark.parametrize("architecture", ["ra-miqa", "no-region", "cnn"])
def test_shapes_and_heads(architecture):
    model = small_model(architecture=architecture, heads=HEADS)
    assert model(random_images(2, (64, 96))).shape == (2, 3)
    assert model.heads == tuple(HEADS)
    assert model.head_index("segmentation/consistency") == 2
    names = [name for name, _ in model.net.named_parameters()]
    assert any("region" in name for name in names) == (architecture == "ra-miqa")


def test_head_names_are_validated():
    assert parse_heads("detection/consistency") == ("detection/consistency",)
    with pytest.raises(ValueError, match="task/target"):
        parse_heads(["detection"])
    with pytest.raises(ValueError, match="Unknown RA-MIQA task"):
        parse_heads(["ocr/consistency"])
    with pytest.raises(ValueError, match="Unknown RA-MIQA target"):
        parse_heads(["detection/iou"])
    with pytest.raises(ValueError, match="no head"):
        small_model().head_index("segmentation/consistency")
    with pytest.raises(ValueError, match="Unknown RA-MIQA view"):
        small_model(view="tile")


@pytest.mark.parametrize("options", [{}, {"region_pool": "saliency"}, {"view": "center_crop", "train_view_size": 96}])
def test_finite_gradients_reach_the_image(options):
    model = small_model(**options)
    for images in (random_images(2, (70, 90), seed=1), torch.zeros(1, 3, 64, 64), torch.ones(1, 3, 64, 64)):
        images = images.clone().requires_grad_()
        model(images).sum().backward()
        assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0


def test_scores_are_deterministic():
    model = small_model(heads=HEADS)
    images = random_images(3, seed=4)
    with torch.no_grad():
        first, second = model(images), model(images)
    assert torch.equal(first, second)
    with torch.no_grad():
        assert torch.equal(small_model(heads=HEADS)(images), first)  # same seed, same network


def test_save_and_load_round_trip(tmp_path):
    model = small_model(pretrained=None, heads=HEADS)
    model.save(tmp_path / "m.pt", meta={"command": "test"}, half=False)
    loaded = RAMIQAModel.from_file(tmp_path / "m.pt")
    images = random_images(2, seed=5)
    with torch.no_grad():
        assert torch.allclose(loaded(images), model(images), atol=1e-6)
    assert loaded.meta == {"command": "test"}
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable RA-MIQA"):
        RAMIQAModel.from_file(tmp_path / "bad.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an RA-MIQA weights file"):
        RAMIQAModel.from_file(tmp_path / "other.pt")


def test_timm_vit_patch_encoder_fails_clearly_offline_and_runs_with_random_weights():
    with pytest.raises(MissingWeightsError, match="MLCLIPSIM_WEIGHTS_DIR"):
        RAMIQAModel(patch_encoder="timm/vit_small_patch16_224", allow_download=False)
    torch.manual_seed(0)
    model = RAMIQAModel(patch_encoder="timm/vit_tiny_patch16_224", pretrained="random", region_pretrained="random",
                        vit_options={"depth": 1}, view_size=64, heads=HEADS[:2])
    images = random_images(2, seed=6).requires_grad_()
    out = model(images)
    assert out.shape == (2, 2)
    out.sum().backward()
    assert torch.isfinite(images.grad).all()


# ------------------------------------------------------------------------------ metric, loss, functional


def test_metric_update_compute_reset(saved_model):
    from mlclipsim import RAMIQA

    metric = RAMIQA(task="detection", weights=saved_model)
    assert RAMIQA.is_differentiable and RAMIQA.higher_is_better and not RAMIQA.full_state_update
    with pytest.warns(UserWarning, match="before the ``update``"):  # as torchmetrics: a warning and NaN
        assert torch.isnan(metric.compute())
    a, b = random_images(2, seed=7), random_images(3, seed=8)
    metric.update(a)
    metric.update(b)
    with torch.no_grad():
        expected = metric.model(torch.cat([a, b]))[:, 1].mean()
    assert metric.compute() == pytest.approx(expected.item(), abs=1e-6)
    metric.reset()
    metric.update(a)
    with torch.no_grad():
        assert metric.compute() == pytest.approx(metric.model(a)[:, 1].mean().item(), abs=1e-6)
    metric.train()
    assert not metric.model.training


def test_loss_reductions_gradients_and_functional(saved_model):
    from mlclipsim import RAMIQALoss, ra_miqa

    images = random_images(3, seed=9)
    per_image = RAMIQALoss(task="segmentation", weights=saved_model, reduction="none")(images)
    quality = ra_miqa(images, task="segmentation", weights=saved_model, reduction="none")
    assert per_image.shape == (3,)
    assert torch.allclose(per_image, 1 - quality, atol=1e-6)
    assert RAMIQALoss(task="segmentation", weights=saved_model, reduction="sum")(images) == pytest.approx(
        per_image.sum().item(), abs=1e-5)
    loss_fn = RAMIQALoss(task="segmentation", weights=saved_model)
    stray = (images * 1.4 - 0.2).requires_grad_()  # an untrained codec's output strays outside [0,1]
    loss = loss_fn(stray)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(stray.grad).all() and stray.grad.abs().sum() > 0
    assert not any(p.grad is not None for p in loss_fn.parameters())
    with pytest.raises(ValueError, match="reduction"):
        RAMIQALoss(weights=saved_model, reduction="max")


def test_codec_term_builds_ra_miqa(saved_model):
    from mlclipsim.training.distortion_terms import RA_MIQA_SCALES, build_term

    with pytest.raises(ValueError, match="calibrate_lambda --ra-miqa detection"):  # own weights: no known scale
        build_term({"name": "ra-miqa", "weights": str(saved_model), "task": "detection"})
    with pytest.raises(ValueError, match="positive"):
        build_term({"name": "ra-miqa", "weights": str(saved_model), "scale": -1.0})
    term = build_term({"name": "ra-miqa", "weight": 0.5, "weights": str(saved_model), "task": "detection",
                       "scale": 700.0})
    assert term.needs_reference is False and term.weight == 0.5 and term.scale == 700.0
    x_hat = (random_images(2, seed=10) * 1.6 - 0.3).requires_grad_()  # strays past the loss's own tolerance
    raw = term(x_hat, None)
    assert raw.ndim == 0 and torch.isfinite(raw)
    term.distortion(raw).backward()
    assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    shipped = build_term({"name": "ra-miqa", "task": "classification"})
    assert shipped.scale == RA_MIQA_SCALES[("classification", "consistency")]


def test_bad_inputs(saved_model, tmp_path):
    from mlclipsim import RAMIQA, RAMIQALoss, ra_miqa

    metric = RAMIQA(weights=saved_model)
    good = random_images(1)
    cases = [(good[0], ValueError, "batch dimension"), (good.repeat(1, 1, 1, 1)[:, :1], ValueError, "3 channels"),
             ((good * 255).to(torch.uint8), TypeError, "integer dtype"), (good * 255, ValueError, "divide by 255"),
             (good.clone().fill_(float("nan")), ValueError, "NaN"), (torch.rand(1, 3, 16, 16), ValueError, "minimum"),
             (good.numpy(), TypeError, "torch.Tensor")]
    for images, error, message in cases:
        with pytest.raises(error, match=message):
            metric.update(images)
    with pytest.raises(ValueError, match="values in"):
        RAMIQALoss(weights=saved_model)(good * 3)
    with pytest.raises(MissingWeightsError, match="does not exist"):
        ra_miqa(good, weights=tmp_path / "missing.pt")
    with pytest.raises(MissingWeightsError) as info:  # no accuracy head ships: every way is named
        RAMIQA(task="detection", target="accuracy")
    assert "MLCLIPSIM_WEIGHTS_DIR" in str(info.value) and "train-ramiqa" in str(info.value)
    with pytest.raises(ValueError, match="Unknown RA-MIQA task"):
        RAMIQA(task="ocr")
    with pytest.raises(TypeError, match="RAMIQAModel"):
        RAMIQA(model=torch.nn.Linear(2, 2))


# ----------------------------------------------------------------------------------- shipped weights


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_shipped_weights_rank_clean_photos_above_heavy_distortions(task, shared_dir):
    from PIL import Image

    from mlclipsim import RAMIQA
    from mlclipsim.distortions import distort
    from mlclipsim.metrics.functional.ra_miqa import shipped_path

    assert shipped_path(task).is_file(), f"the package should ship {shipped_path(task)}"
    # photos held out from training (test photos of the benchmark's split)
    names = ["skimage_astronaut.png", "skimage_coffee.png", "skimage_camera.png", "skimage_motorcycle_left.png"]
    photos = []
    for name in names:
        with Image.open(shared_dir / "data" / "images" / name) as image:
            photos.append(np.asarray(image.convert("RGB").resize((256, 256), Image.BICUBIC), dtype=np.float32) / 255)
    metric = RAMIQA(task=task)
    scores = {}
    for kind in ("clean", "defocus_blur", "gaussian_noise"):
        batch = [p if kind == "clean" else distort(p, kind, 5, seed=0) for p in photos]
        with torch.no_grad():
            images = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().clamp(0, 1)
            scores[kind] = metric.model(images)[:, metric.model.head_index(f"{task}/consistency")]
    for kind in ("defocus_blur", "gaussian_noise"):
        assert (scores["clean"] > scores[kind]).float().mean() >= 0.75, (kind, scores)
        assert scores["clean"].mean() > scores[kind].mean() + 0.1, (kind, scores)


# ------------------------------------------------------------------------------------------ training


def make_dataset(root: Path, photos: int = 10, seed: int = 0) -> None:
    """A tiny dataset folder: noisy versions of textured 64-px photos, labels falling with the noise."""
    from PIL import Image

    from mlclipsim.data.manifest import write_rows

    generator = np.random.default_rng(seed)
    rows = []
    for p in range(photos):
        reference = generator.random((64, 64, 3)) * 0.3 + np.linspace(0, 0.7, 64)[None, :, None]
        (root / "references").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"p{p}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((reference * 255).astype(np.uint8)).save(root / f"references/p{p}.png")
        for k, sigma in enumerate([0.0, 0.05, 0.1, 0.2, 0.3, 0.4]):
            image = np.clip(reference + generator.normal(0, sigma, reference.shape), 0, 1)
            path = f"images/p{p}/n{k}.png"
            Image.fromarray((image * 255).astype(np.uint8)).save(root / path)
            rows.append({"reference_id": f"p{p}", "photo": f"p{p}", "crop": 0, "reference_path": f"references/p{p}.png",
                         "distorted_path": path, "distortion": "gaussian_noise", "mode": "uniform",
                         "roi_severity": k, "bg_severity": k, "mmos/detection": 1 - 2 * sigma,
                         "mmos/segmentation": 1 - sigma, "mmos": 1 - 1.5 * sigma})
    write_rows(root / "manifest.csv", rows)


ENCODER = {"view_size": 64, "pretrained": None}


def test_tiny_training_run_lowers_the_loss(tmp_path):
    import lightning as L

    from mlclipsim.models.ra_miqa import FrozenFeatures
    from mlclipsim.training.ra_miqa_data import RAMIQADataModule, cache_features, load_cached
    from mlclipsim.training.ra_miqa_module import RAMIQAModule

    make_dataset(tmp_path / "ds")
    L.seed_everything(0)
    heads = ["detection/consistency", "segmentation/consistency"]
    data = RAMIQADataModule(tmp_path / "ds", heads=heads, encoder=ENCODER, cache_dir=tmp_path / "cache", batch_size=8)
    module = RAMIQAModule(heads=heads, encoder=ENCODER, dim=32, depth=1, num_heads=2, lr=2e-3, warmup_epochs=0.5)
    data.prepare_data()
    data.setup()
    train = data.datasets["train"]
    features = FrozenFeatures(train.patch.float(), train.region.float())

    def train_mse() -> float:
        module.eval()
        with torch.no_grad():
            return torch.nn.functional.mse_loss(module.net(features), train.targets).item()

    before = train_mse()
    trainer = L.Trainer(max_epochs=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    after = train_mse()
    assert after < 0.5 * before, (before, after)
    assert trainer.callback_metrics["val/srcc"] > 0.5

    # the cache holds exactly what the model's frozen encoders make of the (training) view
    module.export(tmp_path / "trained.pt")
    model = RAMIQAModel.from_file(tmp_path / "trained.pt")
    row = data.rows["train"][0]
    from mlclipsim.core.images import read_image

    image = read_image(tmp_path / "ds" / row["distorted_path"])[None]
    patch, region = load_cached(cache_features(tmp_path / "ds", ENCODER, tmp_path / "cache"), [row["distorted_path"]])
    with torch.no_grad():
        encoded = model.encode(image)
        assert torch.allclose(encoded.patch, patch.float(), atol=2e-2, rtol=1e-2)
        assert torch.allclose(encoded.region, region.float(), atol=2e-2, rtol=1e-2)
        assert torch.allclose(model(image), module.net(FrozenFeatures(patch.float(), region.float())), atol=2e-3)


def test_missing_accuracy_labels_are_explained(tmp_path):
    from mlclipsim.training.ra_miqa_data import RAMIQADataModule

    make_dataset(tmp_path / "ds", photos=3)
    data = RAMIQADataModule(tmp_path / "ds", heads=["detection/accuracy"], encoder=ENCODER, from_images=True,
                            include_references=False)
    with pytest.raises(ValueError, match="accuracy/detection.*consistency only"):
        data.setup()
    with pytest.raises(ValueError, match="consistency targets only"):
        RAMIQADataModule(tmp_path / "ds", heads=["detection/accuracy"], encoder=ENCODER)


def test_train_ramiqa_command_runs_the_packaged_config(tmp_path, capsys):
    from mlclipsim.cli import main

    make_dataset(tmp_path / "ds")
    export = tmp_path / "out" / "seg.pt"
    status = main(["train-ramiqa", "--config", "ra_miqa.yaml", f"data.root={tmp_path / 'ds'}",
                   f"data.cache_dir={tmp_path / 'cache'}", "model.encoder={view: center_crop, view_size: 64, "
                   "train_view_size: 96}", "model.heads=[segmentation/consistency]", "model.architecture=no-region",
                   "model.dim=32", "model.depth=1", "trainer.max_epochs=1",
                   f"trainer.logger.init_args.save_dir={tmp_path / 'runs'}", f"export={export}"])
    assert status == 0
    model = RAMIQAModel.from_file(export)
    assert model.heads == ("segmentation/consistency",) and model.config["architecture"] == "no-region"
    assert model.train_size == 96 and model(random_images(1)).shape == (1, 1)
    assert model.meta["targets"] == ["mmos/segmentation"] and model.meta["photos"]["train"] == 6
    assert main(["train-ramiqa", "--config", "ra_miqa.yaml", "trainer.max_epochs"]) == 2  # one error line
    assert "KEY=VALUE" in capsys.readouterr().err


def test_unshipped_head_fails_with_a_clear_error():
    # the segmentation head was trained but not shipped: it ranked defocus-blurred photos above clean ones
    from mlclipsim import RAMIQA
    from mlclipsim.backbones import MissingWeightsError

    with pytest.raises((MissingWeightsError, FileNotFoundError), match="segmentation"):
        RAMIQA(task="segmentation")
