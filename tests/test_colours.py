"""Colour measurements (galsim_hub.training.validation.colours) on analytic multi-band galaxies."""

import galsim
import numpy as np
import pytest
from astropy.table import Table

from galsim_hub.training.validation import colours

BANDS = ("f435w", "f606w", "f814w")
ZERO_POINTS = (25.6739, 26.4955, 25.94)
SCALE = 0.05
STAMP = 64


def _draw(profile, stamp=STAMP, scale=SCALE):
    return profile.drawImage(nx=stamp, ny=stamp, scale=scale, dtype=np.float64).array


def bulge_disc(
    bulge_fluxes=(0.2, 0.7, 1.0), disc_fluxes=(1.0, 1.0, 1.0), bulge_hlr=0.08, disc_hlr=0.35, offset=(0.0, 0.0)
):
    """``[S, S, B]`` stamp of a compact bulge and an exponential disc, with a flux per band each."""
    bulge = galsim.DeVaucouleurs(half_light_radius=bulge_hlr).shift(*offset)
    disc = galsim.Exponential(half_light_radius=disc_hlr).shear(g1=0.2, g2=-0.1).shift(*offset)
    return np.stack(
        [_draw(galsim.Add([bulge.withFlux(fb), disc.withFlux(fd)])) for fb, fd in zip(bulge_fluxes, disc_fluxes)],
        axis=-1,
    )


def _colour(f_blue, f_red, zp_blue, zp_red):
    return (zp_blue - 2.5 * np.log10(f_blue)) - (zp_red - 2.5 * np.log10(f_red))


def test_red_bulge_blue_disc_has_a_positive_gradient_bounded_by_the_components():
    bulge, disc = (0.2, 0.7, 1.0), (1.0, 1.0, 1.0)
    table = colours.measure_colours(bulge_disc(bulge, disc)[None], BANDS, ZERO_POINTS, pixel_scale=SCALE)
    assert table["ok"][0]
    for (blue, red), i in zip(colours.colour_pairs(BANDS), (0, 1)):
        gradient = table[f"grad_{blue}_{red}"][0]
        # Inside is redder (larger colour) than outside, but no redder than a pure bulge is
        # compared with a pure disc.
        span = _colour(bulge[i], bulge[i + 1], ZERO_POINTS[i], ZERO_POINTS[i + 1]) - _colour(
            disc[i], disc[i + 1], ZERO_POINTS[i], ZERO_POINTS[i + 1]
        )
        assert 0.1 < gradient < span
        total = _colour(bulge[i] + disc[i], bulge[i + 1] + disc[i + 1], ZERO_POINTS[i], ZERO_POINTS[i + 1])
        assert table[f"color_{blue}_{red}"][0] == pytest.approx(total, abs=2e-3)
    # The bluer the band, the more of its light is in the extended disc: larger.
    assert table["ratio_f435w"][0] > table["ratio_f606w"][0] > 1.05
    # Swapping the SEDs (blue bulge, red disc) flips the sign.
    swapped = colours.measure_colours(bulge_disc(disc, bulge)[None], BANDS, ZERO_POINTS)
    assert swapped["grad_f435w_f606w"][0] < -0.1 and swapped["grad_f606w_f814w"][0] < -0.1
    assert swapped["ratio_f435w"][0] < 1


def test_gradient_grows_with_the_colour_difference_of_the_components():
    weak = colours.measure_colours(bulge_disc((0.8, 0.95, 1.0))[None], BANDS, ZERO_POINTS)
    strong = colours.measure_colours(bulge_disc((0.2, 0.7, 1.0))[None], BANDS, ZERO_POINTS)
    assert 0 < weak["grad_f435w_f606w"][0] < strong["grad_f435w_f606w"][0]


def test_flat_sed_galaxy_has_zero_gradient_and_size_ratio_one():
    stamp = bulge_disc((0.5, 0.5, 0.5), (1.0, 1.0, 1.0), offset=(0.07, -0.04))
    scaled = stamp * np.array([0.3, 0.8, 1.0])  # same profile, different colours
    table = colours.measure_colours(scaled[None], BANDS, ZERO_POINTS)
    assert abs(table["grad_f435w_f606w"][0]) < 1e-9 and abs(table["grad_f606w_f814w"][0]) < 1e-9
    assert table["ratio_f435w"][0] == pytest.approx(1.0, abs=1e-12)
    assert table["color_f435w_f606w"][0] == pytest.approx(_colour(0.3, 0.8, *ZERO_POINTS[:2]), abs=1e-9)


@pytest.mark.filterwarnings("ignore:You called drawImage with")
def test_colours_match_the_fluxes_and_half_light_radius_matches_galsim():
    profile = galsim.Exponential(half_light_radius=0.3)
    fluxes = np.array([2.0, 5.0, 9.0])
    stamp = np.stack([_draw(profile.withFlux(f)) for f in fluxes], axis=-1)
    table = colours.measure_colours(stamp, BANDS, ZERO_POINTS, pixel_scale=SCALE)
    mags = np.array(ZERO_POINTS) - 2.5 * np.log10(fluxes * stamp[..., 2].sum() / 9.0)
    for b, band in enumerate(BANDS):
        assert table[f"mag_{band}"][0] == pytest.approx(mags[b], abs=1e-9)
    expected = galsim.Convolve(profile, galsim.Pixel(SCALE)).calculateHLR(scale=SCALE / 8, size=STAMP * 8)
    assert table["hlr_f814w"][0] == pytest.approx(expected, rel=0.02)
    # Pixels as units, and the magnitudes of a single stamp.
    pixels = colours.measure_colours(stamp, BANDS, ZERO_POINTS)
    assert pixels["hlr_f814w"][0] == pytest.approx(table["hlr_f814w"][0] / SCALE)
    assert np.isnan(colours.band_magnitudes(np.zeros((1, 8, 8, 3)), ZERO_POINTS)).all()


def test_no_gradient_profiles_keep_colours_and_remove_gradients():
    stamps = np.stack([bulge_disc(), bulge_disc((0.3, 0.6, 1.0), disc_hlr=0.25)])
    flat = colours.no_gradient_profiles(stamps, 2)
    np.testing.assert_allclose(flat.sum(axis=(1, 2)), stamps.sum(axis=(1, 2)), rtol=1e-10)
    np.testing.assert_allclose(flat[..., 2], stamps[..., 2], rtol=1e-12)
    table = colours.measure_colours(flat, BANDS, ZERO_POINTS)
    truth = colours.measure_colours(stamps, BANDS, ZERO_POINTS)
    np.testing.assert_allclose(table["color_f435w_f606w"], truth["color_f435w_f606w"], atol=1e-9)
    np.testing.assert_allclose(table["grad_f606w_f814w"], 0.0, atol=1e-9)
    np.testing.assert_allclose(table["ratio_f606w"], 1.0, atol=1e-12)
    assert (truth["grad_f606w_f814w"] > 0.05).all()


def test_failures_are_nan_and_bad_inputs_are_named():
    stamps = np.stack([bulge_disc(), np.zeros((STAMP, STAMP, 3))])
    table = colours.measure_colours(stamps, BANDS, ZERO_POINTS)
    assert list(table["ok"]) == [True, False] and np.isnan(table["grad_f435w_f606w"][1])
    with pytest.raises(ValueError, match=r"\[N, S, S, B\]"):
        colours.measure_colours(np.zeros((4, 8)), BANDS, ZERO_POINTS)
    with pytest.raises(ValueError, match="2 bands on their last axis, expected 3"):
        colours.measure_colours(np.zeros((1, 8, 8, 2)), BANDS, ZERO_POINTS)
    with pytest.raises(ValueError, match="reference band 'r' is not one of the bands"):
        colours.measure_colours(stamps, BANDS, ZERO_POINTS, reference="r")
    with pytest.raises(ValueError, match="2 zero points"):
        colours.measure_colours(stamps, BANDS, ZERO_POINTS[:2])


def test_compare_colours_measures_shifts_and_bootstrap_errors():
    rng = np.random.default_rng(1)
    truth = Table({"grad": rng.normal(0.2, 0.1, 200)})
    shifted = Table({"grad": truth["grad"] + 0.05 + rng.normal(0, 0.02, 200)})
    zero = Table({"grad": np.zeros(200)})
    result = colours.compare_colours(truth, {"mock": shifted, "no_gradient": zero}, ["grad"], n_bootstrap=200, rng=2)
    mock, flat = result[0], result[1]
    assert (mock["sample"], flat["sample"]) == ("mock", "no_gradient")
    assert mock["mean_diff"] == pytest.approx(0.05, abs=0.01) and 0 < mock["mean_diff_err"] < 0.01
    assert mock["scatter_diff"] == pytest.approx(0.02, rel=0.2) and 0 < mock["scatter_diff_err"] < 0.005
    assert flat["mean_diff"] == pytest.approx(-truth["grad"].mean()) and flat["scatter_other"] == 0
    with pytest.raises(ValueError, match="has 3 galaxies, the truth 200"):
        colours.compare_colours(truth, {"mock": shifted[:3]}, ["grad"])


@pytest.mark.filterwarnings("ignore:You called drawImage with")
def test_observed_photometry_is_robust_to_noise_and_detached_neighbours():
    rng = np.random.default_rng(3)
    scale, size, sigma = 0.03, 60, 0.002
    galaxy = galsim.Exponential(half_light_radius=0.2)
    neighbour = galsim.Gaussian(sigma=0.03).shift(0.8, 0.8)  # detached: outside the aperture
    fluxes = (20.0, 40.0)
    stamps = [
        _draw(galsim.Add([galaxy.withFlux(f), neighbour.withFlux(0.2 * f)]), size, scale)
        + rng.normal(0, sigma, (size, size))
        for f in fluxes
    ]
    result = colours.observed_photometry(stamps, [sigma, sigma], [26.4955, 25.94])
    colour = result["mag"][0] - result["mag"][1]
    assert colour == pytest.approx(_colour(*fluxes, 26.4955, 25.94), abs=0.05)
    expected = galsim.Convolve(galaxy, galsim.Pixel(scale)).calculateHLR(scale=scale / 8, size=size * 8) / scale
    assert result["hlr"][1] == pytest.approx(expected, rel=0.1)
    assert result["hlr"][0] / result["hlr"][1] == pytest.approx(1.0, abs=0.08)
    empty = colours.observed_photometry([np.zeros((20, 20))] * 2, [0.01, 0.01], [26.0, 26.0])
    assert empty["n_pixels"] == 0 and np.isnan(empty["hlr"]).all()
