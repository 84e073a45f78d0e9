"""The one registry helper (mlclipsim.core.registry) and the six registries built on it."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from mlclipsim.core.registry import ENTRY_POINT_GROUPS, Registry, UnknownNameError


def _fake_distribution(root, module: str, entry_points: dict[str, dict[str, str]], source: str) -> None:
    """Write ``module.py`` and a ``fake-plugin-1.0.dist-info`` next to it: an installed-looking package."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / "fake_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 1.0\n")
    lines = []
    for group, points in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def test_register_lookup_listing_and_overwrite_rule():
    reg: Registry = Registry("widget")
    assert reg.register("b", len, description="counts") is len
    reg.register("a", sum)
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and len(reg) == 2
    assert "a" in reg and "c" not in reg and ["unhashable"] not in reg
    assert reg["b"] is len and reg.get("b").description == "counts"
    assert reg.describe() == {"a": "", "b": "counts"}
    with pytest.raises(ValueError, match="widget named 'a' is already registered; pass overwrite=True"):
        reg.register("a", max)
    assert reg["a"] is sum
    reg.register("a", max, overwrite=True, colour="red")
    assert reg["a"] is max and reg.get("a").metadata == {"colour": "red"}
    del reg["a"]
    assert reg.names() == ["b"]
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("", min)


def test_unknown_names_list_the_valid_ones_and_suggest_the_closest():
    reg: Registry = Registry("distortion")
    for name in ("gaussian_noise", "gaussian_blur", "fog"):
        reg.register(name, object())
    with pytest.raises(UnknownNameError, match="Unknown distortion 'gausian_noise'; valid names: fog, gaussian_blur, "
                                               "gaussian_noise. Did you mean 'gaussian_noise'"):
        reg.get("gausian_noise")
    with pytest.raises(ValueError) as err:  # a ValueError, as the hand-written registries raised
        reg["snow"]
    assert "Did you mean" not in str(err.value)
    custom = reg.unknown("fgo", "No {kind} {name!r}; choose one of {quoted}.")
    assert str(custom) == "No distortion 'fgo'; choose one of 'fog', 'gaussian_blur', 'gaussian_noise'. " \
                          "Did you mean 'fog'?"


def test_entry_points_of_an_installed_distribution_register_on_first_lookup(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "fake_registry_plugin", {"mlclipsim.test_widgets": {
        "plugged": "fake_registry_plugin:make",
        "broken": "fake_registry_plugin:does_not_exist",
    }}, '''
        def make(size=1):
            """A widget from an installed plugin.

            More text.
            """
            return ["widget"] * size
    ''')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_registry_plugin", raising=False)
    reg: Registry = Registry("widget", group="mlclipsim.test_widgets")
    reg.register("built-in", list)
    assert "fake_registry_plugin" not in sys.modules  # nothing loads before the first lookup
    with pytest.warns(RuntimeWarning, match="Skipped the widget entry point 'broken'.*fake-plugin"):
        names = reg.names()
    assert names == ["built-in", "plugged"]
    assert reg["plugged"](size=2) == ["widget", "widget"]
    assert reg.get("plugged").description == "A widget from an installed plugin."


def test_the_six_registries_read_their_entry_point_groups():
    from mlclipsim.backbones.registry import BACKBONES
    from mlclipsim.coding.interface import CODEC_MODIFIERS, CODECS
    from mlclipsim.distortions.registry import DISTORTIONS
    from mlclipsim.machine.registry import TASK_MODELS
    from mlclipsim.metrics.baselines import BASELINES
    from mlclipsim.training.distortion_terms import DISTORTION_TERMS

    for registry in (BACKBONES, TASK_MODELS, DISTORTIONS, CODECS, CODEC_MODIFIERS, DISTORTION_TERMS, BASELINES):
        assert isinstance(registry, Registry)
        assert registry.group == ENTRY_POINT_GROUPS[registry.kind]
    assert sorted(ENTRY_POINT_GROUPS.values())[:2] == ["mlclipsim.backbones", "mlclipsim.baselines"]


def test_a_plugin_adds_a_codec_a_distortion_and_a_term_by_installing_itself(tmp_path, monkeypatch):
    from mlclipsim.coding.interface import CODECS, create_codec, list_codecs
    from mlclipsim.distortions.registry import DISTORTIONS, distort, list_distortions
    from mlclipsim.training.distortion_terms import DISTORTION_TERMS, build_terms, list_terms

    _fake_distribution(tmp_path, "fake_codec_plugin", {
        "mlclipsim.codecs": {"fake-jpeg": "fake_codec_plugin:fake_jpeg", "bad@name": "fake_codec_plugin:fake_jpeg"},
        "mlclipsim.distortions": {"invert": "fake_codec_plugin:INVERT"},
        "mlclipsim.loss_terms": {"l1": "fake_codec_plugin:L1Term"},
    }, '''
        from mlclipsim.coding.pillow_codecs import PillowCodec
        from mlclipsim.distortions.registry import Distortion
        from mlclipsim.training.distortion_terms import DistortionTerm


        def fake_jpeg(qualities=(50,)):
            """JPEG under another name."""
            return PillowCodec("jpeg", qualities)


        INVERT = Distortion("invert", lambda image, p, rng: 1 - p * image, (0.1, 0.2, 0.3, 0.4, 0.5), "fraction")


        class L1Term(DistortionTerm):
            def forward(self, preds, target):
                return (preds - target).abs().mean()

            def distortion(self, raw):
                return raw
    ''')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_codec_plugin", raising=False)
    for registry in (CODECS, DISTORTIONS, DISTORTION_TERMS):  # as in a fresh process: plugins not read yet
        monkeypatch.setattr(registry, "_plugins_loaded", False)
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    with pytest.warns(RuntimeWarning, match="codec entry point 'bad@name'.*without '@'"):
        assert "fake-jpeg" in list_codecs()
    import torch

    coded = create_codec("fake-jpeg").code(torch.full((1, 3, 16, 16), 0.5), 50)
    assert coded.bits[0] > 0 and coded.files[0][:2] == b"\xff\xd8"  # a JPEG file
    assert CODECS.get("fake-jpeg").description == "JPEG under another name."
    assert "invert" in list_distortions()
    np.testing.assert_allclose(distort(np.full((4, 4, 3), 0.5, np.float32), "invert", 1), 0.95, rtol=1e-6)
    assert "l1" in list_terms()
    (term,) = build_terms(["l1"])
    assert float(term(torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))) == 1.0
