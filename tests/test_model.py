"""GenerativeGalaxyModel end to end on toy models built by the real exporter."""

import json
import shutil
import subprocess
import sys
import tarfile
import warnings

import galsim
import numpy as np
import pytest
from astropy.table import Table
from toy_models import ZERO_POINT, build_tf1_hub_module

import galsim_hub
from galsim_hub import CatalogError, MetadataError
from galsim_hub.model import GenerativeGalaxyModel
from galsim_hub.sampling.catalog import OutOfRangeWarning


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GALSIM_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GALSIM_HUB_INDEX", raising=False)
    monkeypatch.delenv("GALSIM_HUB_OFFLINE", raising=False)


def catalog(n, seed=0):
    rng = np.random.default_rng(seed)
    return Table({"mag_auto": rng.uniform(20.5, 24.5, n), "flux_radius": rng.uniform(2.0, 4.0, n)})


def test_import_does_not_import_tensorflow():
    code = "import sys, galsim_hub; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_properties(toy):
    assert toy.quantities == ["mag_auto", "flux_radius"]
    assert toy.stamp_size == 32
    assert toy.pixel_scale == pytest.approx(0.03)
    assert toy.latent_dim == 4
    assert toy.metadata["name"] == "toy"
    assert toy.device.endswith("CPU:0")


def test_objects_have_the_catalog_flux_and_size(toy):
    cat = catalog(5)
    galaxies = toy.sample(cat, seed=3)
    assert len(galaxies) == 5
    for galaxy, row in zip(galaxies, cat):
        assert isinstance(galaxy, galsim.InterpolatedImage)
        expected_flux = 10 ** (-0.4 * (row["mag_auto"] - ZERO_POINT))
        assert galaxy.flux == pytest.approx(expected_flux, rel=0.1)
        hlr = galaxy.calculateHLR(size=256, scale=0.03 / 4)
        assert hlr == pytest.approx(row["flux_radius"] * 0.03, rel=0.1)


def test_arrays_are_non_negative_float32(toy):
    images = toy.sample(catalog(6), seed=1, return_arrays=True)
    assert images.shape == (6, 32, 32) and images.dtype == np.float32
    assert np.all(images >= 0) and np.all(np.isfinite(images))


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_same_seed_same_galaxies_whatever_the_batch_size(toy_dir, batch_size):
    cat = catalog(20)
    reference = GenerativeGalaxyModel(toy_dir, batch_size=20).sample(cat, seed=11, return_arrays=True)
    images = GenerativeGalaxyModel(toy_dir, batch_size=batch_size).sample(cat, seed=11, return_arrays=True)
    # Same base noise per galaxy; vectorised CPU kernels may round the last float32 bit
    # differently for another batch shape, nothing more.
    np.testing.assert_allclose(images, reference, rtol=2e-6, atol=1e-6 * reference.max())


def test_seed_and_rng_control_the_noise(toy):
    cat = catalog(4)
    a = toy.sample(cat, seed=5, return_arrays=True)
    b = toy.sample(cat, rng=galsim.BaseDeviate(5), return_arrays=True)
    c = toy.sample(cat, seed=6, return_arrays=True)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    rng = galsim.BaseDeviate(9)
    first = toy.sample(cat, rng=rng, return_arrays=True)
    second = toy.sample(cat, rng=rng, return_arrays=True)
    assert not np.allclose(first, second), "the rng state must advance"
    with pytest.raises(ValueError, match="either rng or seed"):
        toy.sample(cat, rng=rng, seed=1)
    with pytest.raises(ValueError, match="seed=0 makes GalSim draw a random seed"):
        toy.sample(cat, seed=0)


def test_iter_sample_streams_the_same_images(toy_dir):
    model = GenerativeGalaxyModel(toy_dir, batch_size=3)
    cat = catalog(8)
    batches = list(model.iter_sample(cat, seed=2))
    assert [len(b) for b in batches] == [3, 3, 2]
    np.testing.assert_array_equal(np.concatenate(batches), model.sample(cat, seed=2, return_arrays=True))


def test_drawn_with_a_psf_and_shear_conserves_flux(toy):
    galaxy = toy.sample(catalog(1), seed=4)[0]
    psf = galsim.Kolmogorov(fwhm=0.7)
    final = galsim.Convolve(galaxy.shear(g1=0.05, g2=-0.02), psf)
    image = final.drawImage(nx=64, ny=64, scale=0.2)
    assert image.array.sum() == pytest.approx(galaxy.flux, rel=0.02)
    moments = image.FindAdaptiveMom()
    assert moments.moments_sigma * 0.2 > 0.7 / 2.355  # at least the PSF's size


def test_dict_and_structured_array_catalogs(toy):
    cat = catalog(3)
    from_table = toy.sample(cat, seed=1, return_arrays=True)
    from_dict = toy.sample({name: np.asarray(cat[name]) for name in cat.colnames}, seed=1, return_arrays=True)
    from_struct = toy.sample(cat.as_array(), seed=1, return_arrays=True)
    np.testing.assert_array_equal(from_table, from_dict)
    np.testing.assert_array_equal(from_table, from_struct)


def test_missing_column_is_named(toy):
    with pytest.raises(CatalogError, match="flux_radius"):
        toy.sample(Table({"mag_auto": [22.0]}), seed=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_column_and_row(toy, bad):
    cat = catalog(4)
    cat["flux_radius"][2] = bad
    with pytest.raises(CatalogError, match=r"'flux_radius'.*rows 2"):
        toy.sample(cat, seed=1)


def test_non_numeric_masked_and_empty_catalogs(toy):
    with pytest.raises(CatalogError, match="not numeric"):
        toy.sample({"mag_auto": np.array(["a"]), "flux_radius": np.array([2.0])}, seed=1)
    masked = Table({"mag_auto": [22.0, 23.0], "flux_radius": [2.0, 3.0]}, masked=True)
    masked["mag_auto"].mask[1] = True
    with pytest.raises(CatalogError, match=r"masked.*rows 1"):
        toy.sample(masked, seed=1)
    with pytest.raises(CatalogError, match="empty"):
        toy.sample(Table({"mag_auto": [], "flux_radius": []}), seed=1)


def test_out_of_range_values_warn(toy):
    cat = Table({"mag_auto": [22.0, 27.5], "flux_radius": [2.0, 3.0]})
    with pytest.warns(OutOfRangeWarning, match=r"'mag_auto'.*\[20, 25\].*rows 1"):
        toy.sample(cat, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        toy.sample(catalog(3), seed=1)


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        GenerativeGalaxyModel("unused", batch_size=0)


def test_directory_without_metadata(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetadataError, match="not a galsim-hub model"):
        GenerativeGalaxyModel(tmp_path / "empty")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.pop("pixel_scale"), "pixel_scale"),
        (lambda m: m.update(stamp_size=64), "stamp_size 64"),
        (lambda m: m.update(latent_dim=8), "latent_dim 8"),
        (lambda m: m["conditions"][1].update(name="hlr"), "do not match the model inputs"),
        (lambda m: m["conditions"][0].update(min=30.0), "min 30.0 > max"),
        (lambda m: m.update(format=7), "format 7"),
    ],
)
def test_inconsistent_metadata(toy_dir, tmp_path, change, message):
    broken = shutil.copytree(toy_dir, tmp_path / "broken")
    metadata = json.loads((broken / "galsim_hub.json").read_text())
    change(metadata)
    (broken / "galsim_hub.json").write_text(json.dumps(metadata))
    with pytest.raises(MetadataError, match=message):
        GenerativeGalaxyModel(broken)


def test_corrupt_metadata_json(toy_dir, tmp_path):
    broken = shutil.copytree(toy_dir, tmp_path / "broken")
    (broken / "galsim_hub.json").write_text("{not json")
    with pytest.raises(MetadataError, match="not valid JSON"):
        GenerativeGalaxyModel(broken)


@pytest.fixture(scope="module")
def tf1_dir(tmp_path_factory):
    return build_tf1_hub_module(tmp_path_factory.mktemp("tf1") / "module")


def test_tf1_hub_module_directory(tf1_dir):
    model = GenerativeGalaxyModel(tf1_dir)
    assert sorted(model.quantities) == ["flux_radius", "mag_auto", "zphot"]
    assert model.stamp_size == 32 and model.pixel_scale == 0.03 and model.latent_dim == 16
    cat = Table({"mag_auto": [21.0, 23.0], "flux_radius": [3.0, 2.0], "zphot": [0.5, 1.0]})
    galaxies = model.sample(cat, seed=1)
    assert galaxies[0].flux == pytest.approx(10 ** (-0.4 * (21.0 - ZERO_POINT)), rel=0.1)
    assert galaxies[1].flux == pytest.approx(10 ** (-0.4 * (23.0 - ZERO_POINT)), rel=0.1)


def test_tf1_hub_archive_from_an_index_entry(tf1_dir, tmp_path, monkeypatch):
    archive = tmp_path / "hub" / "upstream" / "model.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(tf1_dir.rglob("*")):
            tar.add(item, arcname=str(item.relative_to(tf1_dir)), recursive=False)
    conditions = [
        {"name": "mag_auto", "unit": "mag", "description": "", "min": 18.0, "max": 25.2},
        {"name": "flux_radius", "unit": "pixel", "description": "", "min": 1.0, "max": 10.0},
        {"name": "zphot", "unit": "", "description": "", "min": 0.0, "max": 6.0},
    ]
    index = {
        "format": 1,
        "models": [
            {
                "name": "Upstream",
                "version": "1.0",
                "format": "tf1-hub",
                "path": "upstream/model.tar.gz",
                "metadata": {
                    "stamp_size": 32,
                    "pixel_scale": 0.03,
                    "latent_dim": 16,
                    "flux_units": "e-/s",
                    "zero_point": ZERO_POINT,
                    "conditions": conditions,
                },
            }
        ],
    }
    (tmp_path / "hub" / "index.json").write_text(json.dumps(index))
    monkeypatch.setenv("GALSIM_HUB_INDEX", str(tmp_path / "hub" / "index.json"))
    model = GenerativeGalaxyModel("hub:Upstream")
    assert model.metadata["conditions"][0]["max"] == 25.2
    with pytest.warns(OutOfRangeWarning, match="zphot"):
        model.sample(Table({"mag_auto": [22.0], "flux_radius": [3.0], "zphot": [7.0]}), seed=1)


def test_public_namespace():
    assert galsim_hub.GenerativeGalaxyModel is GenerativeGalaxyModel
    assert galsim_hub.OutOfRangeWarning is OutOfRangeWarning
    with pytest.raises(AttributeError):
        _ = galsim_hub.NoSuchThing


@pytest.mark.parametrize("pad_factor, x_interpolant", [(4, None), (2, "lanczos5"), (6, "cubic")])
def test_batched_maxk_equals_galsims_own(toy, pad_factor, x_interpolant):
    images = toy.sample(catalog(6), seed=2, return_arrays=True)
    fast = toy.interpolated_images(images, x_interpolant=x_interpolant, pad_factor=pad_factor)
    for image, galaxy in zip(images, fast):
        reference = toy.interpolated_image(image, x_interpolant=x_interpolant, pad_factor=pad_factor)
        assert galaxy.maxk == reference.maxk and galaxy.stepk == reference.stepk
        drawn = galaxy.drawImage(nx=48, ny=48, scale=0.02).array
        np.testing.assert_array_equal(drawn, reference.drawImage(nx=48, ny=48, scale=0.02).array)
