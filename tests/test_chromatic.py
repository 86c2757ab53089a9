"""The multi-band synthetic population and multi-band training: colours, gradients, bands, export."""

import json
from pathlib import Path

import galsim
import numpy as np
import pytest

from galsim_hub.training.datasets import chromatic
from galsim_hub.training.datasets.data import build_chromatic_dataset, load_arrays, read_dataset_metadata
from galsim_hub.training.datasets.drawing import flux_radius_pixels

pytestmark = pytest.mark.slow  # these tests train models

STAMP, SCALE = 32, 0.05


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return build_chromatic_dataset(
        tmp_path_factory.mktemp("chromatic") / "set",
        24,
        stamp_size=STAMP,
        pixel_scale=SCALE,
        seed=3,
        shard_size=10,
        progress=False,
    )


def test_band_zero_points_are_the_acs_ones():
    bands = {b["name"]: b for b in chromatic.band_definitions()}
    assert list(bands) == ["f435w", "f606w", "f814w"]
    # Published ACS/WFC AB zero points (e-/s): F435W 25.66, F606W 26.49, F814W 25.94.
    for name, published in (("f435w", 25.66), ("f606w", 26.49), ("f814w", 25.94)):
        assert bands[name]["zero_point"] == pytest.approx(published, abs=0.02)
    assert 420 < bands["f435w"]["effective_wavelength"] < 450 < 800 < bands["f814w"]["effective_wavelength"]


def test_component_seds_give_red_bulges_and_blue_knots():
    z = 0.6
    bulge = chromatic.component_colours("CWW_E_ext.sed", z)
    knots = chromatic.component_colours("CWW_Im_ext.sed", z)
    assert bulge[-1] == knots[-1] == 0.0  # relative to F814W
    assert bulge[0] > bulge[1] > 0 and knots[0] > knots[1] > 0
    assert bulge[0] - knots[0] > 1.0  # F435W - F814W at least a magnitude redder
    # Redshifting an elliptical reddens its F435W - F814W colour (the 4000 A break moves in).
    assert chromatic.component_colours("CWW_E_ext.sed", 0.1)[0] < bulge[0]
    with pytest.raises(ValueError, match="redshift must lie in"):
        chromatic.component_colours("CWW_E_ext.sed", 3.5)


def test_data_set_arrays_carry_the_band_axis(small_set):
    metadata = read_dataset_metadata(small_set)
    arrays = load_arrays(small_set)
    n, bands = 24, 3
    assert [b["name"] for b in metadata["bands"]] == ["f435w", "f606w", "f814w"]
    assert arrays["image"].shape == arrays["psf"].shape == arrays["truth"].shape == (n, STAMP, STAMP, bands)
    assert arrays["noise_var"].shape == (n, bands)
    assert arrays["noise_ps"].shape == (n, STAMP, STAMP // 2 + 1, bands)
    assert [c["name"] for c in metadata["conditions"]] == [
        "mag_f814w",
        "color_f435w_f606w",
        "color_f606w_f814w",
        "flux_radius",
        "zphot",
    ]
    # Noise rms per band, scaled from the 0.03" pixels to 0.05" (1.3x noisier in F435W).
    sigmas = np.sqrt(arrays["noise_var"][0])
    np.testing.assert_allclose(sigmas, np.array([1.3, 1.0, 1.0]) * 2.6e-3 * SCALE / 0.03, rtol=1e-5)
    residual = arrays["image"] - arrays["truth"]
    assert 0.3 * sigmas.min() < residual.std() < 20 * sigmas.max()
    # One diffraction-limited PSF per band: the blue one is the sharpest.
    peaks = arrays["psf"][0].max(axis=(0, 1))
    assert peaks[0] > peaks[1] > peaks[2]
    np.testing.assert_allclose(arrays["psf"].sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_conditions_are_the_truth_colours_and_reference_magnitude(small_set):
    metadata = read_dataset_metadata(small_set)
    arrays = load_arrays(small_set, ("truth", "conditions"))
    zero_points = np.array([b["zero_point"] for b in metadata["bands"]])
    mags = zero_points - 2.5 * np.log10(arrays["truth"].sum(axis=(1, 2)))
    conditions = arrays["conditions"]
    # The 1.6" stamps lose the far wings of the larger galaxies: up to 0.1 mag, never a gain.
    assert np.all(mags[:, 2] > conditions[:, 0] - 1e-3) and np.all(mags[:, 2] < conditions[:, 0] + 0.1)
    np.testing.assert_allclose(mags[:, 0] - mags[:, 1], conditions[:, 1], atol=0.02)
    np.testing.assert_allclose(mags[:, 1] - mags[:, 2], conditions[:, 2], atol=0.02)
    assert np.all(conditions[:, 4] > 0) and np.all(conditions[:, 3] > 0)


def test_galaxies_are_redder_inside_than_outside(small_set):
    arrays = load_arrays(small_set, ("truth",))
    gradients = []
    for truth in arrays["truth"]:
        reference = truth[..., 2]
        radius = flux_radius_pixels(reference)
        y, x = np.indices(reference.shape)
        xc, yc = (reference * x).sum() / reference.sum(), (reference * y).sum() / reference.sum()
        inside = np.hypot(x - xc, y - yc) < radius
        blue_in, red_in = truth[..., 0][inside].sum(), reference[inside].sum()
        blue_out, red_out = truth[..., 0][~inside].sum(), reference[~inside].sum()
        gradients.append(-2.5 * np.log10(blue_in / red_in) + 2.5 * np.log10(blue_out / red_out))
    gradients = np.array(gradients)
    # Bulges (CWW E) are red and sit in the centre: F435W - F814W is redder inside for most
    # galaxies and never much bluer.
    assert np.mean(gradients > 0) > 0.7
    assert np.median(gradients) > 0.1 and gradients.min() > -0.3


def test_builds_are_reproducible_and_independent_of_jobs(small_set, tmp_path):
    again = build_chromatic_dataset(
        tmp_path / "again", 24, stamp_size=STAMP, pixel_scale=SCALE, seed=3, shard_size=24, jobs=2, progress=False
    )
    first, second = load_arrays(small_set), load_arrays(again)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    other = load_arrays(
        build_chromatic_dataset(tmp_path / "other", 4, stamp_size=STAMP, pixel_scale=SCALE, seed=4, progress=False)
    )
    assert not np.allclose(other["image"], first["image"][:4])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"bands": [{"name": "f606w", "bandpass": "ACS_wfc_F606W.dat", "noise_sigma": 1e-3}]},
            "must include the reference band 'f814w'",
        ),
        (
            {"bands": [{"name": "f814w", "bandpass": "ACS_wfc_F814W.dat", "noise_sigma": -1}]},
            "noise_sigma of band 'f814w' must be a positive number",
        ),
        ({"jobs": 0}, "jobs must be an integer >= 1"),
    ],
)
def test_bad_builder_arguments_name_the_problem(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_chromatic_dataset(tmp_path / "bad", 2, stamp_size=STAMP, **kwargs)
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------- training


from galsim_hub.training.fitting import train  # noqa: E402
from galsim_hub.training.fitting.config import config_from_dict  # noqa: E402
from galsim_hub.training.networks import likelihood as lk  # noqa: E402
from galsim_hub.training.networks.vae import VAE  # noqa: E402


def test_band_likelihood_is_the_sum_of_single_band_ones():
    rng = np.random.default_rng(0)
    observed = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    model = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    noise_var = rng.uniform(0.5, 2.0, size=(2, 3)).astype(np.float32)
    together = lk.pixel_log_likelihood(
        lk.bands_first(observed), lk.bands_first(model), noise_var[:, :, None, None]
    ).numpy()
    for b in range(3):
        alone = lk.pixel_log_likelihood(observed[..., b], model[..., b], noise_var[:, b]).numpy()
        np.testing.assert_allclose(together[:, b], alone, rtol=1e-5)
    psf = np.zeros((2, 16, 16, 3), np.float32)
    psf[:, 8, 8, :] = 1.0
    np.testing.assert_allclose(
        lk.convolve_with_psf(lk.bands_first(model), lk.bands_first(psf)).numpy(),
        lk.bands_first(model).numpy(),
        atol=1e-5,
    )
    assert lk.total_variation(lk.bands_first(model)).shape == (2,)


def test_multiband_vae_reads_and_writes_every_band():
    vae = VAE(stamp_size=16, latent_dim=4, num_stages=2, base_depth=4, max_depth=8, n_bands=3)
    images = np.random.default_rng(1).normal(size=(5, 16, 16, 3)).astype(np.float32)
    psfs = np.zeros_like(images)
    psfs[:, 8, 8, :] = 1.0
    mean, log_scale = vae.encode(images, psfs)
    assert mean.shape == (5, 4)
    assert vae.decode(mean).shape == (5, 16, 16, 3)
    assert vae.reconstruct(images, psfs).shape == (5, 16, 16, 3)
    assert vae.architecture["n_bands"] == 3


TINY = {
    "dataset": {"source": "chromatic", "stamp_size": STAMP, "pixel_scale": SCALE, "n_examples": 24},
    "vae": {
        "latent_dim": 4,
        "num_stages": 2,
        "base_depth": 8,
        "max_depth": 16,
        "batch_size": 8,
        "steps": 40,
        "warmup_steps": 10,
        "checkpoint_every": 20,
    },
    "flow": {"n_blocks": 2, "hidden_units": [16], "steps": 30, "batch_size": 16, "warmup_steps": 10},
    "export": {"name": "tiny-chromatic", "version": "0.1"},
}


def test_multiband_model_trains_exports_and_draws_through_its_bands(small_set, tmp_path):
    import galsim_hub

    config = config_from_dict(TINY)
    history = train.train_vae(config, small_set, tmp_path / "work", progress=False)
    assert np.mean([h["loss"] for h in history[-5:]]) < np.mean([h["loss"] for h in history[:5]])
    assert json.loads((tmp_path / "work" / "vae" / "architecture.json").read_text())["n_bands"] == 3
    train.encode_latents(config, small_set, tmp_path / "work")
    train.train_flow(config, tmp_path / "work", progress=False)
    model_dir = train.export(config, tmp_path / "work", tmp_path / "model", dataset_dir=small_set)

    metadata = json.loads((model_dir / "galsim_hub.json").read_text())
    assert metadata["format"] == 3  # format 3: a multi-band model too (bands came with format 2)
    assert [b["name"] for b in metadata["bands"]] == ["f435w", "f606w", "f814w"]
    assert set(metadata["bands"][0]) == {"name", "effective_wavelength", "zero_point", "bandpass"}

    model = galsim_hub.GenerativeGalaxyModel(str(model_dir))
    assert model.bands == ["f435w", "f606w", "f814w"]
    conditions = load_arrays(small_set, ("conditions",))["conditions"][:3]
    table = {name: conditions[:, i] for i, name in enumerate(model.quantities)}
    arrays = model.sample(table, seed=5, return_arrays=True)
    assert arrays.shape == (3, STAMP, STAMP, 3) and np.all(arrays >= 0) and arrays.sum() > 0
    np.testing.assert_array_equal(arrays, model.sample(table, seed=5, return_arrays=True))
    galaxy = model.sample(table, seed=5)[0]
    for band in model.bands:
        drawn = galaxy.chromatic.drawImage(
            model.band_set.bandpasses[band], nx=STAMP, ny=STAMP, scale=SCALE, method="no_pixel"
        ).array
        alone = galaxy.images[band].drawImage(nx=STAMP, ny=STAMP, scale=SCALE, method="no_pixel").array
        np.testing.assert_allclose(drawn, alone, rtol=1e-4, atol=1e-5 * alone.max())
    # The exported encoder takes every band with its PSF.
    stamps = load_arrays(small_set, ("image", "psf"))
    assert model.reconstruct(stamps["image"][:2], stamps["psf"][:2]).shape == (2, STAMP, STAMP, 3)
    assert isinstance(galaxy.through(galsim.Bandpass("LSST_r.dat", wave_type="nm")), galsim.InterpolatedImage)


def test_the_bundled_multiband_model_samples_offline_and_keeps_catalog_magnitudes(tmp_path, monkeypatch):
    from astropy.table import Table

    import galsim_hub

    monkeypatch.setenv("GALSIM_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    model = galsim_hub.GenerativeGalaxyModel("hub:synthetic_chromatic")
    assert model.bands == ["f435w", "f606w", "f814w"]
    catalog = Table.read(Path(__file__).resolve().parents[1] / "examples" / "chromatic_catalog.fits")[:4]
    catalog["mag_f814w"][0] = 19.0  # brighter than the training range: clipped, catalog magnitudes kept
    with pytest.warns(Warning, match="magnitude and colours"):
        galaxies = model.sample(catalog[list(model.quantities)], seed=11)
    first = galaxies[0]
    mags = {band: model.band_set.zero_points[band] - 2.5 * np.log10(first.images[band].flux) for band in model.bands}
    assert mags["f814w"] == pytest.approx(19.0, abs=1e-3)
    assert mags["f606w"] - mags["f814w"] == pytest.approx(catalog["color_f606w_f814w"][0], abs=1e-3)
    assert mags["f435w"] - mags["f606w"] == pytest.approx(catalog["color_f435w_f606w"][0], abs=1e-3)
    for band in model.bands:  # the chromatic object through a training band is that band's image
        drawn = first.chromatic.drawImage(
            model.band_set.bandpasses[band], nx=64, ny=64, scale=0.05, method="no_pixel"
        ).array
        alone = first.images[band].drawImage(nx=64, ny=64, scale=0.05, method="no_pixel").array
        np.testing.assert_allclose(drawn, alone, rtol=1e-4, atol=1e-5 * alone.max())
