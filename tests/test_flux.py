"""Catalog fluxes (``flux=`` / ``mag=`` + ``zero_point=``) and the pieces of the out-of-range policy."""

from __future__ import annotations

import copy
import json
import shutil
import warnings

import galsim
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from toy_models import CONDITIONS, ZERO_POINT

import galsim_hub  # noqa: F401  (registers the config types)
from galsim_hub.cli import main
from galsim_hub.errors import CatalogError
from galsim_hub.model import GenerativeGalaxyModel
from galsim_hub.sampling.catalog import OutOfRangeWarning
from galsim_hub.sampling.fluxes import catalog_fluxes, magnitude_to_flux, set_fluxes
from galsim_hub.sampling.plan import SamplingPlan, plausible

STAMP = 32


def gaussian(flux: float = 1.0, sigma: float = 2.0, size: int = STAMP) -> np.ndarray:
    centre = (size - 1) / 2
    y, x = np.indices((size, size)) - centre
    image = np.exp(-0.5 * (x**2 + y**2) / sigma**2)
    return (flux * image / image.sum()).astype(np.float32)


def bands() -> Table:
    """Three galaxies with fluxes in two bands and a magnitude in a third."""
    return Table(
        {
            "mag_auto": [21.0, 22.5, 24.0],
            "flux_radius": [2.0, 3.0, 4.0],
            "flux_g": [120.0, 30.0, 4.0],
            "flux_r": [200.0, 41.0, 9.5],
            "mag_i": [21.5, 23.0, 24.2],
        }
    )


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GALSIM_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GALSIM_HUB_INDEX", raising=False)


# -- catalog fluxes -----------------------------------------------------------------------------


def test_magnitude_to_flux():
    np.testing.assert_allclose(magnitude_to_flux([25.94, 20.94, 28.44], 25.94), [1.0, 100.0, 0.1])


def test_catalog_fluxes_from_columns_and_values():
    cat = bands()
    assert catalog_fluxes(cat, 3) is None
    np.testing.assert_array_equal(catalog_fluxes(cat, 3, flux="flux_g"), cat["flux_g"])
    np.testing.assert_allclose(
        catalog_fluxes(cat, 3, mag="mag_i", zero_point=28.0), 10 ** (-0.4 * (np.asarray(cat["mag_i"]) - 28.0))
    )
    np.testing.assert_allclose(
        catalog_fluxes(cat, 3, mag="mag_i", default_zero_point=25.94), magnitude_to_flux(cat["mag_i"], 25.94)
    )
    np.testing.assert_array_equal(catalog_fluxes(cat, 3, flux=[1.0, 2.0, 3.0]), [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"flux": "flux_z"}, CatalogError, r"no flux column 'flux_z' \(catalog columns: mag_auto, .*flux_g"),
        ({"flux": [1.0, np.nan, 2.0]}, CatalogError, r"flux values is NaN or infinite in rows 1"),
        (
            {"flux": [1.0, 0.0, -3.0]},
            CatalogError,
            r"flux values is zero or negative in rows 1, 2; every galaxy needs a positive flux",
        ),
        ({"flux": [1.0, 2.0]}, CatalogError, r"shape \(2,\); expected one value per row \(3\)"),
        ({"mag": "mag_i"}, ValueError, "mag= needs a finite zero_point="),
        ({"mag": [21.0, np.inf, 22.0], "zero_point": 28.0}, CatalogError, "NaN or infinite in rows 1"),
        ({"flux": "flux_g", "mag": "mag_i"}, ValueError, "either as flux= or as mag="),
        ({"flux": "flux_g", "zero_point": 28.0}, ValueError, "zero_point= goes with mag="),
    ],
)
def test_bad_catalog_fluxes_are_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        catalog_fluxes(bands(), 3, **kwargs)


def test_nan_and_masked_flux_columns_name_the_rows():
    cat = bands()
    cat["flux_g"][2] = np.nan
    with pytest.raises(CatalogError, match=r"column 'flux_g' has NaN or infinite values in rows 2"):
        catalog_fluxes(cat, 3, flux="flux_g")
    masked = Table(bands(), masked=True)
    masked["flux_r"].mask[0] = True
    with pytest.raises(CatalogError, match=r"column 'flux_r' has masked .* rows 0"):
        catalog_fluxes(masked, 3, flux="flux_r")


def test_set_fluxes_rescales_and_leaves_nan_rows_alone():
    images = np.stack([gaussian(2.0), gaussian(3.0), gaussian(4.0)])
    out = set_fluxes(images, np.array([10.0, np.nan, 0.5]))
    np.testing.assert_allclose(out.sum(axis=(1, 2)), [10.0, 3.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(out[0] / 10.0, images[0] / 2.0, rtol=1e-6)
    assert set_fluxes(images, None) is images
    with pytest.raises(CatalogError, match="rows 1 have no flux"):
        set_fluxes(np.stack([gaussian(), np.zeros((STAMP, STAMP), np.float32)]), np.array([1.0, 1.0]))


# -- plausibility and the clip policy, on a fake model ---------------------------------------


def test_plausible():
    square = np.full((STAMP, STAMP), 1.0, np.float32)
    images = np.stack([gaussian(100.0), square, gaussian(100.0), gaussian(100.0) * np.nan])
    np.testing.assert_array_equal(plausible(images), [True, False, True, False])
    expected = np.array([100.0, 1024.0, 300.0, 100.0])  # the third is 3 times too faint
    np.testing.assert_array_equal(plausible(images, expected), [True, False, False, False])


METADATA = {"conditions": CONDITIONS, "zero_point": ZERO_POINT, "condition_mean": [22.5, 3.0]}


def fake_decoder(calls: list):
    """A model that returns stamp-filling squares above flux_radius 3.5, round Gaussians below."""

    def decode(conditions, noise):
        calls.append(np.array(conditions))
        flux = magnitude_to_flux(conditions[:, 0], ZERO_POINT)
        images = [
            np.full((STAMP, STAMP), f / STAMP**2, np.float32) if r > 3.5 else gaussian(f, r)
            for f, r in zip(flux, conditions[:, 1])
        ]
        return np.stack(images)[..., None]  # [n, S, S, B = 1]

    return decode


def test_clip_pulls_implausible_rows_towards_the_centre_and_sets_the_catalog_flux():
    conditions = np.array([[22.0, 3.0], [18.0, 9.0], [26.0, 1.0]])  # in, too bright and big, too faint and small
    with pytest.warns(OutOfRangeWarning) as caught:
        plan = SamplingPlan(conditions, METADATA)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "2 of 3 rows" in message and "'mag_auto' 2 value(s) outside [20, 25] (rows 1, 2)" in message
    assert "'flux_radius' 2 value(s) outside [1.5, 4.5] (rows 1, 2)" in message
    np.testing.assert_array_equal(plan.inputs, [[22.0, 3.0], [20.0, 4.5], [25.0, 1.5]])
    calls = []
    images = plan.images(fake_decoder(calls), np.zeros((3, 4), np.float32))[..., 0]
    # Row 1 at flux_radius 4.5 is a square: pulled to 3.0 + 0.75 * (4.5 - 3.0) = 4.125 (still a
    # square), then to 3.75 (a square), then to 3.375 (a Gaussian).
    assert len(calls) == 4
    np.testing.assert_allclose([call[0, 1] for call in calls[1:]], [4.125, 3.75, 3.375])
    np.testing.assert_allclose(images.sum(axis=(1, 2)), magnitude_to_flux(conditions[:, 0], ZERO_POINT), rtol=1e-6)
    assert plausible(images).all()
    np.testing.assert_array_equal(images[0], gaussian(magnitude_to_flux(22.0, ZERO_POINT), 3.0))


def test_clip_without_a_plausible_stamp_is_an_error():
    def squares(conditions, noise):
        return np.ones((len(conditions), STAMP, STAMP, 1), np.float32)

    with pytest.warns(OutOfRangeWarning):
        plan = SamplingPlan(np.array([[22.0, 3.0], [22.0, 6.0]]), METADATA, labels=[10, 11], what="objects")
    with pytest.raises(CatalogError, match="no plausible stamp for objects 11 even at the centre"):
        plan.images(squares, np.zeros((2, 4), np.float32))


def test_clip_without_a_magnitude_condition_clips_only():
    metadata = {"conditions": CONDITIONS}  # no zero point
    with pytest.warns(OutOfRangeWarning, match="flux is the model's at the clipped conditions"):
        plan = SamplingPlan(np.array([[27.0, 2.0]]), metadata)
    images = plan.images(fake_decoder([]), np.zeros((1, 4), np.float32))[..., 0]
    np.testing.assert_allclose(images.sum(), magnitude_to_flux(25.0, ZERO_POINT), rtol=1e-6)


def test_extrapolate_and_error():
    conditions = np.array([[27.0, 2.0]])
    with pytest.warns(OutOfRangeWarning, match="extrapolates"):
        plan = SamplingPlan(conditions, METADATA, "extrapolate")
    np.testing.assert_array_equal(plan.inputs, conditions)
    with pytest.raises(CatalogError, match=r"'mag_auto' 1 value\(s\) outside \[20, 25\] \(rows 0\)"):
        SamplingPlan(conditions, METADATA, "error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SamplingPlan(np.array([[22.0, 2.0]]), METADATA, "error")  # in range: nothing to say


# -- the Python API on the toy model -------------------------------------------------------------


def test_same_seed_gives_the_same_morphology_in_every_band(toy):
    cat = bands()
    g = toy.sample(cat, seed=7, return_arrays=True, flux="flux_g")
    r = toy.sample(cat, seed=7, return_arrays=True, flux="flux_r")
    i = toy.sample(cat, seed=7, return_arrays=True, mag="mag_i", zero_point=28.0)
    np.testing.assert_allclose(g.sum(axis=(1, 2)), cat["flux_g"], rtol=1e-5)
    np.testing.assert_allclose(r.sum(axis=(1, 2)), cat["flux_r"], rtol=1e-5)
    np.testing.assert_allclose(i.sum(axis=(1, 2)), 10 ** (-0.4 * (np.asarray(cat["mag_i"]) - 28.0)), rtol=1e-5)
    ratio = np.asarray(cat["flux_r"] / cat["flux_g"])[:, None, None]
    np.testing.assert_allclose(r, g * ratio, rtol=1e-5, atol=1e-7 * r.max())
    other_seed = toy.sample(cat, seed=8, return_arrays=True, flux="flux_g")
    assert not np.allclose(other_seed, g)


def test_galsim_objects_and_iter_sample_carry_the_catalog_flux(toy_dir):
    cat = bands()
    model = GenerativeGalaxyModel(toy_dir, batch_size=2)
    galaxies = model.sample(cat, seed=7, flux="flux_r")
    np.testing.assert_allclose([galaxy.flux for galaxy in galaxies], cat["flux_r"], rtol=1e-5)
    batches = np.concatenate(list(model.iter_sample(cat, seed=7, mag=cat["mag_i"], zero_point=28.0)))
    np.testing.assert_allclose(batches, model.sample(cat, seed=7, return_arrays=True, mag="mag_i", zero_point=28.0))


def test_bad_flux_input_fails_before_sampling(toy):
    cat = bands()
    cat["flux_g"][1] = -1.0
    with pytest.raises(CatalogError, match=r"flux column 'flux_g' is zero or negative in rows 1"):
        toy.sample(cat, seed=1, flux="flux_g")
    with pytest.raises(CatalogError, match="no flux column 'flux_u'"):
        next(toy.iter_sample(cat, seed=1, flux="flux_u"))


def test_explicit_flux_wins_over_the_clipped_rows_magnitude(toy):
    cat = bands()
    cat["mag_auto"][0] = 18.0
    with pytest.warns(OutOfRangeWarning, match="their flux is the catalog flux given"):
        images = toy.sample(cat, seed=7, return_arrays=True, flux="flux_g")
    np.testing.assert_allclose(images.sum(axis=(1, 2)), cat["flux_g"], rtol=1e-5)


def test_model_without_zero_point_needs_one_for_magnitudes(toy_dir, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(toy_dir, plain)
    metadata = json.loads((plain / "galsim_hub.json").read_text())
    metadata.pop("zero_point")
    (plain / "galsim_hub.json").write_text(json.dumps(metadata))
    model = GenerativeGalaxyModel(plain)
    with pytest.raises(ValueError, match="mag= needs a finite zero_point="):
        model.sample(bands(), seed=1, mag="mag_i")
    with pytest.warns(OutOfRangeWarning, match="no magnitude condition with a zero point"):
        model.sample(Table({"mag_auto": [26.0], "flux_radius": [2.0]}), seed=1)


# -- GalSim config ------------------------------------------------------------------------------


def band_config(model_dir, catalog, flux) -> dict:
    return {
        "input": {"catalog": {"file_name": str(catalog)}, "generative_model": {"file_name": str(model_dir)}},
        "gal": {
            "type": "GenerativeGalaxy",
            "mag_auto": {"type": "Catalog", "col": "mag_auto"},
            "flux_radius": {"type": "Catalog", "col": "flux_radius"},
            "flux": flux,
        },
        "image": {
            "type": "Tiled",
            "nx_tiles": 3,
            "ny_tiles": 1,
            "stamp_size": STAMP,
            "pixel_scale": 0.03,
            "random_seed": 21,
            "draw_method": "no_pixel",
        },
    }


def build(config: dict) -> np.ndarray:
    return galsim.config.BuildImage(copy.deepcopy(config)).array


def stamps(image: np.ndarray) -> np.ndarray:
    return image.reshape(STAMP, 3, STAMP).transpose(1, 0, 2)


def test_config_flux_from_catalog_columns_gives_one_morphology_per_band(toy_dir, tmp_path):
    path = tmp_path / "bands.fits"
    cat = bands()
    cat.write(path)
    g = stamps(build(band_config(toy_dir, path, {"type": "Catalog", "col": "flux_g"})))
    r = stamps(build(band_config(toy_dir, path, {"type": "Catalog", "col": "flux_r"})))
    i_flux = {"type": "Eval", "str": "10**(-0.4 * (m - 28.0))", "fm": {"type": "Catalog", "col": "mag_i"}}
    i = stamps(build(band_config(toy_dir, path, i_flux)))
    np.testing.assert_allclose(g.sum(axis=(1, 2)), cat["flux_g"], rtol=1e-4)
    np.testing.assert_allclose(i.sum(axis=(1, 2)), 10 ** (-0.4 * (np.asarray(cat["mag_i"]) - 28.0)), rtol=1e-4)
    ratio = np.asarray(cat["flux_r"] / cat["flux_g"])[:, None, None]
    np.testing.assert_allclose(r, g * ratio, rtol=1e-4, atol=1e-6 * r.max())


@pytest.mark.parametrize("value, message", [(float("nan"), "is nan"), (-3.0, "is -3.0")])
def test_config_refuses_bad_fluxes(toy_dir, tmp_path, value, message):
    path = tmp_path / "bands.fits"
    cat = bands()
    cat["flux_g"][1] = value
    cat.write(path)
    with pytest.raises(galsim.GalSimConfigError, match=f"flux of object 1 {message}; it must be finite"):
        build(band_config(toy_dir, path, {"type": "Catalog", "col": "flux_g"}))


def test_config_missing_flux_column_is_an_error(toy_dir, tmp_path):
    path = tmp_path / "bands.fits"
    bands().write(path)
    with pytest.raises(Exception, match="flux_u"):
        build(band_config(toy_dir, path, {"type": "Catalog", "col": "flux_u"}))


# -- command line --------------------------------------------------------------------------------


@pytest.fixture
def catalog_file(tmp_path):
    path = tmp_path / "bands.fits"
    bands().write(path)
    return path


def run_sample(capsys, toy_dir, out, *extra):
    status = main(["sample", str(toy_dir), "--seed", "4", "--out", str(out), *extra])
    return status, capsys.readouterr().err


def test_cli_flux_and_magnitude_columns(toy_dir, catalog_file, tmp_path, capsys):
    cat = bands()
    status, err = run_sample(
        capsys, toy_dir, tmp_path / "g.fits", "--catalog", str(catalog_file), "--flux-column", "flux_g"
    )
    assert status == 0, err
    status, err = run_sample(
        capsys,
        toy_dir,
        tmp_path / "i.fits",
        "--catalog",
        str(catalog_file),
        "--mag-column",
        "mag_i",
        "--zero-point",
        "28",
    )
    assert status == 0, err
    g, i = fits.getdata(tmp_path / "g.fits"), fits.getdata(tmp_path / "i.fits")
    assert fits.getheader(tmp_path / "g.fits")["BUNIT"] == "flux of column flux_g"
    assert fits.getheader(tmp_path / "i.fits")["BUNIT"] == "10**(-0.4(mag_i-28))"
    assert fits.getheader(tmp_path / "i.fits")["OUTRANGE"] == "clip"
    np.testing.assert_allclose(g.sum(axis=(1, 2)), cat["flux_g"], rtol=1e-5)
    i_flux = 10 ** (-0.4 * (np.asarray(cat["mag_i"]) - 28.0))
    np.testing.assert_allclose(i.sum(axis=(1, 2)), i_flux, rtol=1e-5)
    ratio = (i_flux / np.asarray(cat["flux_g"]))[:, None, None]
    np.testing.assert_allclose(i, g * ratio, rtol=1e-4, atol=1e-6 * i.max())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--n", "2", "--flux-column", "flux_g"], "--flux-column need(s) --catalog"),
        (["--catalog", "CAT", "--flux-column", "flux_u"], "no flux column 'flux_u'"),
        (["--catalog", "CAT", "--zero-point", "28"], "--zero-point goes with --mag-column"),
        (["--catalog", "CAT", "--out-of-range", "error"], r"'mag_auto' 1 value(s) outside [20, 25] (rows 0)"),
    ],
)
def test_cli_flux_errors(toy_dir, catalog_file, tmp_path, capsys, extra, message):
    path = tmp_path / "beyond.fits"
    cat = bands()
    cat["mag_auto"][0] = 19.0
    cat.write(path)
    extra = [str(path) if arg == "CAT" else arg for arg in extra]
    status, err = run_sample(capsys, toy_dir, tmp_path / "o.fits", *extra)
    assert status == 1  # an error the user can fix (the CLI's exit-status convention)
    assert err.startswith("galsim-hub: error: ") and message in err
    assert not (tmp_path / "o.fits").exists()


def test_cli_flux_and_magnitude_columns_are_exclusive(toy_dir, catalog_file, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "sample",
                str(toy_dir),
                "--catalog",
                str(catalog_file),
                "--out",
                str(tmp_path / "o.fits"),
                "--flux-column",
                "flux_g",
                "--mag-column",
                "mag_i",
            ]
        )
    assert "not allowed with argument" in capsys.readouterr().err
