"""Upstream galsim_hub's documented Python usage (its demo notebook's steps) runs on a bundled model.

The steps, in upstream's spelling: load a model by handle, read ``quantities``, ``pixel_size`` and
``stamp_size``, sample a catalog built with ``Table([...columns], names=[...])`` without an rng,
convolve each profile with a PSF, draw it and add COSMOS noise. Upstream's ``hub:Lanusse2020``
cannot be downloaded here; the bundled ``hub:cosmos_real`` takes the same three columns.
"""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from astropy.table import Table

import galsim_hub


@pytest.mark.slow
def test_the_upstream_demo_steps_run_on_a_bundled_model():
    model = galsim_hub.GenerativeGalaxyModel("hub:cosmos_real")
    assert sorted(model.quantities) == ["flux_radius", "mag_auto", "zphot"]
    assert model.pixel_size == model.pixel_scale and model.stamp_size == 64
    catalog = Table(
        [[5.0, 10.0, 20.0], [24.0, 24.0, 24.0], [0.5, 0.5, 0.5]], names=["flux_radius", "mag_auto", "zphot"]
    )
    profiles = model.sample(catalog)  # no rng: new galaxies each time, as upstream
    assert len(profiles) == 3 and all(isinstance(p, galsim.InterpolatedImage) for p in profiles)
    psf = galsim.Gaussian(fwhm=0.06)
    noise = galsim.getCOSMOSNoise()
    for profile in profiles:
        image = galsim.Convolve(profile, psf).drawImage(nx=96, ny=96, scale=0.03)
        clean = image.array.copy()
        image.addNoise(noise)
        assert np.isfinite(image.array).all() and not np.array_equal(image.array, clean)
        assert clean.sum() > 0
