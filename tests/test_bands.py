"""Multi-band (format 2) models: metadata, the chromatic construction, sampling and fluxes."""

from __future__ import annotations

import copy
import json
import shutil
import warnings

import galsim
import numpy as np
import pytest
from astropy.table import Table
from toy_models import (
    BAND_FLUX_FACTORS,
    CONDITIONS,
    TOY_BANDS,
    ZERO_POINT,
    build_multiband_toy_model,
    build_toy_model,
    toy_bands_metadata,
)

from galsim_hub.errors import CatalogError, MetadataError
from galsim_hub.metadata import validate_bands, validate_metadata
from galsim_hub.model import GenerativeGalaxyModel
from galsim_hub.profiles.bands import BandSet, MultiBandGalaxy
from galsim_hub.sampling.catalog import OutOfRangeWarning

SCALE = 0.2
DRAW = dict(nx=48, ny=48, scale=SCALE)


def lsst_band_set() -> BandSet:
    return BandSet(toy_bands_metadata())


# -- metadata -----------------------------------------------------------------------------------


def format2_metadata() -> dict:
    return {
        "format": 2,
        "name": "m",
        "version": "1",
        "stamp_size": 32,
        "pixel_scale": 0.1,
        "latent_dim": 4,
        "conditions": copy.deepcopy(CONDITIONS),
        "bands": toy_bands_metadata(),
    }


def test_format2_metadata_is_valid_and_bands_need_format_2():
    metadata = format2_metadata()
    assert validate_metadata(metadata) is metadata
    assert validate_metadata(
        {**metadata, "bands": [{**metadata["bands"][0], "bandpass": [[400, 0], [450, 1], [500, 0]]}]}
    )
    with pytest.raises(MetadataError, match="'bands' needs metadata format 2"):
        validate_metadata({**metadata, "format": 1})
    with pytest.raises(MetadataError, match="format 4 is not supported"):
        validate_metadata({**metadata, "format": 4})
    assert validate_metadata({**metadata, "format": 3, "keras_model": "model.keras"})
    with pytest.raises(MetadataError, match="format 3 needs 'keras_model'"):
        validate_metadata({**metadata, "format": 3})
    with pytest.raises(MetadataError, match="format 3 needs 'keras_model'"):
        validate_metadata({**metadata, "format": 3, "keras_model": "../model.keras"})
    with pytest.raises(MetadataError, match="'keras_model' needs metadata format 3"):
        validate_metadata({**metadata, "keras_model": "model.keras"})


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: b.__setitem__(0, "g"), "band #0 needs a non-empty string 'name'"),
        (lambda b: b[1].pop("zero_point"), "band 'r' lacks zero_point"),
        (lambda b: b[0].__setitem__("effective_wavelength", -5), "band 'g' needs a positive 'effective_wavelength'"),
        (lambda b: b[2].__setitem__("zero_point", float("nan")), "band 'i' needs a finite 'zero_point'"),
        (lambda b: b[1].__setitem__("name", "g"), "duplicate band name"),
        (lambda b: b.reverse(), "increasing effective wavelength, but 'r'"),
        (
            lambda b: b[0].__setitem__("bandpass", [[400, 1]]),
            "band 'g' bandpass must be a GalSim bandpass file name or a table",
        ),
        (lambda b: b[0].__setitem__("bandpass", [[500, 1], [400, 1]]), "wavelengths must be positive and increasing"),
        (lambda b: b[0].__setitem__("bandpass", [[400, 0], [500, 0]]), "non-negative and not all zero"),
        (lambda b: b[0].__setitem__("bandpass", 7), "band 'g' bandpass must be"),
        (lambda b: b.clear(), "non-empty list of band objects"),
    ],
)
def test_bad_bands_metadata_names_the_problem(change, message):
    bands = toy_bands_metadata()
    change(bands)
    with pytest.raises(MetadataError, match=message):
        validate_bands(bands, "here")


def test_band_set_refuses_unknown_files_wavelengths_outside_and_indistinct_bands():
    bands = toy_bands_metadata()
    with pytest.raises(MetadataError, match="band 'g' bandpass 'LSST_q.dat' is not a GalSim bandpass file"):
        BandSet([{**bands[0], "bandpass": "LSST_q.dat"}])
    with pytest.raises(MetadataError, match=r"band 'r' effective wavelength 900 nm lies outside its bandpass"):
        BandSet([bands[0], {**bands[1], "effective_wavelength": 900.0}])
    table = [[400.0, 1.0], [700.0, 1.0]]
    twins = [
        {"name": "a", "effective_wavelength": 549.0, "zero_point": 25.0, "bandpass": table},
        {"name": "b", "effective_wavelength": 551.0, "zero_point": 25.0, "bandpass": table},
    ]
    with pytest.raises(MetadataError, match="overlap too much to be told apart"):
        BandSet(twins)


def test_band_flux_arguments_are_checked():
    from galsim_hub.sampling.fluxes import catalog_band_fluxes

    metadata = format2_metadata()
    cat = Table({"flux_g": [1.0, 2.0], "mag_i": [22.0, 23.0]})
    with pytest.raises(ValueError, match=r"takes flux= as a dict \{band: column\}"):
        catalog_band_fluxes(cat, 2, metadata, flux="flux_g")
    with pytest.raises(ValueError, match=r"mag= names unknown band\(s\) \['z'\]"):
        catalog_band_fluxes(cat, 2, metadata, mag={"z": "mag_i"})
    with pytest.raises(ValueError, match=r"band\(s\) \['g'\] are given both"):
        catalog_band_fluxes(cat, 2, metadata, flux={"g": "flux_g"}, mag={"g": "mag_i"})
    with pytest.raises(ValueError, match="zero_point= for band"):
        catalog_band_fluxes(cat, 2, metadata, zero_point={"i": 30.0})
    with pytest.raises(CatalogError, match="flux column 'nope'"):
        catalog_band_fluxes(cat, 2, metadata, flux={"g": "nope"})
    fluxes = catalog_band_fluxes(cat, 2, metadata, flux={"g": "flux_g"}, mag={"i": "mag_i"}, zero_point={"i": 30.0})
    assert fluxes.shape == (2, 3) and np.isnan(fluxes[:, 1]).all()  # r is not given: the model's flux
    np.testing.assert_allclose(fluxes[:, 0], [1.0, 2.0])
    np.testing.assert_allclose(fluxes[:, 2], 10 ** (-0.4 * (np.array([22.0, 23.0]) - 30.0)))


# -- a multi-band model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    return build_multiband_toy_model(tmp_path_factory.mktemp("models") / "toy_bands")


@pytest.fixture(scope="module")
def toy(toy_dir):
    return GenerativeGalaxyModel(toy_dir, batch_size=3)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GALSIM_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GALSIM_HUB_INDEX", raising=False)


def catalog() -> Table:
    return Table(
        {
            "mag_auto": [21.0, 22.0, 23.0, 24.0, 22.5],
            "flux_radius": [2.0, 2.5, 3.0, 4.0, 3.5],
            "flux_g": [50.0, 20.0, 8.0, 3.0, 11.0],
            "mag_i": [20.5, 21.5, 22.5, 23.5, 22.0],
        }
    )


def test_multiband_model_loads_and_samples_per_band_images(toy):
    assert toy.bands == list(TOY_BANDS)
    assert toy.metadata["format"] == 2
    arrays = toy.sample(catalog(), seed=3, return_arrays=True)
    assert arrays.shape == (5, 32, 32, 3) and arrays.dtype == np.float32
    flux = arrays.sum(axis=(1, 2))
    np.testing.assert_allclose(flux[:, 1], 10 ** (-0.4 * (catalog()["mag_auto"] - ZERO_POINT)), rtol=0.1)
    np.testing.assert_allclose(flux / flux[:, 1:2], np.tile(BAND_FLUX_FACTORS, (5, 1)), rtol=2e-3)  # stamp-edge loss
    galaxies = toy.sample(catalog(), seed=3)
    assert len(galaxies) == 5 and all(isinstance(g, MultiBandGalaxy) for g in galaxies)
    assert galaxies[0].bands == TOY_BANDS
    for b, name in enumerate(TOY_BANDS):
        image = galaxies[4].images[name]
        assert isinstance(image, galsim.InterpolatedImage)
        np.testing.assert_allclose(image.image.array, arrays[4, ..., b])
        drawn = galaxies[4].chromatic.drawImage(toy.band_set.bandpasses[name], nx=32, ny=32, scale=0.1).array
        expected = image.drawImage(nx=32, ny=32, scale=0.1).array
        np.testing.assert_allclose(drawn, expected, rtol=1e-5, atol=1e-6 * expected.max())


def test_multiband_sampling_is_reproducible_and_batch_independent(toy, toy_dir):
    first = toy.sample(catalog(), seed=11, return_arrays=True)
    np.testing.assert_array_equal(first, toy.sample(catalog(), seed=11, return_arrays=True))
    assert not np.allclose(first, toy.sample(catalog(), seed=12, return_arrays=True))
    other = GenerativeGalaxyModel(toy_dir, batch_size=2)
    np.testing.assert_allclose(other.sample(catalog(), seed=11, return_arrays=True), first, rtol=1e-5)
    batches = list(other.iter_sample(catalog(), seed=11))
    assert [b.shape for b in batches] == [(2, 32, 32, 3), (2, 32, 32, 3), (1, 32, 32, 3)]
    np.testing.assert_allclose(np.concatenate(batches), first, rtol=1e-5)


def test_multiband_catalog_fluxes_apply_per_band(toy):
    cat = catalog()
    plain = toy.sample(cat, seed=5, return_arrays=True)
    scaled = toy.sample(cat, seed=5, return_arrays=True, flux={"g": "flux_g"}, mag={"i": "mag_i"})
    flux = scaled.sum(axis=(1, 2), dtype=np.float64)
    np.testing.assert_allclose(flux[:, 0], cat["flux_g"], rtol=1e-5)
    np.testing.assert_allclose(flux[:, 2], 10 ** (-0.4 * (cat["mag_i"] - ZERO_POINT)), rtol=1e-5)
    np.testing.assert_array_equal(scaled[..., 1], plain[..., 1])
    # the morphology is unchanged: each band is only rescaled
    np.testing.assert_allclose(
        scaled[..., 0] / flux[:, None, None, 0],
        plain[..., 0] / plain[..., 0].sum(axis=(1, 2))[:, None, None],
        rtol=1e-4,
        atol=1e-7,
    )
    batches = np.concatenate(list(toy.iter_sample(cat, seed=5, flux={"g": "flux_g"}, mag={"i": "mag_i"})))
    np.testing.assert_allclose(batches, scaled, rtol=1e-5)
    with pytest.raises(ValueError, match="takes mag= as a dict"):
        toy.sample(cat, seed=5, mag="mag_i")


def test_multiband_out_of_range_rows_are_clipped_or_refused(toy):
    cat = catalog()
    cat["flux_radius"][0] = 9.0
    with pytest.warns(OutOfRangeWarning, match="'flux_radius' 1 value"):
        clipped = toy.sample(cat, seed=2, return_arrays=True)
    inside = catalog()
    inside["flux_radius"][0] = 4.5
    np.testing.assert_allclose(clipped, toy.sample(inside, seed=2, return_arrays=True), rtol=1e-6)
    with pytest.raises(CatalogError, match="out_of_range='error' refuses them"):
        toy.sample(cat, seed=2, out_of_range="error")


def chromatic_metadata() -> dict:
    """Metadata of a three-band model conditioned on a magnitude and two colours (no weights needed)."""
    bands = [
        {
            "name": name,
            "effective_wavelength": wavelength,
            "zero_point": zero_point,
            "bandpass": f"ACS_wfc_{name.upper()}.dat",
        }
        for name, wavelength, zero_point in (("f435w", 433.7, 25.67), ("f606w", 595.8, 26.50), ("f814w", 808.7, 25.94))
    ]
    conditions = [
        {"name": "mag_f814w", "unit": "mag", "min": 20.0, "max": 25.0},
        {"name": "color_f435w_f606w", "unit": "mag", "min": 0.2, "max": 1.5},
        {"name": "color_f606w_f814w", "unit": "mag", "min": 0.5, "max": 1.6},
        {"name": "zphot", "unit": "", "min": 0.1, "max": 2.0},
    ]
    return {
        "format": 2,
        "name": "chromatic",
        "version": "1",
        "stamp_size": 16,
        "pixel_scale": 0.05,
        "latent_dim": 2,
        "zero_point": 25.94,
        "bands": bands,
        "conditions": conditions,
    }


def test_band_magnitudes_follow_from_a_magnitude_and_colours():
    from galsim_hub.sampling.fluxes import band_magnitude_terms

    metadata = chromatic_metadata()
    assert band_magnitude_terms(metadata) == {2: {0: 1.0}, 1: {0: 1.0, 2: 1.0}, 0: {0: 1.0, 2: 1.0, 1: 1.0}}
    no_blue = copy.deepcopy(metadata)
    del no_blue["conditions"][1]
    assert band_magnitude_terms(no_blue) is None  # F435W is not given
    assert band_magnitude_terms(format2_metadata()) is None  # the toy: mag_r only


def test_clipped_multiband_rows_get_their_catalog_magnitude_in_every_band():
    from galsim_hub.sampling.plan import SamplingPlan

    metadata = chromatic_metadata()
    rows = np.array(
        [
            [22.0, 0.8, 1.0, 0.5],  # inside
            [19.0, 0.8, 1.0, 0.5],  # too bright: clipped to 20
            [23.0, 2.0, 1.0, 2.5],
        ]
    )  # too red in F435W - F606W, too far
    with pytest.warns(OutOfRangeWarning, match="set from the catalog's magnitude and colours"):
        plan = SamplingPlan(rows, metadata)
    np.testing.assert_allclose(plan.inputs[1], [20.0, 0.8, 1.0, 0.5])
    np.testing.assert_allclose(plan.inputs[2], [23.0, 1.5, 1.0, 2.0])
    assert plan.targets.shape == (3, 3)
    assert np.isnan(plan.targets[0]).all() and np.isfinite(plan.targets[1:]).all()
    mags = {b: metadata["bands"][b]["zero_point"] - 2.5 * np.log10(plan.targets[1:, b]) for b in range(3)}
    np.testing.assert_allclose(mags[2], [19.0, 23.0])
    np.testing.assert_allclose(mags[1] - mags[2], [1.0, 1.0])
    np.testing.assert_allclose(mags[0] - mags[1], [0.8, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(SamplingPlan(rows[:1], metadata).targets).all()


def test_implausible_clipped_multiband_rows_are_pulled_in_like_single_band_ones():
    """The plausibility check of clipped rows looks at every band (it used to skip multi-band models)."""
    from galsim_hub.sampling.fluxes import band_magnitudes, magnitude_to_flux
    from galsim_hub.sampling.plan import SamplingPlan

    metadata = chromatic_metadata()
    magnitudes = band_magnitudes(metadata)
    calls = []

    def decode(conditions, noise):  # a square in F435W beyond zphot 1.5, round Gaussians otherwise
        calls.append(np.array(conditions))
        y, x = np.mgrid[:16, :16] - 7.5
        blob = np.exp(-(x**2 + y**2) / 8.0)
        stamps = np.zeros((len(conditions), 16, 16, 3), np.float32)
        for i, row in enumerate(conditions):
            for b, magnitude in enumerate(magnitudes):
                shape = np.ones_like(blob) if (b == 0 and row[3] > 1.5) else blob
                stamps[i, ..., b] = (
                    shape / shape.sum() * magnitude_to_flux(magnitude.of(row[None]), magnitude.zero_point)
                )
        return stamps

    with pytest.warns(OutOfRangeWarning):
        plan = SamplingPlan(np.array([[22.0, 0.8, 1.0, 2.5]]), {**metadata, "condition_mean": [22.0, 0.8, 1.0, 1.0]})
    images = plan.images(decode, np.zeros((1, 2), np.float32))
    assert len(calls) > 1 and calls[-1][0, 3] <= 1.5  # pulled in until F435W was plausible too
    np.testing.assert_allclose(images.sum(axis=(1, 2))[0], plan.targets[0], rtol=1e-5)


@pytest.fixture(scope="module")
def single_band_dir(tmp_path_factory):
    return build_toy_model(tmp_path_factory.mktemp("models") / "single")


def test_single_band_models_are_unchanged(single_band_dir):
    model = GenerativeGalaxyModel(single_band_dir)
    assert model.bands is None and model.band_set is None and model.metadata["format"] == 1
    galaxies = model.sample(Table({"mag_auto": [22.0], "flux_radius": [3.0]}), seed=1)
    assert type(galaxies[0]) is galsim.InterpolatedImage


def _rewrite_metadata(source, target, change):
    shutil.copytree(source, target)
    metadata = json.loads((target / "galsim_hub.json").read_text())
    change(metadata)
    (target / "galsim_hub.json").write_text(json.dumps(metadata))
    return target


def test_bad_multiband_models_are_refused_at_load(toy_dir, tmp_path):
    two = _rewrite_metadata(toy_dir, tmp_path / "two", lambda m: m["bands"].pop())
    with pytest.raises(MetadataError, match=r"lists 2 bands, so the 'image' output must be \[N, S, S, 2\]"):
        GenerativeGalaxyModel(two)
    unknown = _rewrite_metadata(toy_dir, tmp_path / "unknown", lambda m: m["bands"][0].update(bandpass="nope.dat"))
    with pytest.raises(MetadataError, match="band 'g' bandpass 'nope.dat' is not a GalSim bandpass file"):
        GenerativeGalaxyModel(unknown)
    single = _rewrite_metadata(toy_dir, tmp_path / "single", lambda m: m.pop("bands"))
    with pytest.raises(MetadataError, match="returned an array of shape"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GenerativeGalaxyModel(single).sample(catalog(), seed=1)


# -- GalSim config --------------------------------------------------------------------------------


def field_config(model_dir, catalog_path, band: str, batch_size: int = 3) -> dict:
    return {
        "modules": ["galsim_hub"],
        "input": {
            "catalog": {"file_name": str(catalog_path)},
            "generative_model": {"file_name": str(model_dir), "batch_size": batch_size},
        },
        "gal": {
            "type": "GenerativeGalaxy",
            "mag_auto": {"type": "Catalog", "col": "mag_auto"},
            "flux_radius": {"type": "Catalog", "col": "flux_radius"},
        },
        "image": {
            "type": "Tiled",
            "nx_tiles": 3,
            "ny_tiles": 2,
            "stamp_size": 32,
            "pixel_scale": 0.1,
            "random_seed": 9,
            "bandpass": {"file_name": f"LSST_{band}.dat", "wave_type": "nm"},
        },
    }


def test_config_draws_the_chromatic_object_through_the_image_bandpass(toy_dir, tmp_path):
    import galsim.config

    path = tmp_path / "cat.fits"
    six = catalog()
    six.add_row(six[0])
    six.write(path)
    stamps = {}
    for band in TOY_BANDS:
        image = galsim.config.BuildImage(field_config(toy_dir, path, band)).array
        stamps[band] = image.reshape(2, 32, 3, 32).transpose(0, 2, 1, 3).reshape(6, 32, 32)
    per_object = galsim.config.BuildImage(field_config(toy_dir, path, "r", batch_size=1)).array
    np.testing.assert_allclose(
        per_object.reshape(2, 32, 3, 32).transpose(0, 2, 1, 3).reshape(6, 32, 32),
        stamps["r"],
        rtol=1e-4,
        atol=1e-6 * stamps["r"].max(),
    )
    flux = {band: stamps[band].sum(axis=(1, 2)) for band in TOY_BANDS}
    # one morphology in every band: the toy's colours, and its bluer bands are larger
    np.testing.assert_allclose(flux["g"] / flux["r"], BAND_FLUX_FACTORS[0], rtol=1e-2)
    np.testing.assert_allclose(flux["i"] / flux["r"], BAND_FLUX_FACTORS[2], rtol=1e-2)
    peak = {band: stamps[band].max(axis=(1, 2)) / flux[band] for band in TOY_BANDS}
    assert (peak["g"] < peak["r"]).all() and (peak["r"] < peak["i"]).all()


# -- command line ---------------------------------------------------------------------------------


def test_cli_sample_writes_one_cube_per_band(toy, toy_dir, single_band_dir, tmp_path, capsys):
    from astropy.io import fits

    from galsim_hub.cli import main

    path = tmp_path / "cat.fits"
    catalog().write(path)
    out = tmp_path / "all.fits"
    assert main(["sample", str(toy_dir), "--catalog", str(path), "--seed", "4", "--out", str(out)]) == 0
    assert "in each of the bands g,r,i" in capsys.readouterr().out
    expected = toy.sample(catalog(), seed=4, return_arrays=True)
    with fits.open(out) as hdus:
        assert [hdu.name for hdu in hdus] == ["PRIMARY", "G", "R", "I", "CATALOG"]
        assert hdus[0].header["BANDS"] == "g,r,i" and hdus["I"].header["ZEROPT"] == ZERO_POINT
        for b, band in enumerate(TOY_BANDS):
            np.testing.assert_allclose(hdus[band].data, expected[..., b], rtol=1e-6)
    some = tmp_path / "ri.fits"
    assert (
        main(["sample", str(toy_dir), "--n", "2", "--seed", "4", "--bands", "r,i", "--psf", "0.3", "--out", str(some)])
        == 0
    )
    with fits.open(some) as hdus:
        assert [hdu.name for hdu in hdus] == ["PRIMARY", "R", "I", "CATALOG"] and hdus["R"].data.shape[0] == 2
        assert (hdus["I"].data.sum(axis=(1, 2)) > hdus["R"].data.sum(axis=(1, 2))).all()
    # Per-band catalog fluxes: BAND=COLUMN pairs, magnitudes with each band's zero point.
    fluxed = tmp_path / "fluxed.fits"
    assert (
        main(
            [
                "sample",
                str(toy_dir),
                "--catalog",
                str(path),
                "--seed",
                "4",
                "--flux-column",
                "g=flux_g",
                "--out",
                str(fluxed),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "sample",
                str(toy_dir),
                "--catalog",
                str(path),
                "--seed",
                "4",
                "--mag-column",
                "i=mag_i",
                "--out",
                str(tmp_path / "mag.fits"),
            ]
        )
        == 0
    )
    with fits.open(fluxed) as hdus, fits.open(tmp_path / "mag.fits") as mags:
        np.testing.assert_allclose(hdus["G"].data.sum(axis=(1, 2)), catalog()["flux_g"], rtol=1e-5)
        np.testing.assert_allclose(hdus["R"].data, expected[..., 1], rtol=1e-6)  # bands not given keep their flux
        np.testing.assert_allclose(
            ZERO_POINT - 2.5 * np.log10(mags["I"].data.sum(axis=(1, 2))), catalog()["mag_i"], atol=1e-5
        )
    capsys.readouterr()
    for options, message in (
        (["--bands", "z"], "--bands 'z': the model's bands are g,r,i"),
        (["--catalog", str(path), "--mag-column", "mag_i"], "takes BAND=COLUMN pairs"),
        (["--catalog", str(path), "--flux-column", "u=flux_g"], "over its bands g,r,i"),
        (
            ["--catalog", str(path), "--mag-column", "i=mag_i", "--zero-point", "28"],
            "--zero-point applies to single-band models",
        ),
    ):
        assert (
            main(["sample", str(toy_dir), "--n", "2", "--seed", "1", *options, "--out", str(tmp_path / "x.fits")]) == 1
        )
        assert message in capsys.readouterr().err
    assert main(["sample", str(single_band_dir), "--n", "2", "--bands", "g", "--out", str(tmp_path / "x.fits")]) == 1
    assert "--bands needs a multi-band model" in capsys.readouterr().err


def test_a_multiband_model_publishes_and_samples_from_its_hub(toy, toy_dir, tmp_path, monkeypatch):
    from galsim_hub.hub.publish import publish

    hub = tmp_path / "hub"
    hub.mkdir()
    entry = publish(toy_dir, hub)
    assert entry["metadata"]["bands"][0]["name"] == "g"
    monkeypatch.setenv("GALSIM_HUB_INDEX", str(hub / "index.json"))
    model = GenerativeGalaxyModel("hub:toy_bands")
    assert model.bands == list(TOY_BANDS)
    np.testing.assert_allclose(
        model.sample(catalog(), seed=8, return_arrays=True),
        toy.sample(catalog(), seed=8, return_arrays=True),
        rtol=1e-6,
    )
    broken = _rewrite_metadata(toy_dir, tmp_path / "broken", lambda m: m["bands"][2].update(bandpass="nope.dat"))
    with pytest.raises(MetadataError, match="band 'i' bandpass 'nope.dat'"):
        publish(broken, hub, version="2.0")


def test_config_with_an_achromatic_psf_draws_the_galaxy_through_the_bandpass_once(toy_dir, tmp_path, monkeypatch):
    """With an achromatic PSF the config's galaxy is its image through the bandpass: same pixels, one FFT."""
    import galsim.config

    import galsim_hub.config.gsobject_generative_galaxy as hub_config

    path = tmp_path / "cat.fits"
    six = catalog()
    six.add_row(six[0])
    six.write(path)
    config = field_config(toy_dir, path, "g")
    config["psf"] = {"type": "Moffat", "beta": 3.0, "fwhm": 0.3}
    built = []
    original = hub_config.as_gsobject

    def recording(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(hub_config, "as_gsobject", recording)
    once = galsim.config.BuildImage(copy.deepcopy(config)).array
    assert built and all(isinstance(obj, galsim.InterpolatedImage) for obj in built)
    monkeypatch.setattr(hub_config, "achromatic_bandpass", lambda base: None)
    built.clear()
    per_band = galsim.config.BuildImage(copy.deepcopy(config)).array
    assert built and all(isinstance(obj, galsim.ChromaticObject) for obj in built)
    np.testing.assert_allclose(once, per_band, rtol=1e-4, atol=1e-5 * per_band.max())


def test_the_single_fft_path_needs_an_achromatic_stamp():
    from galsim_hub.config.gsobject_generative_galaxy import achromatic_bandpass as _achromatic_bandpass

    bandpass = galsim.Bandpass("LSST_g.dat", wave_type="nm")
    moffat = galsim.Moffat(beta=3.0, fwhm=0.3)
    base = {"bandpass": bandpass, "obj_num": 4, "psf": {"current": (moffat, False, None, 4, "obj_num")}}
    assert _achromatic_bandpass(base) is bandpass
    assert _achromatic_bandpass({"bandpass": bandpass}) is bandpass  # no PSF at all
    assert _achromatic_bandpass({**base, "psf": {"current": (moffat, True, None, 0, "obj_num")}}) is bandpass
    assert _achromatic_bandpass({**base, "psf": {"current": (moffat, False, None, 3, "obj_num")}}) is None
    chromatic_psf = galsim.ChromaticAtmosphere(moffat, base_wavelength=500.0, zenith_angle=30 * galsim.degrees)
    assert _achromatic_bandpass({**base, "psf": {"current": (chromatic_psf, False, None, 4, "obj_num")}}) is None
    assert _achromatic_bandpass({**base, "stamp": {"photon_ops": [{"type": "WavelengthSampler"}]}}) is None
    assert _achromatic_bandpass({**base, "image": {"sensor": {"type": "Silicon"}}}) is None
    assert _achromatic_bandpass({**base, "stamp": {"draw_method": "phot"}}) is None
    assert _achromatic_bandpass({k: v for k, v in base.items() if k != "bandpass"}) is None
