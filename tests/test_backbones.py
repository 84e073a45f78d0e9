"""Frozen encoders: shapes, freezing, preprocessing policies and weight resolution."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_RESNET, TINY_VIT, random_images, tiny_encoder

from mlclipsim.backbones import (
    MissingWeightsError,
    create_backbone,
    list_backbones,
)
from mlclipsim.backbones.preprocessing import resize_center_crop, resize_whole, tile


def test_registry_lists_offline_cnns_and_rejects_unknown_names():
    assert {"torchvision/mobilenet_v2", "efficientnet-lite0"} <= set(list_backbones())
    with pytest.raises(ValueError, match="Registered:.*torchvision/mobilenet_v2"):
        create_backbone("no-such-net", pretrained="random")


@pytest.mark.parametrize("name", [TINY_VIT, TINY_RESNET])
def test_open_clip_towers_return_tokens_per_layer_and_embedding(name):
    encoder = tiny_encoder(name)
    out = encoder(random_images(2, (70, 90)))
    assert set(out.tokens) == set(encoder.default_layers)
    for tokens in out.tokens.values():
        assert tokens.ndim == 3 and tokens.shape[0] == 2
    assert out.embedding.shape == (2, 16)


def test_vit_class_token_is_optional():
    without = tiny_encoder(TINY_VIT)(random_images(1), layers=["blocks.1"]).tokens["blocks.1"]
    with_cls = tiny_encoder(TINY_VIT, include_class_token=True)(random_images(1), layers=["blocks.1"])
    assert without.shape[1] == (64 // 16) ** 2
    assert with_cls.tokens["blocks.1"].shape[1] == without.shape[1] + 1


def test_vit_default_layers_spread_over_depth():
    assert tiny_encoder(TINY_VIT).default_layers == ("blocks.0", "blocks.1", "blocks.2", "blocks.3")


def test_unknown_layer_lists_valid_layers():
    with pytest.raises(ValueError, match="valid layers"):
        tiny_encoder(TINY_VIT)(random_images(1), layers=["blocks.99"])


def test_encoder_is_frozen_and_stays_in_eval_mode_but_passes_gradients():
    encoder = tiny_encoder(TINY_RESNET)
    parent = torch.nn.Sequential(encoder)
    parent.train()
    assert not encoder.training
    assert all(not p.requires_grad for p in encoder.parameters())
    images = random_images(1).requires_grad_()
    encoder(images).embedding.sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_real_mobilenet_layers_and_strides(mobilenet):
    out = mobilenet(random_images(1, (100, 150)))
    assert [t.shape[1] for t in out.tokens.values()] == [56 * 56, 28 * 28, 14 * 14, 7 * 7]
    assert out.embedding.shape == (1, 1280)


def test_real_efficientnet_lite0_loads_offline():
    encoder = create_backbone("efficientnet-lite0")
    out = encoder(random_images(1))
    assert out.embedding.shape == (1, 1280) and len(out.tokens) == 4


def test_resize_policies_shapes_and_tiles_cover_the_image():
    images = random_images(2, (300, 500))
    assert resize_whole(images, 224)[0].shape == (2, 3, 224, 224)
    assert resize_center_crop(images, 224)[0].shape == (2, 3, 224, 224)
    tiles, count = tile(images, 224)
    assert count == 2 * 3 and tiles.shape == (2 * 6, 3, 224, 224)
    # the first tile is the top-left corner, the last the bottom-right corner, at native resolution
    assert torch.equal(tiles[0], images[0, :, :224, :224])
    assert torch.equal(tiles[5], images[0, :, -224:, -224:])


def test_tiled_encoder_concatenates_tokens_of_all_tiles():
    encoder = tiny_encoder(TINY_VIT, resize="tile")
    out = encoder(random_images(2, (64, 128)), layers=["blocks.0"])
    assert out.tokens["blocks.0"].shape[:2] == (2, 2 * 16)
    assert out.embedding.shape == (2, 16)


def test_native_policy_runs_a_cnn_at_the_image_size_and_fixed_size_encoders_refuse_it():
    encoder = create_backbone("torchvision/mobilenet_v2", pretrained="random", resize="native")
    images = random_images(2, (128, 96)).requires_grad_()
    out = encoder(images, layers=["features.3", "features.17"])
    assert out.tokens["features.3"].shape[1] == (128 // 4) * (96 // 4)  # stride 4, no resize to 224
    assert out.tokens["features.17"].shape[1] == (128 // 32) * (96 // 32)
    out.embedding.sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    for name in (TINY_VIT, TINY_RESNET):
        with pytest.raises(ValueError, match="needs a fixed input size.*native"):
            tiny_encoder(name, resize="native")


def test_missing_weights_error_names_all_four_ways(monkeypatch):
    monkeypatch.delenv("MLCLIPSIM_WEIGHTS_DIR", raising=False)
    with pytest.raises(MissingWeightsError) as info:
        create_backbone("torchvision/resnet50")
    message = str(info.value)
    for needle in ("1. an explicit path", "2. $MLCLIPSIM_WEIGHTS_DIR", "3. ", "4. upstream download", "'random'"):
        assert needle in message


def test_open_clip_without_weights_never_falls_back_to_random():
    with pytest.raises(MissingWeightsError, match="ViT-B-32_openai.pt"):
        create_backbone("ViT-B-32", pretrained="openai")
    with pytest.raises(ValueError, match="valid tags"):
        create_backbone("ViT-B-32", pretrained="no-such-tag")


def test_explicit_path_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(MissingWeightsError, match="does not exist"):
        create_backbone("torchvision/mobilenet_v2", pretrained=str(tmp_path / "nope.pth"))


def test_weights_dir_env_var_and_explicit_path_load_the_same_weights(tmp_path, monkeypatch, mobilenet):
    torch.save(mobilenet.network.state_dict(), tmp_path / "mobilenet_v2-b0353104.pth")
    monkeypatch.setenv("MLCLIPSIM_WEIGHTS_DIR", str(tmp_path))
    from_env = create_backbone("torchvision/mobilenet_v2")
    from_path = create_backbone("torchvision/mobilenet_v2", pretrained=str(tmp_path / "mobilenet_v2-b0353104.pth"))
    images = random_images(1)
    reference = mobilenet(images).embedding
    assert torch.allclose(from_env(images).embedding, reference)
    assert torch.allclose(from_path(images).embedding, reference)


def test_explicit_open_clip_checkpoint_path(tmp_path):
    import open_clip

    torch.manual_seed(3)
    model = open_clip.create_model(TINY_VIT)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    encoder = create_backbone(TINY_VIT, pretrained=str(path))
    images = random_images(1)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(encoder(images).embedding, model.encode_image(encoder.preprocess(images)[0]), atol=1e-5)


def test_channels_last_cnn_agrees_with_the_default_layout_and_the_codec_term_uses_it():
    from mlclipsim import MLCLIPSimLoss
    from mlclipsim.training.distortion_terms import build_term

    torch.manual_seed(0)
    reference = torch.rand(2, 3, 64, 64)
    distorted = (reference + 0.1 * torch.randn_like(reference)).clamp(0, 1)
    values, grads = [], []
    for channels_last in (False, True):
        loss = MLCLIPSimLoss("torchvision/mobilenet_v2", resize="native", channels_last=channels_last)
        assert loss.scorer.encoder.channels_last is channels_last
        x = distorted.clone().requires_grad_()
        value = loss(x, loss.reference_features(reference))
        value.backward()
        values.append(float(value))
        grads.append(x.grad)
    assert values[0] == pytest.approx(values[1], abs=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-3)
    term = build_term({"name": "ml-clipsim", "backbone": "torchvision/mobilenet_v2", "resize": "native"})
    assert term.loss.scorer.encoder.channels_last
    kept = build_term({"name": "ml-clipsim", "backbone": "torchvision/mobilenet_v2", "resize": "native",
                       "backbone_options": {"channels_last": False}})
    assert not kept.loss.scorer.encoder.channels_last
