"""No postage-stamp edge survives in a real COSMOS training example (tests/data's real galaxies).

COSMOS stamps carry a sky offset and bright galaxies' stamps are cut on their wings; padded with
zero-mean noise, the original stamp shows as a faint square that a model then learns (the
pedestals of hub:cosmos_real 1.0). The data-set builder subtracts the sky and tapers the edge.
"""

from pathlib import Path

import numpy as np
import pytest

from galsim_hub.training.datasets import cosmos, stamps

DATA = Path(__file__).parent / "data"
CATALOG = {"dir": str(DATA / "cosmos_23.5_example"), "file": "real_galaxy_catalog_23.5_example.fits"}
STAMP = 160  # 0.03" pixels: larger than every stamp of the subset, so padding surrounds each one


def _galaxies():
    return cosmos._select_galaxies(
        [cosmos.CatalogSpec.from_any(CATALOG)], ("mag_auto", "flux_radius", "zphot"), None, None
    )


def _ring_pixels(image, shape, d):
    """The one-pixel ring of ``image`` at ``d`` pixels inside the original stamp's edge (negative:
    outside it); GalSim centres the stamp on the drawn one."""
    ny, nx = shape
    oy, ox = (image.shape[0] - ny) // 2, (image.shape[1] - nx) // 2
    y0, y1, x0, x1 = oy + d, oy + ny - 1 - d, ox + d, ox + nx - 1 - d
    return np.concatenate(
        [image[y0, x0 : x1 + 1], image[y1, x0 : x1 + 1], image[y0 + 1 : y1, x0], image[y0 + 1 : y1, x1]]
    )


def _rings(image, shape, depths):
    """Mean of each ring at ``depths`` (see :func:`_ring_pixels`) and the number of pixels in each."""
    rings = [_ring_pixels(image, shape, d) for d in depths]
    return np.array([r.mean() for r in rings]), np.array([r.size for r in rings])


def test_stamp_background_is_the_clipped_border_level():
    """The sky estimate of catalogs without NOISE_MEAN."""
    rng = np.random.default_rng(0)
    stamp = rng.normal(0.5, 0.1, (40, 50))
    stamp[15:25, 15:35] += 50.0  # a galaxy far from the border does not count
    stamp[0, :10] += 30.0  # nor does a neighbour crossing the border
    assert stamps.stamp_background(stamp) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="border"):
        stamps.stamp_background(np.zeros((3, 3)))


def test_padding_matches_the_original_stamps_border_on_real_galaxies():
    """Mean of the padding = mean of the original stamp's border, within the noise."""
    galaxies = _galaxies()
    checked = 0
    for galaxy in galaxies:
        shape = galaxy.cosmos.getRealParams(galaxy.index)[0].array.shape
        if max(shape) > STAMP - 24:
            continue
        example = cosmos._draw_example(galaxy, 0, False, (0.0, 0.0), STAMP, 0.03, 1234, False)
        image = example["image"]
        border, n_border = _rings(image, shape, [0, 1])
        padding, n_padding = _rings(image, shape, [-8, -7, -6, -5, -4, -3])
        # Standard error of a mean over correlated noise: the scatter of the padding's 8x8
        # block means (corner blocks, far from every stamp) scaled to each region's size.
        corner = image[:40, :40]
        block_means = corner.reshape(5, 8, 5, 8).mean(axis=(1, 3)).ravel()
        per_pixel = block_means.std() * 8.0
        error = np.hypot(per_pixel / np.sqrt(n_border.sum()), per_pixel / np.sqrt(n_padding.sum()))
        difference = np.average(border, weights=n_border) - np.average(padding, weights=n_padding)
        assert abs(difference) < 3 * error, (galaxy.ident, difference, error)
        checked += 1
    assert checked >= 8


def test_stamp_is_cleaned_before_padding():
    """The sky (NOISE_MEAN) is subtracted and only the edge is tapered: the inner profile stays."""
    galaxy = _galaxies()[0]
    raw = galaxy.cosmos.getRealParams(galaxy.index)[0].array
    assert galaxy.noise_mean is not None
    example = cosmos._draw_example(galaxy, 0, False, (0.0, 0.0), STAMP, 0.03, 7, False)
    assert example["background"] == pytest.approx(galaxy.noise_mean)
    clean = stamps.clean_stamp(raw, galaxy.noise_mean)
    inner = (slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(clean[inner], raw[inner] - galaxy.noise_mean)
    assert np.all(clean[0] == 0) and np.all(clean[:, -1] == 0)


def test_edge_taper_rises_from_zero_to_one():
    window = stamps.edge_taper((40, 60), 8)
    assert window[0].max() == 0 and window[20, 30] == 1 and window[8, 30] == 1
    assert 0 < window[4, 30] < 1 and np.all(np.diff(window[:9, 30]) > 0)
    assert stamps.edge_taper((12, 12), 8)[3, 6] == 1  # narrower on small stamps (a quarter of the side)


def test_noise_keeps_its_level_under_the_taper():
    """The noise taken away by the taper is given back: no ring of quieter pixels at the edge."""
    spec = {
        "dir": str(DATA / "cosmos_btk100"),
        "file": "real_galaxy_catalog_26_extension_example.fits",
        "exclusion_level": "none",
    }
    galaxies = cosmos._select_galaxies(
        [cosmos.CatalogSpec.from_any(spec)], ("mag_auto", "flux_radius", "zphot"), None, None
    )
    ratios = []
    for galaxy in galaxies:
        shape = galaxy.cosmos.getRealParams(galaxy.index)[0].array.shape
        if max(shape) > STAMP - 24 or min(shape) < 22:
            continue
        image = cosmos._draw_example(galaxy, 0, False, (0.0, 0.0), STAMP, 0.03, 99, False)["image"]
        under_taper = np.concatenate([_ring_pixels(image, shape, d) for d in (1, 2, 3, 4)])
        padding = image[:30, :30].ravel()
        ratios.append(under_taper.std() / padding.std())
    assert len(ratios) >= 4
    assert 0.85 < np.median(ratios) < 1.15
