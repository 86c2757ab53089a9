"""Real galaxies beyond the training range of the bundled model: the ``out_of_range`` policy.

The rows are real COSMOS galaxies of GalSim's ``real_galaxy_catalog_23.5_example`` (IDENT,
MAG_AUTO, FLUX_RADIUS in 0.03" pixels, ZPHOT; values copied from
``real_galaxy_catalog_23.5_example_fits.fits``), chosen among the 66 of its 100 galaxies with
``flux_radius > 13`` or ``mag_auto < 20``, outside the range of ``hub:synthetic_bdk`` (mag_auto
[20.0, 25.2], flux_radius [2.3, 12.8]): those whose extrapolated stamp was worst (flux up to
1e5 times the catalog's, up to 31% of it in the outer 4 pixels) and all those brighter than 20.
"""

from __future__ import annotations

import warnings

import galsim
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import galsim_hub  # noqa: F401  (registers the config types)
from galsim_hub.cli import main
from galsim_hub.errors import CatalogError
from galsim_hub.model import GenerativeGalaxyModel
from galsim_hub.sampling.catalog import OutOfRangeWarning
from galsim_hub.sampling.fluxes import magnitude_to_flux
from galsim_hub.sampling.plan import BORDER_FRACTION, border_fractions

ZERO_POINT = 25.94  # F814W AB zero point of the model's flux units (its metadata)
BEYOND = [  # IDENT, mag_auto, flux_radius [px], zphot
    (11001, 22.0454, 23.3936, 0.7568),
    (11415, 19.9165, 13.7601, 0.3973),
    (102338, 20.3905, 19.0494, 0.3590),
    (103726, 20.9892, 20.2837, 0.2297),
    (108277, 18.4987, 45.9158, 0.2300),
    (108837, 20.1098, 32.2891, 0.0497),
    (109544, 19.9580, 35.0513, 0.6004),
    (109987, 20.1086, 29.5025, 0.3319),
    (110070, 19.0902, 12.9813, 0.2113),
    (110113, 18.2578, 44.7653, 0.3463),
    (111341, 18.3214, 19.5212, 0.1674),
    (113149, 21.0394, 29.4179, 0.7369),
    (114235, 18.3005, 28.0370, 0.3092),
    (114596, 16.9174, 44.0661, 0.1223),
    (116045, 19.7715, 25.7403, 0.4600),
    (116448, 19.8538, 25.5898, 0.5808),
    (116515, 19.6219, 51.0250, 0.3094),
    (116766, 17.0865, 56.2742, 0.1101),
    (117257, 20.4207, 20.7954, 0.5127),
]
WITHIN = [  # real galaxies of the same catalog inside the range
    (101215, 22.1875, 11.0514, 0.3217),
    (101644, 22.4282, 11.8289, 0.8162),
    (101774, 22.0061, 9.5037, 0.6407),
    (101989, 21.5481, 12.7033, 0.5679),
]
SEED = 1


def table(rows) -> Table:
    ident, mag, radius, zphot = (np.array(column) for column in zip(*rows))
    return Table({"ident": ident, "mag_auto": mag, "flux_radius": radius, "zphot": zphot})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The bundled model's own offline cache for the whole module."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("cache")
        patch.setenv("GALSIM_HUB_CACHE", str(path))
        patch.setenv("GALSIM_HUB_OFFLINE", "1")
        patch.delenv("GALSIM_HUB_INDEX", raising=False)
        yield path


@pytest.fixture(scope="module")
def model(cache):
    return GenerativeGalaxyModel("hub:synthetic_bdk")


def catalog_flux(cat) -> np.ndarray:
    return magnitude_to_flux(cat["mag_auto"], ZERO_POINT)


def assert_sane(images: np.ndarray, flux: np.ndarray) -> None:
    assert np.isfinite(images).all()
    assert images.min() >= 0
    np.testing.assert_allclose(images.sum(axis=(1, 2), dtype=np.float64), flux, rtol=0.01)
    assert border_fractions(images).max() <= BORDER_FRACTION


def test_extrapolating_the_real_rows_gives_broken_stamps(model):
    """The failure the default policy prevents, on these very rows."""
    cat = table(BEYOND)
    with pytest.warns(OutOfRangeWarning, match="the model extrapolates there"):
        images = model.sample(cat, seed=SEED, return_arrays=True, out_of_range="extrapolate")
    ratio = images.sum(axis=(1, 2), dtype=np.float64) / catalog_flux(cat)
    assert ratio.max() > 10  # many times the catalog flux
    assert border_fractions(images).max() > 2 * BORDER_FRACTION  # stamp-filling


def test_clip_gives_the_catalog_flux_and_compact_stamps(model):
    cat = table(BEYOND)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = model.sample(cat, seed=SEED, return_arrays=True)  # out_of_range="clip" by default
    messages = [str(w.message) for w in caught if issubclass(w.category, OutOfRangeWarning)]
    assert len(messages) == 1, messages
    n_radius = int((cat["flux_radius"] > 12.8).sum())
    n_mag = int((cat["mag_auto"] < 20.0).sum())
    assert f"{len(cat)} of {len(cat)} rows" in messages[0]
    assert f"'flux_radius' {n_radius} value(s)" in messages[0] and f"'mag_auto' {n_mag} value(s)" in messages[0]
    assert "clipped" in messages[0] and "zero point 25.94" in messages[0]
    assert_sane(images, catalog_flux(cat))


def test_clip_leaves_rows_inside_the_range_alone(model):
    cat = table(WITHIN + BEYOND[:3])
    with pytest.warns(OutOfRangeWarning):
        clipped = model.sample(cat, seed=SEED, return_arrays=True)
        extrapolated = model.sample(cat, seed=SEED, return_arrays=True, out_of_range="extrapolate")
    inside = len(WITHIN)
    np.testing.assert_array_equal(clipped[:inside], extrapolated[:inside])
    assert_sane(clipped[inside:], catalog_flux(cat[inside:]))


def test_error_names_columns_and_rows(model):
    cat = table(WITHIN[:1] + BEYOND[:2])
    with pytest.raises(
        CatalogError,
        match=r"2 of 3 rows .*'mag_auto' 1 value\(s\) outside .* \(rows 2\); 'flux_radius' 2 value\(s\) outside .* \(rows 1, 2\)",
    ):
        model.sample(cat, seed=SEED, out_of_range="error")
    with pytest.raises(ValueError, match="out_of_range must be one of 'clip', 'error', 'extrapolate'"):
        model.sample(cat, seed=SEED, out_of_range="wrap")


def test_iter_sample_and_galsim_objects_follow_the_policy(model):
    cat = table(BEYOND[:6])
    with pytest.warns(OutOfRangeWarning):
        arrays = model.sample(cat, seed=SEED, return_arrays=True)
    small = GenerativeGalaxyModel("hub:synthetic_bdk", batch_size=4)
    with pytest.warns(OutOfRangeWarning):
        batches = np.concatenate(list(small.iter_sample(cat, seed=SEED)))
    np.testing.assert_allclose(batches, arrays, rtol=1e-4, atol=1e-6 * arrays.max())
    with pytest.warns(OutOfRangeWarning):
        galaxies = model.sample(cat, seed=SEED)
    np.testing.assert_allclose([g.flux for g in galaxies], catalog_flux(cat), rtol=0.01)
    drawn = galaxies[0].drawImage(nx=64, ny=64, scale=0.03, method="no_pixel")
    assert np.isfinite(drawn.array).all()


@pytest.mark.slow
def test_config_clips_by_default_and_refuses_on_request(model, tmp_path):
    path = tmp_path / "real.fits"
    cat = table(BEYOND[:4])
    cat.write(path)
    config = {
        "modules": ["galsim_hub"],
        "input": {
            "catalog": {"file_name": str(path)},
            "generative_model": {"file_name": "hub:synthetic_bdk", "batch_size": 4},
        },
        "gal": {
            "type": "GenerativeGalaxy",
            **{name: {"type": "Catalog", "col": name} for name in ("mag_auto", "flux_radius", "zphot")},
        },
        "image": {
            "type": "Tiled",
            "nx_tiles": 4,
            "ny_tiles": 1,
            "stamp_size": 64,
            "pixel_scale": 0.03,
            "random_seed": 11,
            "draw_method": "no_pixel",
        },
    }
    with pytest.warns(OutOfRangeWarning, match=r"GenerativeGalaxy: 4 of 4 objects .*clipped"):
        image = galsim.config.BuildImage(galsim.config.CopyConfig(config)).array
    stamps = image.reshape(64, 4, 64).transpose(1, 0, 2)
    assert_sane(stamps, catalog_flux(cat))
    config["gal"]["out_of_range"] = "error"
    with pytest.raises(CatalogError, match=r"'mag_auto' 1 value\(s\) outside .* \(objects 1\); 'flux_radius' 4"):
        galsim.config.BuildImage(galsim.config.CopyConfig(config))
    config["gal"]["out_of_range"] = "wrap"
    with pytest.raises(galsim.GalSimConfigValueError, match="out_of_range must be one of"):
        galsim.config.BuildImage(galsim.config.CopyConfig(config))


def test_cli_clips_by_default(cache, tmp_path):
    path = tmp_path / "real.fits"
    cat = table(BEYOND[:3])
    cat.write(path)
    argv = ["sample", "hub:synthetic_bdk", "--catalog", str(path), "--seed", "3", "--out", str(tmp_path / "clip.fits")]
    with pytest.warns(OutOfRangeWarning, match="clipped"):
        assert main(argv) == 0
    assert_sane(fits.getdata(tmp_path / "clip.fits").astype(np.float64), catalog_flux(cat))
