"""The imSim recipe (docs/imsim.md): GenerativeGalaxy in the configuration shape imSim uses.

imSim is not on PyPI and needs the LSST stack, so it cannot be installed here; this runs
``examples/imsim_shape.yaml``, a GalSim config of imSim's shape (chromatic galaxies with an SED
and their photon count in the image's bandpass, positions in RA/Dec through a celestial WCS,
photon shooting), and checks what imSim's stamp builder asks of a galaxy: a chromatic object
whose ``calculateFlux(bandpass)`` is its photon count and that can be photon-shot through the
bandpass.
"""

from __future__ import annotations

import copy
from pathlib import Path

import galsim
import galsim.config
import numpy as np
import pytest
import yaml
from astropy.table import Table

import galsim_hub  # noqa: F401  (registers the config types)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def config() -> dict:
    values = yaml.safe_load((EXAMPLES / "imsim_shape.yaml").read_text())
    values["input"]["catalog"]["dir"] = str(EXAMPLES)
    return values


def _expected_photons(catalog: Table, config: dict) -> np.ndarray:
    zero_point = config["gal"]["flux"]["fzero_point"]
    return 10 ** (-0.4 * (np.asarray(catalog["mag_r"]) - zero_point))


@pytest.mark.slow
def test_the_imsim_shaped_field_puts_each_galaxy_at_its_sky_position_with_its_photons(config):
    base = copy.deepcopy(config)
    image = galsim.config.BuildImage(base)
    catalog = Table.read(EXAMPLES / "imsim_catalog.fits")
    photons = _expected_photons(catalog, config)
    # Photon shooting: the total is the catalog's, to its Poisson noise and the light that falls
    # outside the stamps.
    assert image.array.sum() == pytest.approx(photons.sum(), rel=0.02)
    wcs = image.wcs
    y, x = np.mgrid[: image.array.shape[0], : image.array.shape[1]] + 1  # GalSim's 1-based pixels
    for row in catalog:
        position = wcs.toImage(galsim.CelestialCoord(row["ra"] * galsim.degrees, row["dec"] * galsim.degrees))
        near = (np.abs(x - position.x) <= 3) & (np.abs(y - position.y) <= 3)
        weights = image.array * near
        centroid = (np.sum(weights * x) / weights.sum(), np.sum(weights * y) / weights.sum())
        assert centroid == pytest.approx((position.x, position.y), abs=1.0)


@pytest.mark.slow
def test_the_galaxy_is_what_imsims_stamp_builder_asks_for(config):
    base = copy.deepcopy(config)
    galsim.config.BuildImage(base)
    galaxy = base["gal"]["current"][0]  # the last object built
    bandpass = base["bandpass"]
    assert isinstance(galaxy, galsim.ChromaticObject)
    catalog = Table.read(EXAMPLES / "imsim_catalog.fits")
    photons = _expected_photons(catalog, config)[-1]
    # imSim's build_gal: gal.flux = gal.calculateFlux(bandpass); then withFlux(flux, bandpass)
    # and photon shooting through the bandpass with a Poisson number of photons.
    assert galaxy.calculateFlux(bandpass) == pytest.approx(photons, rel=1e-6)
    stamp = galaxy.withFlux(photons, bandpass).drawImage(
        bandpass, nx=64, ny=64, scale=0.2, method="phot", rng=galsim.BaseDeviate(1), n_photons=photons
    )
    assert stamp.array.sum() == pytest.approx(photons, rel=0.05)


def test_the_recipe_page_shows_the_example_and_the_imsim_override():
    page = (DOCS / "imsim.md").read_text(encoding="utf-8")
    example = (EXAMPLES / "imsim_shape.yaml").read_text(encoding="utf-8")
    assert example in page, "docs/imsim.md must show examples/imsim_shape.yaml verbatim"
    # The imSim override file on the page uses the example's gal section unchanged.
    blocks = [yaml.safe_load(b) for b in page.split("```yaml\n")[1:] for b in [b.split("```")[0]]]
    override = next(b for b in blocks if "imsim" in b.get("modules", []))
    assert override["gal"] == yaml.safe_load(example)["gal"]
    assert override["modules"] == ["imsim", "galsim_hub"]
