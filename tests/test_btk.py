"""BlendingToolKit (the real installed package) draws blends with galsim-hub galaxies."""

from __future__ import annotations

from pathlib import Path

import btk  # the real package: part of the test extra
import galsim
import numpy as np
import pytest
from astropy.table import Table
from surveycodex.utilities import mag2counts

from galsim_hub.clients.btk import OBJECT_ID_COLUMN, GalsimHubCatalog, GalsimHubGenerator
from galsim_hub.errors import CatalogError

CATALOG = Path(__file__).resolve().parents[1] / "examples" / "cosmos_catalog.fits"
BANDS = ("u", "g", "r", "i", "z", "y")
#: LSST magnitudes of each galaxy: its F814W mag_auto plus a colour per band.
COLOURS = {"u": 1.2, "g": 0.7, "r": 0.3, "i": 0.0, "z": -0.1, "y": -0.2}


@pytest.fixture(scope="module")
def catalog() -> GalsimHubCatalog:
    table = Table.read(CATALOG)["mag_auto", "flux_radius", "zphot"]
    table = table[(table["mag_auto"] > 20) & (table["mag_auto"] < 23.5)]
    for band in BANDS:
        table[f"LSST_{band}"] = table["mag_auto"] + COLOURS[band]
    return GalsimHubCatalog(table)


@pytest.fixture(scope="module")
def lsst():
    return btk.survey.get_surveys("LSST")


def _generator(catalog, lsst, **kwargs) -> GalsimHubGenerator:
    sampling = btk.sampling_functions.DefaultSampling(
        max_number=3, min_number=2, stamp_size=12.0, max_shift=2.0, mag_name="LSST_i", seed=3
    )
    options = dict(batch_size=3, add_noise="none", seed=7)
    options.update(kwargs)
    return GalsimHubGenerator(catalog, sampling, lsst, model="hub:cosmos_real", **options)


@pytest.mark.slow
def test_blends_in_every_lsst_band_carry_the_catalog_fluxes(catalog, lsst):
    batch = next(_generator(catalog, lsst))
    size = int(12.0 / 0.2)
    assert batch.blend_images.shape == (3, len(BANDS), size, size)
    np.testing.assert_allclose(
        batch.isolated_images.sum(axis=1), batch.blend_images, atol=1e-6 * batch.blend_images.max()
    )
    for blend, isolated in zip(batch.catalog_list, batch.isolated_images):
        assert 2 <= len(blend) <= 3 and OBJECT_ID_COLUMN in blend.colnames
        for i, entry in enumerate(blend):
            for b, band in enumerate(BANDS):
                expected = mag2counts(entry[f"LSST_{band}"], lsst, lsst.get_filter(band)).to_value("electron")
                # The stamp is 12 arcsec: a few percent of a PSF-convolved galaxy may fall outside.
                assert isolated[i, b].sum() == pytest.approx(expected, rel=0.05)


@pytest.mark.slow
def test_every_band_shows_the_same_morphology(catalog, lsst, monkeypatch):
    generator = _generator(catalog, lsst)
    same_psf = galsim.Gaussian(fwhm=0.7)
    monkeypatch.setattr(generator, "_get_psf_from_survey", lambda survey: [same_psf] * len(BANDS))
    batch = next(generator)
    for isolated, blend in zip(batch.isolated_images, batch.catalog_list):
        for i in range(len(blend)):
            shapes = isolated[i] / isolated[i].sum(axis=(1, 2), keepdims=True)
            np.testing.assert_allclose(shapes, np.broadcast_to(shapes[3], shapes.shape), atol=1e-6 * shapes.max())
    # ... and different galaxies look different (one morphology per object, not one per batch).
    first, second = batch.isolated_images[0, 0, 3], batch.isolated_images[0, 1, 3]
    assert not np.allclose(first / first.sum(), second / second.sum(), atol=1e-3 * (first / first.sum()).max())


@pytest.mark.slow
def test_the_same_seed_gives_the_same_blends_whatever_the_jobs(catalog, lsst):
    one = next(_generator(catalog, lsst, add_noise="all"))
    again = next(_generator(catalog, lsst, add_noise="all"))
    other = next(_generator(catalog, lsst, add_noise="all", seed=8))
    np.testing.assert_array_equal(one.blend_images, again.blend_images)
    assert not np.array_equal(one.blend_images, other.blend_images)
    # The morphologies are decoded before BTK splits a batch among its jobs (BTK's own noise
    # seeds depend on the split, so this compares noise-free blends).
    clean = next(_generator(catalog, lsst))
    three_jobs = next(_generator(catalog, lsst, njobs=3))
    np.testing.assert_array_equal(clean.blend_images, three_jobs.blend_images)


def test_missing_columns_are_named(lsst):
    table = Table({"mag_auto": [22.0], "flux_radius": [8.0], "redshift": [0.5], "LSST_i": [22.0]})
    sampling = btk.sampling_functions.DefaultSampling(max_number=1, mag_name="LSST_i")
    with pytest.raises(CatalogError, match=r"no column 'zphot', 'LSST_u', 'LSST_g'.*conditions=\{"):
        GalsimHubGenerator(GalsimHubCatalog(table), sampling, lsst, model="hub:cosmos_real")
