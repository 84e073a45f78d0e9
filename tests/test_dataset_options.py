"""Data-engine options for more reliable labels: independent draws, crops at several scales, more codec
types, more classification voters."""

import numpy as np
import pytest
from PIL import Image

from mlclipsim.data.plan import DistortionSpec, plan_distortions
from mlclipsim.data.references import reference_crops
from mlclipsim.distortions import distort, get_distortion, list_distortions, psnr
from mlclipsim.machine.registry import list_task_models


def test_draws_add_seeds_of_the_stochastic_types_only():
    types = ["snow", "contrast", "gaussian_noise"]
    one = plan_distortions("ref", types, region_pairs=1, with_regions=True, seed=0)
    two = plan_distortions("ref", types, region_pairs=1, with_regions=True, seed=0, draws=2)
    assert two[:len(one)] == one                                       # draws=1 is the plan of earlier builds
    extra = two[len(one):]
    assert {s.distortion for s in extra} == {"snow", "gaussian_noise"}   # contrast is deterministic
    assert len(extra) == 2 * 5 and all(s.draw == 1 and s.mode == "uniform" for s in extra)
    assert DistortionSpec("snow", "uniform", 3, 3, 1).key == "snow_uniform_r3b3_d1"
    assert DistortionSpec("snow", "uniform", 3, 3).key == "snow_uniform_r3b3"
    assert len({s.key for s in two}) == len(two)
    assert len(plan_distortions("ref", types, draws=3, with_regions=False)) == 15 + 2 * 2 * 5
    with pytest.raises(ValueError, match="draws"):
        plan_distortions("ref", types, draws=0)


def test_crops_at_two_scales(tmp_path):
    rng = np.random.default_rng(0)
    photo = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 255, (1000, 1600, 3), dtype=np.uint8)).save(photo)
    default = reference_crops(photo, crops_per_image=3, size=256)
    assert [c.reference_id for c in default] == ["wide", "wide__c1", "wide__c2"]
    two = reference_crops(photo, crops_per_image=3, size=256, crop_scales=(2.0, 5.0))
    np.testing.assert_array_equal(two[1].image, default[1].image)        # scale 2 as before
    assert two[2].image.shape == (256, 256, 3) and not np.array_equal(two[2].image, default[2].image)
    assert {c.photo for c in two} == {"wide"} and [c.crop for c in two] == [0, 1, 2]
    small = tmp_path / "square.png"
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(small)
    assert [c.crop for c in reference_crops(small, crops_per_image=3, size=256)] == [0]   # would repeat crop 0
    with pytest.raises(ValueError, match="crop_scales"):
        reference_crops(photo, crops_per_image=2, crop_scales=(0.5,))


@pytest.mark.parametrize("name", ["avif_quality", "jxl_quality"])
def test_more_codec_types(name):
    if name not in list_distortions():
        pytest.skip(f"{name}: this Pillow cannot write the format")
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float32)
    image = np.clip(np.stack([xx / 95, yy / 63, 0.5 + 0.3 * np.sin(xx / 4)], 2)
                    + 0.05 * rng.normal(size=(64, 96, 3)), 0, 1).astype(np.float32)
    values = [psnr(distort(image, name, s), image) for s in range(1, 6)]
    assert values[0] > values[-1] and not get_distortion(name).stochastic
    assert get_distortion(name).integer_param


def test_lite_classifiers_are_registered_voters():
    assert {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"} <= set(list_task_models("classification"))


def test_build_writes_soft_labels_and_draws(tmp_path, shared_dir):
    from mlclipsim.core.images import read_image_array
    from mlclipsim.data.build_dataset import BuildConfig, build_dataset
    from mlclipsim.data.manifest import read_rows

    folder = tmp_path / "photos"
    folder.mkdir()
    with Image.open(shared_dir / "data" / "images" / "skimage_astronaut.png") as image:
        image.convert("RGB").resize((240, 200)).save(folder / "astronaut.png")
    out = tmp_path / "ds"
    build_dataset(BuildConfig(images=folder, out=out, task_models=("nanodet", "selfie"),
                              distortions=("gaussian_noise", "defocus_blur"), region_pairs=0, size=160,
                              crops_per_image=2, crop_scales=(1.25,), draws=2, batch_size=8))
    rows = read_rows(out / "manifest.csv")
    assert {r["reference_id"] for r in rows} == {"astronaut", "astronaut__c1"}
    assert len(rows) == 2 * (10 + 5)                                  # 5 more: the second draw of the noise
    for row in rows:
        for key in ("soft/nanodet", "soft/selfie", "mmos_soft/detection", "mmos_soft/segmentation", "mmos_soft"):
            assert 0.0 <= row[key] <= 1.0
    second = [r for r in rows if int(r["draw"]) == 1]
    assert {r["distortion"] for r in second} == {"gaussian_noise"} and len(second) == 10
    first = {(r["reference_id"], r["roi_severity"]): r for r in rows
             if r["distortion"] == "gaussian_noise" and int(r["draw"]) == 0}
    for r in second:
        twin = first[(r["reference_id"], r["roi_severity"])]
        assert not np.array_equal(read_image_array(out / r["distorted_path"]),
                                  read_image_array(out / twin["distorted_path"]))     # another seed
        assert r["psnr"] == pytest.approx(twin["psnr"], abs=0.3)                      # same severity


def test_a_finished_build_resumes_into_more_draws(tmp_path, shared_dir):
    from mlclipsim.data.build_dataset import BuildConfig, build_dataset
    from mlclipsim.data.manifest import read_rows

    folder = tmp_path / "photos"
    folder.mkdir()
    with Image.open(shared_dir / "data" / "images" / "skimage_astronaut.png") as image:
        image.convert("RGB").resize((160, 128)).save(folder / "astronaut.png")
    settings = dict(images=folder, out=tmp_path / "ds", task_models=("selfie",), distortions=("gaussian_noise",),
                    region_pairs=0, size=128)
    build_dataset(BuildConfig(**settings))
    assert build_dataset(BuildConfig(**settings))["photos_processed_this_run"] == 0
    summary = build_dataset(BuildConfig(**settings, draws=2))
    assert summary["photos_processed_this_run"] == 1 and summary["rows"] == 10
    assert sorted(int(r["draw"]) for r in read_rows(tmp_path / "ds" / "manifest.csv")) == [0] * 5 + [1] * 5


def test_person_models_vote_only_where_a_detector_finds_a_person(tmp_path, shared_dir):
    from mlclipsim.data.build_dataset import BuildConfig, build_dataset
    from mlclipsim.data.manifest import read_rows

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("skimage_astronaut.png", "skimage_coffee.png"):
        with Image.open(shared_dir / "data" / "images" / name) as image:
            image.convert("RGB").resize((192, 160)).save(folder / name)
    build_dataset(BuildConfig(images=folder, out=tmp_path / "ds", task_models=("centernet", "selfie", "meet"),
                              person_models=("meet",), distortions=("defocus_blur",), region_pairs=0, size=160))
    rows = read_rows(tmp_path / "ds" / "manifest.csv")
    for row in rows:
        seg = [row["consistency/selfie"]] + ([row["consistency/meet"]] if row["photo"] == "skimage_astronaut" else [])
        soft = [row["soft/selfie"]] + ([row["soft/meet"]] if row["photo"] == "skimage_astronaut" else [])
        assert row["mmos/segmentation"] == pytest.approx(np.mean(seg), abs=1e-5)
        assert row["mmos_soft/segmentation"] == pytest.approx(np.mean(soft), abs=1e-5)
        assert 0 <= row["consistency/meet"] <= 1                      # written everywhere
    assert {r["photo"] for r in rows} == {"skimage_astronaut", "skimage_coffee"}
    with pytest.raises(ValueError, match="votes everywhere"):
        BuildConfig(images=folder, out=tmp_path / "x", task_models=("centernet", "meet"), person_models=("meet",))
