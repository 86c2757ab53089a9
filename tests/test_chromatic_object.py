"""The chromatic object of multi-band galaxies (``MultiBandGalaxy``, ``BandSet``): exact in every
training band, linear in wavelength between them, flat beyond them."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from toy_models import TOY_BANDS, toy_bands_metadata

from galsim_hub.profiles.bands import BandSet, MultiBandGalaxy

SCALE = 0.2
DRAW = dict(nx=48, ny=48, scale=SCALE)


def lsst_band_set() -> BandSet:
    return BandSet(toy_bands_metadata())


def galaxy_from_profiles(band_set: BandSet, profiles) -> MultiBandGalaxy:
    """A MultiBandGalaxy whose band stamps are the given profiles drawn at 0.2"/px."""
    arrays = np.stack([p.drawImage(nx=32, ny=32, scale=SCALE, method="no_pixel").array for p in profiles], axis=-1)
    images = [
        galsim.InterpolatedImage(galsim.Image(np.ascontiguousarray(arrays[..., b]), scale=SCALE))
        for b in range(arrays.shape[-1])
    ]
    return MultiBandGalaxy(band_set, images, arrays)


def colourful_galaxy(band_set: BandSet) -> MultiBandGalaxy:
    """Bluer bands larger and fainter, one band off-centre: a galaxy with colour gradients."""
    return galaxy_from_profiles(
        band_set,
        [
            galsim.Exponential(half_light_radius=0.9, flux=60.0),
            galsim.Sersic(n=2.0, half_light_radius=0.7, flux=100.0),
            galsim.Gaussian(sigma=0.4, flux=130.0).shift(0.2, -0.1),
        ],
    )


# -- the chromatic object -----------------------------------------------------------------------


def test_chromatic_object_reproduces_every_training_band():
    band_set = lsst_band_set()
    galaxy = colourful_galaxy(band_set)
    for name in TOY_BANDS:
        bandpass = band_set.bandpasses[name]
        drawn = galaxy.chromatic.drawImage(bandpass, **DRAW).array
        expected = galaxy.images[name].drawImage(**DRAW).array
        np.testing.assert_allclose(drawn, expected, rtol=1e-5, atol=1e-6 * expected.max())
        through = galaxy.through(bandpass).drawImage(**DRAW).array
        np.testing.assert_allclose(through, expected, rtol=1e-5, atol=1e-6 * expected.max())


def test_chromatic_object_interpolates_between_bands_and_extrapolates_flat():
    band_set = lsst_band_set()
    galaxy = colourful_galaxy(band_set)
    between = galsim.Bandpass(galsim.LookupTable([520.0, 560.0, 600.0], [0.0, 1.0, 0.0], "linear"), "nm")
    drawn = galaxy.chromatic.drawImage(between, **DRAW).array
    np.testing.assert_allclose(
        drawn, galaxy.through(between).drawImage(**DRAW).array, rtol=1e-5, atol=1e-6 * drawn.max()
    )
    assert drawn.sum() > 0
    # Far red of the reddest band the galaxy is its reddest profile J_B, flat in wavelength: two
    # equal-area top hats at 1500 and 3000 nm see the same image.
    red = [galsim.Bandpass(galsim.LookupTable([w - 50, w + 50], [1.0, 1.0], "linear"), "nm") for w in (1500, 3000)]
    far, farther = (galaxy.chromatic.drawImage(b, **DRAW).array for b in red)
    np.testing.assert_allclose(far, farther, rtol=1e-5, atol=1e-6 * far.max())
    # GalSim's own interpolation cannot draw through the outer training bands.
    interpolated = galsim.InterpolatedChromaticObject.from_images(
        [galsim.Image(np.ascontiguousarray(galaxy.arrays[..., b]), scale=SCALE) for b in range(3)],
        list(band_set.wavelengths),
    ) * galsim.SED("1", "nm", "fphotons")
    with pytest.raises(galsim.GalSimRangeError):
        interpolated.drawImage(band_set.bandpasses["g"], **DRAW)


def test_flat_spectrum_galaxy_is_flat_at_every_wavelength():
    band_set = lsst_band_set()
    profile = galsim.Sersic(n=1.5, half_light_radius=0.6, flux=1.0)
    throughputs = [galsim.SED("1", "nm", "fphotons").calculateFlux(band_set.bandpasses[n]) for n in TOY_BANDS]
    galaxy = galaxy_from_profiles(band_set, [profile * t for t in throughputs])
    reference = galaxy.images["r"].drawImage(**DRAW).array / throughputs[1]
    for bandpass in (
        galsim.Bandpass("LSST_u.dat", "nm"),
        galsim.Bandpass("LSST_y.dat", "nm"),
        galsim.Bandpass(galsim.LookupTable([520.0, 600.0], [1.0, 1.0], "linear"), "nm"),
    ):
        expected = reference * galsim.SED("1", "nm", "fphotons").calculateFlux(bandpass)
        drawn = galaxy.chromatic.drawImage(bandpass, **DRAW).array
        np.testing.assert_allclose(drawn, expected, rtol=1e-4, atol=1e-5 * expected.max())


def test_throughput_table_bands_are_reproduced():
    bands = [
        {
            "name": "blue",
            "effective_wavelength": 450.0,
            "zero_point": 28.0,
            "bandpass": [[380.0, 0.0], [400.0, 0.8], [500.0, 0.8], [520.0, 0.0]],
        },
        {
            "name": "red",
            "effective_wavelength": 600.0,
            "zero_point": 28.0,
            "bandpass": [[500.0, 0.0], [520.0, 0.5], [680.0, 0.9], [700.0, 0.0]],
        },
    ]
    band_set = BandSet(bands)
    galaxy = galaxy_from_profiles(
        band_set, [galsim.Gaussian(sigma=0.5, flux=2.0), galsim.Gaussian(sigma=0.3, flux=5.0)]
    )
    for name in band_set.names:
        drawn = galaxy.chromatic.drawImage(band_set.bandpasses[name], **DRAW).array
        np.testing.assert_allclose(drawn, galaxy[name].drawImage(**DRAW).array, rtol=1e-5, atol=1e-6 * drawn.max())


def test_one_band_and_mismatched_galaxies():
    band_set = BandSet(toy_bands_metadata()[1:2])
    galaxy = galaxy_from_profiles(band_set, [galsim.Exponential(half_light_radius=0.5, flux=3.0)])
    drawn = galaxy.chromatic.drawImage(band_set.bandpasses["r"], **DRAW).array
    np.testing.assert_allclose(drawn, galaxy["r"].drawImage(**DRAW).array, rtol=1e-5, atol=1e-6 * drawn.max())
    with pytest.raises(ValueError, match=r"needs 3 images and stamps"):
        MultiBandGalaxy(lsst_band_set(), list(galaxy.images.values()), galaxy.arrays)
    import galsim_hub

    assert galsim_hub.MultiBandGalaxy is MultiBandGalaxy
