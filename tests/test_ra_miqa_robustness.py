"""RA-MIQA robustness: bounded heads, hard negatives and their labels, PGD, training with both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_images

from mlclipsim.machine.predictions import Classification, Detections
from mlclipsim.machine.protocol import TaskModel
from mlclipsim.machine.registry import register_task_model
from mlclipsim.models.ra_miqa import RAMIQAModel, read_trained, save_trained
from mlclipsim.training.ra_miqa_negatives import (
    NEGATIVE_KINDS,
    AdversarialConfig,
    NegativesConfig,
    TaskLabeller,
    make_negative,
    pgd_attack,
    plan_negatives,
)

SMALL = {"view_size": 64, "dim": 32, "depth": 1, "num_heads": 2}
ENCODER = {"view_size": 64, "pretrained": None}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_model(seed: int = 0, **options) -> RAMIQAModel:
    torch.manual_seed(seed)
    return RAMIQAModel(**{"pretrained": "random", **SMALL, **options}).eval()


@pytest.fixture(scope="module")
def model() -> RAMIQAModel:
    """A small bounded RA-MIQA with two heads (random MobileNetV2, asked for by name)."""
    return small_model(seed=1, heads=["detection/consistency", "segmentation/consistency"])


# --------------------------------------------------------------------- tiny task models (deterministic)


class ColourClassifier(TaskModel):
    """64 'classes': prototypes of mean colour, contrast and edge energy; probabilities fall with the distance."""

    name = "test-colour-classifier"
    task = "classification"
    prototypes = np.random.default_rng(0).random((64, 5))

    def _predict(self, images):
        out = []
        for image in images:
            x = image.astype(np.float32) / 255
            edges = np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean()
            features = np.array([*x.mean((0, 1)), 2 * x.std(), 2 * edges])
            logits = -60 * ((self.prototypes - features) ** 2).sum(1)
            probs = np.exp(logits - logits.max())
            out.append(Classification(probs / probs.sum()))
        return out


class ContrastDetector(TaskModel):
    """One whole-image box of class 0 when the image has contrast (std > 0.1), else nothing."""

    name = "test-contrast-detector"
    task = "detection"
    score_threshold = 0.5

    def _predict(self, images):
        out = []
        for image in images:
            height, width = image.shape[:2]
            found = (image.astype(np.float32) / 255).std(axis=(0, 1)).mean() > 0.1
            out.append(Detections(np.array([[0, 0, width, height]] if found else np.zeros((0, 4))),
                                  np.array([0.9] if found else []), np.array([0] if found else [])))
        return out


for _model in (ColourClassifier, ContrastDetector):
    register_task_model(_model.name, _model, overwrite=True)
FAKES = [ColourClassifier.name, ContrastDetector.name]


def photo(seed: int = 0, size: int = 64) -> np.ndarray:
    """A textured uint8 'photo': a gradient with noise."""
    rng = np.random.default_rng(seed)
    image = rng.random((size, size, 3)) * 0.3 + np.linspace(0, 0.7, size)[None, :, None]
    return (image * 255).astype(np.uint8)


# ----------------------------------------------------------------------------------- bounded output


def test_heads_are_bounded_under_any_input_including_adversarial(model):
    assert model.config["bounded"] is True and model.net.bounded is True
    checker = torch.zeros(1, 3, 64, 64)
    checker[..., ::2, ::2] = 1.0
    inputs = [torch.zeros(2, 3, 64, 64), torch.ones(2, 3, 64, 64), random_images(2), checker,
              random_images(2, (48, 200), seed=1)]
    for images in inputs:
        with torch.no_grad():
            scores = model(images)
            model.net.bounded = False
            raw = model(images)
            model.net.bounded = True
        assert ((scores > 0) & (scores < 1)).all(), scores
        assert torch.allclose(scores, raw.sigmoid(), atol=1e-6)  # a sigmoid on the raw head
    # an attack with a huge budget cannot push the score out of (0, 1) either
    attacked = pgd_attack(lambda x: model(x).sum(1), random_images(2), eps=0.5, steps=5)
    with torch.no_grad():
        assert ((model(attacked) > 0) & (model(attacked) < 1)).all()


def test_files_without_the_option_load_unbounded(tmp_path):
    model = small_model(seed=2, bounded=False, pretrained=None)  # the real encoder: the same at every load
    model.save(tmp_path / "new.pt")
    record = read_trained(tmp_path / "new.pt")
    assert record["config"]["bounded"] is False
    del record["config"]["bounded"]  # a file written before the option
    save_trained(tmp_path / "old.pt", record["config"], record["state_dict"], half=False)
    old = RAMIQAModel.from_file(tmp_path / "old.pt")
    assert old.config["bounded"] is False and old.net.bounded is False
    images = random_images(2)
    with torch.no_grad():
        assert torch.allclose(old(images), RAMIQAModel.from_file(tmp_path / "new.pt")(images))
    small_model(seed=2).save(tmp_path / "bounded.pt")
    assert RAMIQAModel.from_file(tmp_path / "bounded.pt", pretrained="random").net.bounded is True


def test_shipped_heads_keep_loading_unbounded():
    from mlclipsim.metrics.functional.ra_miqa import shipped_path

    path = shipped_path("detection")
    assert "bounded" not in read_trained(path)["config"]  # trained before the option
    model = RAMIQAModel.from_file(path)
    assert model.net.bounded is False
    with torch.no_grad():  # the raw head: the shipped head rates a flat grey image above 1 - nothing clips it
        assert model(torch.full((1, 3, 64, 64), 0.5)).item() == pytest.approx(0.818, abs=0.1)


# ------------------------------------------------------------------------------------------ negatives


@pytest.mark.parametrize("kind", NEGATIVE_KINDS)
def test_negatives_are_deterministic_and_of_their_kind(kind):
    source = photo(3, 96)
    image = make_negative(kind, 40, 56, seed=5, source=source)
    assert image.shape == (40, 56, 3) and image.dtype == np.uint8
    assert np.array_equal(image, make_negative(kind, 40, 56, seed=5, source=source))
    assert not np.array_equal(image, make_negative(kind, 40, 56, seed=6, source=source))
    pixels = image.reshape(-1, 3).astype(int)
    if kind == "flat_grey":
        assert (pixels == pixels[0]).all() and pixels[0, 0] == pixels[0, 1] == pixels[0, 2]
    elif kind == "constant_colour":
        assert (pixels == pixels[0]).all()
    elif kind.endswith("noise"):
        assert pixels.std() > 5 and len(np.unique(pixels, axis=0)) > 20
    elif kind == "tiled_patch":  # periodic: some shift of at most 64 px maps the image onto itself
        assert any(np.array_equal(image[:, p:], image[:, :-p]) for p in range(8, 57))
    else:  # carpet: every 8-px block is a block of the photo
        windows = {source[r:r + 8, c:c + 8].tobytes() for r in range(89) for c in range(89)}
        assert image[:8, :8].tobytes() in windows and image[-8:, -8:].tobytes() in windows
    if kind in ("tiled_patch", "carpet"):
        with pytest.raises(ValueError, match="source"):
            make_negative(kind, 40, 56, seed=5)


def test_plan_cycles_kinds_over_the_references():
    references = [{"reference_path": f"references/p{i}.png", "reference_id": f"p{i}"} for i in range(4)]
    plan = plan_negatives(references, ["flat_grey", "carpet"], count=8, seed=1)
    assert plan == plan_negatives(references, ["flat_grey", "carpet"], count=8, seed=1)
    assert [n.kind for n in plan] == ["flat_grey", "carpet"] * 4
    assert sorted(n.reference["reference_id"] for n in plan) == ["p0", "p0", "p1", "p1", "p2", "p2", "p3", "p3"]
    with pytest.raises(ValueError, match="negative kinds"):
        plan_negatives(references, ["grey"], count=2)
    with pytest.raises(ValueError, match="Unknown negatives option"):
        NegativesConfig.parse({"kind": ["flat_grey"]})


def test_negatives_are_labelled_by_the_task_models():
    labeller = TaskLabeller(FAKES)
    reference = photo(0)
    grey, copy = make_negative("flat_grey", 64, 64, seed=0), reference.copy()
    grey_row, copy_row = labeller.label(reference, [grey, copy], empty_reference="zero")
    assert copy_row["mmos/classification"] == pytest.approx(1.0) and copy_row["mmos/detection"] == 1.0
    assert grey_row["mmos/detection"] == 0.0  # the detector loses its box
    assert grey_row["mmos/classification"] < 0.5
    assert set(grey_row) >= {"consistency/test-colour-classifier", "soft/test-contrast-detector", "mmos",
                             "mmos_soft", "mmos_soft/detection"}
    # a flat reference: the detector finds nothing on it nor on the negative
    flat = make_negative("constant_colour", 64, 64, seed=1)
    dataset_rule = labeller.label(flat, [grey])[0]
    zero_rule = labeller.label(flat, [grey], empty_reference="zero")[0]
    assert dataset_rule["mmos/detection"] == 1.0 and np.isnan(dataset_rule["mmos_soft/detection"])
    assert zero_rule["mmos/detection"] == 0.0 and zero_rule["mmos_soft/detection"] == 0.0
    assert zero_rule["reference_empty"] == ContrastDetector.name


def test_codec_outputs_join_the_negatives_with_the_dataset_labels(tmp_path):
    from mlclipsim.training.ra_miqa_negatives import prepare_negatives

    make_dataset(tmp_path / "ds", photos=2)
    from mlclipsim.data.manifest import read_rows

    rows = read_rows(tmp_path / "ds" / "manifest.csv")
    config = {"kinds": ["codec", "flat_grey"], "count": 4, "codecs": {"webp": None}, "task_models": FAKES}
    made = prepare_negatives(tmp_path / "ds", rows, config, tmp_path / "cache")
    codec_rows = [r for r in made.rows if r["distortion"] == "negative_codec_webp"]
    assert len(codec_rows) == 2 and len(made.rows) == 4
    for row in codec_rows:
        assert 1 <= row["roi_severity"] <= 5 and 15 < row["psnr"] < 60  # the photo, coded: close, not equal
        assert row["reference_empty"] == ""  # labelled by the dataset's rules
        assert (made.folder / row["distorted_path"]).is_file()
    with pytest.raises(ValueError, match="codecs"):
        NegativesConfig.parse({"kinds": ["codec"]})


# ---------------------------------------------------------------------------------------------- PGD


def test_pgd_stays_within_eps_and_raises_the_score(model):
    images = random_images(3, seed=4)

    def score(x: torch.Tensor) -> torch.Tensor:
        return model(x)[:, 0]

    eps = 4 / 255
    attacked = pgd_attack(score, images, eps=eps, steps=3)
    assert (attacked - images).abs().max() <= eps + 1e-6
    assert attacked.min() >= 0 and attacked.max() <= 1
    assert (attacked - images).abs().max() > eps / 2  # it moved
    with torch.no_grad():
        assert (score(attacked) > score(images)).all(), (score(images), score(attacked))
    assert torch.equal(pgd_attack(score, images, eps=eps, steps=2, random_start=True, seed=3),
                       pgd_attack(score, images, eps=eps, steps=2, random_start=True, seed=3))


# ------------------------------------------------------------------------------------------ training


def make_dataset(root: Path, photos: int = 6) -> None:
    """A tiny dataset of 64-px noisy photos with classification and detection labels."""
    from PIL import Image

    from mlclipsim.data.manifest import write_rows

    generator = np.random.default_rng(0)
    rows = []
    for p in range(photos):
        reference = photo(p)
        (root / "references").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"p{p}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(reference).save(root / f"references/p{p}.png")
        for k, sigma in enumerate([0.05, 0.2, 0.4]):
            image = np.clip(reference / 255 + generator.normal(0, sigma, reference.shape), 0, 1)
            path = f"images/p{p}/n{k}.png"
            Image.fromarray((image * 255).astype(np.uint8)).save(root / path)
            rows.append({"reference_id": f"p{p}", "photo": f"p{p}", "crop": 0, "reference_path": f"references/p{p}.png",
                         "distorted_path": path, "distortion": "gaussian_noise", "mode": "uniform",
                         "roi_severity": k + 1, "bg_severity": k + 1, "mmos/classification": 1 - 2 * sigma,
                         "mmos/detection": 1 - sigma, "mmos": 1 - 1.5 * sigma})
    write_rows(root / "manifest.csv", rows)


def test_training_with_negatives_and_adversarial_examples_runs(tmp_path):
    import lightning as L

    from mlclipsim.training.ra_miqa_data import RAMIQADataModule
    from mlclipsim.training.ra_miqa_module import RAMIQAModule

    make_dataset(tmp_path / "ds")
    L.seed_everything(0)
    heads = ["classification/consistency"]
    negatives = {"kinds": ["flat_grey", "gaussian_noise", "carpet"], "count": 6, "task_models": FAKES}
    data = RAMIQADataModule(tmp_path / "ds", heads=heads, encoder=ENCODER, cache_dir=tmp_path / "cache", batch_size=4,
                            split=(0.5, 0.25, 0.25), negatives=negatives)
    adversarial = {"eps": 4 / 255, "steps": 1, "count": 2, "start_epoch": 0, "task_models": FAKES}
    module = RAMIQAModule(heads=heads, encoder=ENCODER, dim=32, depth=1, num_heads=2, adversarial=adversarial)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)

    negative_rows = data.rows["negatives"]
    assert len(negative_rows) == 6 and {r["mode"] for r in negative_rows} == {"negative"}
    assert {r["distortion"] for r in negative_rows} == {"negative_flat_grey", "negative_gaussian_noise",
                                                         "negative_carpet"}
    assert len(data.datasets["train"]) == len(data.rows["train"]) + 6
    labels = [r["mmos/classification"] for r in negative_rows]
    assert all(0.0 <= v <= 1.0 for v in labels) and np.mean(labels) < 0.7
    assert trainer.callback_metrics["adversarial/pool"] == 2
    assert trainer.callback_metrics["adversarial/score_gain"] > 0
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    # the pool's rows join a training batch
    batch = next(iter(data.train_dataloader()))
    mixed = module.adversarial.mix(batch)
    assert len(mixed["target"]) == len(batch["target"]) + 1 and mixed["patch"].shape[1:] == batch["patch"].shape[1:]
    # the negatives are made once: a second DataModule reuses the folder
    again = RAMIQADataModule(tmp_path / "ds", heads=heads, encoder=ENCODER, cache_dir=tmp_path / "cache",
                             split=(0.5, 0.25, 0.25), negatives=negatives)
    again.setup()
    assert again.rows["negatives"] == negative_rows
    with pytest.raises(ValueError, match="adversarial"):
        AdversarialConfig.parse({"eps": 0})


def test_train_ramiqa_takes_negatives_and_adversarial_options(tmp_path):
    from mlclipsim.cli import main

    make_dataset(tmp_path / "ds")
    export = tmp_path / "out" / "cls.pt"
    fakes = f"[{', '.join(FAKES)}]"
    status = main(["train-ramiqa", "--config", "ra_miqa.yaml", f"data.root={tmp_path / 'ds'}",
                   f"data.cache_dir={tmp_path / 'cache'}", "data.split=[0.5, 0.25, 0.25]", "data.batch_size=4",
                   f"data.negatives={{kinds: [flat_grey, uniform_noise], count: 4, task_models: {fakes}}}",
                   f"model.adversarial={{steps: 1, count: 2, start_epoch: 0, task_models: {fakes}}}",
                   "model.encoder={view_size: 64}", "model.heads=[classification/consistency]", "model.dim=32",
                   "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                   f"trainer.logger.init_args.save_dir={tmp_path / 'runs'}", f"export={export}"])
    assert status == 0
    model = RAMIQAModel.from_file(export)
    assert model.config["bounded"] is True and model.meta["images"]["negatives"] == 4
