"""Region weighting of ML-CLIPSim: placement of masks on token grids, effect, gradients, caching, errors."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_RESNET, TINY_VIT, random_images, tiny_encoder

from mlclipsim import MLCLIPSim, MLCLIPSimLoss, ml_clipsim
from mlclipsim.backbones import create_backbone
from mlclipsim.metrics import MLCLIPSimScorer
from mlclipsim.metrics.functional.region_weights import (
    RegionWeighting,
    deepest_layer,
    token_grid,
    view_geometry,
)


def box_mask(n: int, size: tuple[int, int], box: tuple[int, int, int, int]) -> torch.Tensor:
    """(N,1,H,W) mask, 1 inside ``box`` = (top, left, bottom, right)."""
    mask = torch.zeros(n, 1, *size)
    top, left, bottom, right = box
    mask[..., top:bottom, left:right] = 1.0
    return mask


def noisy(image: torch.Tensor, where: torch.Tensor, strength: float = 0.25, seed: int = 0) -> torch.Tensor:
    """Gaussian noise where ``where`` (N,1,H,W) is 1."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(image.shape, generator=generator)
    return (image + strength * noise * where).clamp(0, 1)


@pytest.fixture(scope="module")
def mobilenet_native():
    return create_backbone("torchvision/mobilenet_v2", resize="native")


# ----------------------------------------------------------------------------- geometry


def test_token_grid_picks_the_factorisation_with_the_views_aspect():
    assert token_grid(49, 224, 224) == (7, 7)
    assert token_grid(20, 100, 150) == (4, 5)
    assert token_grid(20, 150, 100) == (5, 4)
    assert token_grid(7, 224, 32) == (7, 1)


def test_grids_match_the_real_feature_maps_at_native_size(mobilenet_native):
    """For every MobileNetV2 layer at a non-square native size, the grid is the feature map's own h x w."""
    from mlclipsim.metrics.functional.region_weights import _layer_grids

    image = random_images(1, (72, 120))
    captured = {}
    modules = dict(mobilenet_native.network.named_modules())
    handles = [modules[name].register_forward_hook(
        lambda _m, _i, out, key=name: captured.__setitem__(key, tuple(out.shape[-2:])))
        for name in mobilenet_native.layer_names]
    try:
        with torch.no_grad():
            features = mobilenet_native(image, mobilenet_native.layer_names)
    finally:
        for handle in handles:
            handle.remove()
    views, prefix, grids = _layer_grids(mobilenet_native, features.tokens, mobilenet_native.layer_names, (72, 120))
    assert (views, prefix) == (1, 0)
    assert grids == captured


@pytest.mark.parametrize("resize,views", [("resize", 1), ("center_crop", 1), ("tile", 4), ("native", 1)])
def test_view_geometry_follows_the_resize_policy(resize, views):
    encoder = create_backbone("torchvision/mobilenet_v2", pretrained="random", resize=resize)
    count, height, width = view_geometry(encoder, (300, 400))
    assert count == views
    assert (height, width) == ((300, 400) if resize == "native" else (224, 224))


def test_mask_lands_where_the_encoder_looks_with_center_crop_and_tiles():
    """A mask on a strip that center_crop cuts away weighs nothing extra; with tiles it weighs its own tiles."""
    size = (64, 128)
    mask = box_mask(1, size, (0, 0, 64, 16))  # left strip, outside the central 64x64 crop
    crop = MLCLIPSimScorer(tiny_encoder(TINY_VIT, resize="center_crop"), region_weights="mask", region_alpha=0.2)
    features = crop.reference_features(random_images(1, size), mask=mask)
    for weights in features.token_weights.values():
        assert torch.allclose(weights, torch.ones_like(weights))  # nothing of the mask is seen: uniform
    tiles = MLCLIPSimScorer(tiny_encoder(TINY_VIT, resize="tile"), region_weights="mask", region_alpha=0.2)
    features = tiles.reference_features(random_images(1, size), mask=mask)
    layer = tiles.layers[0]
    weights = features.token_weights[layer].reshape(2, 4, 4)  # 2 tiles of 4x4 patches (64 px, patch 16)
    assert torch.all(weights[0, :, 0] > weights[0, :, 1])  # the first tile's first patch column holds the strip
    assert torch.allclose(weights[1], weights[1, 0, 0].expand(4, 4))  # the second tile is background only


def test_class_token_is_excluded_from_weighting():
    encoder = tiny_encoder(TINY_VIT, include_class_token=True)
    scorer = MLCLIPSimScorer(encoder, region_weights="mask", region_alpha=0.1)
    mask = box_mask(2, (64, 64), (0, 0, 32, 32))
    features = scorer.reference_features(random_images(2, (64, 64)), mask=mask)
    for weights in features.token_weights.values():
        assert weights.shape == (2, 17)
        assert torch.all(weights[:, 0] == 1.0)  # the class token keeps weight 1
        assert torch.allclose(weights[:, 1:].mean(dim=1), torch.ones(2))  # spatial tokens: mean 1
        assert torch.all(weights[:, 1] > weights[:, 16])  # top-left patch (in the mask) above bottom-right


# ----------------------------------------------------------------------------- effect


@pytest.mark.parametrize("resize", ["resize", "native"])
def test_damage_inside_the_mask_costs_more_and_outside_less_than_unweighted(astronaut, resize):
    encoder = create_backbone("torchvision/mobilenet_v2", resize=resize)
    plain = MLCLIPSimScorer(encoder)
    weighted = MLCLIPSimScorer(encoder, region_weights="mask", region_alpha=0.2)
    mask = box_mask(1, (256, 256), (32, 64, 160, 192))
    inside, outside = noisy(astronaut, mask), noisy(astronaut, 1 - mask)
    batch, reference = torch.cat([inside, outside]), astronaut.expand(2, -1, -1, -1)
    with torch.no_grad():
        unweighted_scores = plain(batch, reference)
        weighted_scores = weighted(batch, reference, mask=mask.expand(2, -1, -1, -1))
    assert weighted_scores[0] < unweighted_scores[0] - 1e-3
    assert weighted_scores[1] > unweighted_scores[1] + 1e-3


@pytest.mark.parametrize("name,resize", [(TINY_VIT, "resize"), (TINY_VIT, "center_crop"), (TINY_VIT, "tile"),
                                         (TINY_RESNET, "resize")])
def test_damage_inside_the_mask_costs_more_on_tiny_open_clip_models(name, resize):
    encoder = tiny_encoder(name, resize=resize)
    reference = random_images(1, (64, 96), seed=3)
    mask = box_mask(1, (64, 96), (0, 16, 32, 64))
    batch = torch.cat([noisy(reference, mask), noisy(reference, 1 - mask)])
    reference = reference.expand(2, -1, -1, -1)
    with torch.no_grad():
        plain = MLCLIPSimScorer(encoder)(batch, reference)
        weighted = MLCLIPSimScorer(encoder, region_weights="mask", region_alpha=0.2)(
            batch, reference, mask=mask.expand(2, -1, -1, -1))
    assert weighted[0] < plain[0] and weighted[1] > plain[1]


@pytest.mark.parametrize("value", [0.0, 0.3, 1.0])
def test_a_uniform_mask_or_alpha_one_is_the_unweighted_score(mobilenet_native, astronaut, value):
    reference = torch.nn.functional.interpolate(astronaut, size=(96, 96), antialias=True, mode="bilinear")
    distorted = noisy(reference, torch.ones(1, 1, 96, 96), 0.1)
    with torch.no_grad():
        plain = MLCLIPSimScorer(mobilenet_native)(distorted, reference)
        uniform = MLCLIPSimScorer(mobilenet_native, region_weights="mask", region_alpha=0.3)(
            distorted, reference, mask=torch.full((1, 96, 96), value))
        alpha_one = MLCLIPSimScorer(mobilenet_native, region_weights="mask", region_alpha=1.0)(
            distorted, reference, mask=box_mask(1, (96, 96), (0, 0, 40, 40)))
    assert torch.allclose(uniform, plain, atol=1e-6)
    assert torch.allclose(alpha_one, plain, atol=1e-6)


@pytest.mark.parametrize("region", ["mask", "saliency"])
def test_identical_images_score_one(mobilenet, astronaut, region):
    options = {"mask": box_mask(1, (256, 256), (0, 0, 64, 64))} if region == "mask" else {}
    score = ml_clipsim(astronaut, astronaut.clone(), backbone=mobilenet, region_weights=region, **options)
    assert score.item() == pytest.approx(1.0, abs=1e-6)


def test_saliency_finds_an_object_on_a_flat_background(mobilenet, astronaut):
    """Real MobileNetV2: the saliency of a photo patch pasted on flat grey is higher on the patch."""
    canvas = torch.full((1, 3, 224, 224), 0.5)
    canvas[..., 64:160, 64:160] = torch.nn.functional.interpolate(astronaut[..., 0:128, 64:192], size=(96, 96))
    scorer = MLCLIPSimScorer(mobilenet, region_weights="saliency", region_alpha=0.1)
    weights = scorer.reference_features(canvas).token_weights
    for layer, w in weights.items():
        side = int(w.shape[1] ** 0.5)
        grid = w.reshape(side, side)
        lo, hi = round(side * 64 / 224), round(side * 160 / 224)
        inside = grid[lo:hi, lo:hi].mean()
        outside = (grid.sum() - grid[lo:hi, lo:hi].sum()) / (grid.numel() - grid[lo:hi, lo:hi].numel())
        assert inside > 1.5 * outside, layer
    # the source of the saliency is the deepest compared layer
    assert deepest_layer(mobilenet, scorer.layers) == max(scorer.layers, key=mobilenet.layer_names.index)


@pytest.mark.parametrize("name,options", [(TINY_VIT, {}), (TINY_VIT, {"include_class_token": True}),
                                          (TINY_VIT, {"resize": "tile"}), (TINY_RESNET, {})])
def test_saliency_runs_on_tiny_encoders(name, options):
    encoder = tiny_encoder(name, **options)
    reference = random_images(2, (64, 80), seed=1)
    distorted = noisy(reference, torch.ones(2, 1, 64, 80), 0.1)
    scorer = MLCLIPSimScorer(encoder, region_weights="saliency")
    scores = scorer(distorted, reference)
    assert scores.shape == (2,) and torch.all((scores > 0) & (scores < 1))
    assert torch.allclose(scorer(reference, reference.clone()), torch.ones(2), atol=1e-6)
    features = scorer.reference_features(reference)
    for layer, weights in features.token_weights.items():
        assert weights.shape == features.features.tokens[layer].shape[:2]
        assert torch.isfinite(weights).all() and torch.all(weights > 0)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("region", ["mask", "saliency"])
@pytest.mark.parametrize("name", [TINY_VIT, "mobilenet"])
def test_gradients_reach_the_image_and_are_finite(region, name, mobilenet_native):
    encoder = mobilenet_native if name == "mobilenet" else tiny_encoder(name, include_class_token=True)
    loss_fn = MLCLIPSimLoss(encoder, region_weights=region, region_alpha=0.2)
    reference = random_images(2, (72, 88), seed=1)
    options = {"mask": box_mask(2, (72, 88), (0, 0, 40, 40))} if region == "mask" else {}
    for start in (noisy(reference, torch.ones(2, 1, 72, 88), 0.2), reference.clone()):  # incl. identical images
        x_hat = start.clone().requires_grad_()
        loss_fn(x_hat, reference, **options).backward()
        assert x_hat.grad is not None and torch.isfinite(x_hat.grad).all()


def test_zero_mask_gives_finite_gradients_and_the_unweighted_value(mobilenet_native):
    mobilenet = mobilenet_native
    reference = random_images(1, (64, 64), seed=2)
    x_hat = noisy(reference, torch.ones(1, 1, 64, 64), 0.2).requires_grad_()
    loss = MLCLIPSimLoss(mobilenet, region_weights="mask", region_alpha=0.05)(x_hat, reference,
                                                                            mask=torch.zeros(1, 64, 64))
    loss.backward()
    assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    assert loss.item() == pytest.approx(MLCLIPSimLoss(mobilenet)(x_hat, reference).item(), abs=1e-6)


# ----------------------------------------------------------------------------- metric, loss, cache


def test_metric_with_masks_accumulates_the_per_image_scores():
    encoder = tiny_encoder(TINY_VIT)
    metric = MLCLIPSim(encoder, region_weights="mask", region_alpha=0.3)
    scorer = MLCLIPSimScorer(encoder, region_weights="mask", region_alpha=0.3)
    references = [random_images(2, (64, 64), seed=s) for s in (1, 2)]
    masks = [box_mask(2, (64, 64), (0, 0, 32, 48)), box_mask(2, (64, 64), (16, 16, 64, 64))]
    distorted = [noisy(r, torch.ones(2, 1, 64, 64), 0.2, seed=i) for i, r in enumerate(references)]
    value = metric(distorted[0], references[0], mask=masks[0])  # forward: batch value, accumulates
    metric.update(distorted[1], references[1], mask=masks[1])
    expected = torch.cat([scorer(d, r, mask=m) for d, r, m in zip(distorted, references, masks)])
    assert value.item() == pytest.approx(expected[:2].mean().item(), abs=1e-6)
    assert metric.compute().item() == pytest.approx(expected.mean().item(), abs=1e-6)
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):  # as torchmetrics: a warning and NaN
        assert torch.isnan(metric.compute())


@pytest.mark.parametrize("region", ["mask", "saliency"])
def test_loss_reductions_and_cached_reference_features_agree(mobilenet_native, region):
    mobilenet = mobilenet_native
    reference = random_images(3, (64, 64), seed=4)
    mask = box_mask(3, (64, 64), (8, 8, 40, 56))
    options = {"mask": mask} if region == "mask" else {}
    distorted = noisy(reference, torch.ones(3, 1, 64, 64), 0.15)
    loss_none = MLCLIPSimLoss(mobilenet, region_weights=region, reduction="none")
    per_image = loss_none(distorted, reference, **options)
    assert per_image.shape == (3,)
    for reduction, expected in (("mean", per_image.mean()), ("sum", per_image.sum())):
        value = MLCLIPSimLoss(mobilenet, region_weights=region, reduction=reduction)(distorted, reference, **options)
        assert value.item() == pytest.approx(expected.item(), abs=1e-5)
    features = loss_none.reference_features(reference, **options)  # the mask travels with the features
    assert features.token_weights is not None
    assert torch.allclose(loss_none(distorted, features), per_image, atol=1e-6)
    assert torch.allclose(loss_none(distorted[1:], features.select(slice(1, 3))), per_image[1:], atol=1e-6)
    one = loss_none.reference_features(reference[:1], **({"mask": mask[:1]} if options else {}))
    repeated = loss_none(distorted[:1].expand(2, -1, -1, -1), one.expand(2))
    assert torch.allclose(repeated, per_image[:1].expand(2), atol=1e-6)


def test_mask_may_come_with_the_call_when_the_features_were_cached_without_it():
    scorer = MLCLIPSimScorer(tiny_encoder(TINY_RESNET), region_weights="mask")
    reference = random_images(2, (64, 64), seed=5)
    distorted = noisy(reference, torch.ones(2, 1, 64, 64), 0.15)
    mask = box_mask(2, (64, 64), (0, 0, 32, 32))
    features = scorer.reference_features(reference)
    assert features.token_weights is None
    assert torch.allclose(scorer(distorted, features, mask=mask), scorer(distorted, reference, mask=mask), atol=1e-6)
    with pytest.raises(ValueError, match="needs a mask"):
        scorer(distorted, features)
    with pytest.raises(ValueError, match="already carry region weights"):
        scorer(distorted, scorer.reference_features(reference, mask=mask), mask=mask)


def test_features_of_another_region_configuration_are_refused():
    mobilenet = tiny_encoder(TINY_VIT)
    reference = random_images(1, (64, 64))
    plain = MLCLIPSimScorer(mobilenet)
    salient = MLCLIPSimScorer(mobilenet, region_weights="saliency")
    with pytest.raises(ValueError, match="another ML-CLIPSim configuration"):
        salient(reference, plain.reference_features(reference))
    with pytest.raises(ValueError, match="another ML-CLIPSim configuration"):
        plain(reference, salient.reference_features(reference))


# ----------------------------------------------------------------------------- errors


MASK_ERRORS = [
    (lambda: [[0.0]], TypeError, "torch.Tensor"),
    (lambda: torch.zeros(2, 1, 64, 64, dtype=torch.uint8), TypeError, "integer dtype"),
    (lambda: torch.zeros(2, 3, 64, 64), ValueError, "amax"),
    (lambda: torch.zeros(64, 64), ValueError, r"\(N,1,H,W\)"),
    (lambda: torch.zeros(1, 1, 64, 64), ValueError, "one mask per reference"),
    (lambda: torch.zeros(2, 1, 32, 32), ValueError, "interpolate"),
    (lambda: torch.full((2, 1, 64, 64), 255.0), ValueError, "divide by 255"),
    (lambda: torch.full((2, 1, 64, 64), -0.5), ValueError, r"values in \[0,1\]"),
    (lambda: torch.full((2, 1, 64, 64), float("nan")), ValueError, "NaN"),
]


@pytest.mark.parametrize("make,error,hint", MASK_ERRORS)
def test_bad_masks_raise_clear_errors(make, error, hint):
    scorer = MLCLIPSimScorer(tiny_encoder(TINY_VIT), region_weights="mask")
    images = random_images(2, (64, 64))
    with pytest.raises(error, match=hint):
        scorer(images, images, mask=make())
    with pytest.raises(error, match=hint):
        scorer.reference_features(images, mask=make())


def test_bool_and_three_dimensional_masks_are_accepted():
    scorer = MLCLIPSimScorer(tiny_encoder(TINY_VIT), region_weights="mask")
    reference = random_images(2, (64, 64))
    distorted = noisy(reference, torch.ones(2, 1, 64, 64), 0.1)
    as_float = box_mask(2, (64, 64), (0, 0, 32, 32))
    expected = scorer(distorted, reference, mask=as_float)
    assert torch.allclose(scorer(distorted, reference, mask=as_float[:, 0] > 0.5), expected)


def test_misuse_of_the_options_raises_clear_errors():
    encoder = tiny_encoder(TINY_VIT)
    images = random_images(1, (64, 64))
    with pytest.raises(ValueError, match="needs a mask"):
        MLCLIPSimScorer(encoder, region_weights="mask")(images, images)
    with pytest.raises(ValueError, match="does not weight regions"):
        MLCLIPSimScorer(encoder)(images, images, mask=torch.ones(1, 64, 64))
    with pytest.raises(ValueError, match="do not pass a mask"):
        MLCLIPSimScorer(encoder, region_weights="saliency")(images, images, mask=torch.ones(1, 64, 64))
    with pytest.raises(ValueError, match="Unknown region_weights 'boxes'"):
        MLCLIPSim(encoder, region_weights="boxes")
    for alpha in (0.0, 1.5, -0.1, "0.5", True):
        with pytest.raises(ValueError, match=r"region_alpha must be a number in \(0, 1\]"):
            RegionWeighting.create("mask", alpha)
    with pytest.raises(ValueError, match="region_weights is None"):
        MLCLIPSimLoss(encoder, region_alpha=0.5)
    with pytest.raises(ValueError, match="global embedding only"):
        MLCLIPSimScorer(encoder, layers=[], weights={"embedding": 1.0}, region_weights="saliency")


# ----------------------------------------------------------------------------- benchmark helper


def test_dataset_decomposition_equals_the_library_for_any_alpha(tmp_path, mobilenet_native):
    """region_components + region_weighted_scores (the benchmark's alpha sweep) give the library's scores."""
    import numpy as np
    from PIL import Image

    from mlclipsim.data.region_scores import reference_roi_mask, region_components, region_weighted_scores
    from mlclipsim.machine.predictions import Detections, save_predictions

    reference = random_images(1, (64, 96), seed=7)
    to_png = lambda t: Image.fromarray((t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))  # noqa: E731
    (tmp_path / "references").mkdir()
    (tmp_path / "images" / "ref").mkdir(parents=True)
    to_png(reference).save(tmp_path / "references" / "ref.png")
    boxes = Detections(boxes=np.array([[8.0, 4.0, 40.0, 36.0]]), scores=np.array([0.9]), labels=np.array([0]))
    save_predictions(tmp_path / "predictions" / "det" / "ref" / "reference.npz", boxes)
    paths = []
    for i, strength in enumerate((0.05, 0.2)):
        path = f"images/ref/d{i}.png"
        to_png(noisy(reference, torch.ones(1, 1, 64, 96), strength, seed=i)).save(tmp_path / path)
        paths.append(path)
    mask = reference_roi_mask(tmp_path, "ref", ["det"], 64, 96)
    assert mask.sum() == 32 * 32 and mask[4:36, 8:40].all()
    plain = MLCLIPSimScorer(mobilenet_native)
    components = region_components(tmp_path, plain, ["det"], [(p, "references/ref.png") for p in paths], "region")
    assert (tmp_path / "scores" / "region.npz").is_file()
    from mlclipsim.core.images import read_image

    reference_read = read_image(tmp_path / "references" / "ref.png")[None]
    distorted = torch.stack([read_image(tmp_path / p) for p in paths])
    weights = plain.layer_weights.numpy()
    for source in ("mask", "saliency"):
        for alpha in (0.1, 0.5, 1.0):
            scores = region_weighted_scores(components, source, len(plain.layers), weights, alpha)
            library = MLCLIPSimScorer(mobilenet_native, region_weights=source, region_alpha=alpha)
            options = {"mask": torch.from_numpy(mask)[None].expand(2, -1, -1)} if source == "mask" else {}
            with torch.no_grad():
                expected = library(distorted, reference_read.expand(2, -1, -1, -1), **options)
            assert np.allclose([scores[p] for p in paths], expected.numpy(), atol=1e-5), (source, alpha)
