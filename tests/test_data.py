"""Tests of galsim_hub.training.datasets.data: synthetic and COSMOS data sets, reading and streaming."""

import json
import pathlib

import galsim
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galsim_hub.errors import CatalogError, MetadataError
from galsim_hub.training.datasets import data
from galsim_hub.training.datasets import synthetic as synthetic_population

STAMP = 32
N_SYNTHETIC = 24


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "set"
    data.build_synthetic_dataset(out, N_SYNTHETIC, stamp_size=STAMP, seed=3, shard_size=10, progress=False)
    return out


def test_synthetic_metadata_and_arrays(synthetic):
    meta = data.read_dataset_metadata(synthetic)
    assert meta["format"] == 1 and meta["source"] == "synthetic"
    assert meta["stamp_size"] == STAMP and meta["pixel_scale"] == 0.03
    assert meta["n_examples"] == N_SYNTHETIC
    assert meta["shards"] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    assert [c["name"] for c in meta["conditions"]] == ["mag_auto", "flux_radius", "zphot"]
    assert meta["zero_point"] == pytest.approx(25.94)
    assert meta["config"]["seed"] == 3

    arrays = data.load_arrays(synthetic)
    expected = {
        "image": ((N_SYNTHETIC, STAMP, STAMP), np.float32),
        "psf": ((N_SYNTHETIC, STAMP, STAMP), np.float32),
        "noise_var": ((N_SYNTHETIC,), np.float32),
        "noise_ps": ((N_SYNTHETIC, STAMP, STAMP // 2 + 1), np.float32),
        "conditions": ((N_SYNTHETIC, 3), np.float32),
        "ident": ((N_SYNTHETIC,), np.int64),
        "truth": ((N_SYNTHETIC, STAMP, STAMP), np.float32),
        "truth_smooth": ((N_SYNTHETIC, STAMP, STAMP), np.float32),
    }
    assert set(arrays) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert arrays[key].shape == shape, key
        assert arrays[key].dtype == dtype, key
        assert np.all(np.isfinite(arrays[key])), key
    np.testing.assert_array_equal(arrays["ident"], np.arange(N_SYNTHETIC))
    # The ranges in the metadata are those of the data.
    for i, condition in enumerate(meta["conditions"]):
        assert condition["min"] == pytest.approx(arrays["conditions"][:, i].min())
        assert condition["max"] == pytest.approx(arrays["conditions"][:, i].max())


def test_synthetic_physics(synthetic):
    arrays = data.load_arrays(synthetic)
    mag, radius, zphot = arrays["conditions"].T
    # PSF: unit sum, peak on pixel (S//2, S//2).
    np.testing.assert_allclose(arrays["psf"].sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert np.unravel_index(arrays["psf"][0].argmax(), (STAMP, STAMP)) == (STAMP // 2,) * 2
    # Noise: the corners are pure noise at the COSMOS level; white noise has a flat spectrum.
    corners = np.concatenate([arrays["image"][:, :5, :5].ravel(), arrays["image"][:, -5:, -5:].ravel()])
    assert corners.std() == pytest.approx(data.COSMOS_NOISE_SIGMA, rel=0.15)
    np.testing.assert_allclose(arrays["noise_var"], data.COSMOS_NOISE_SIGMA**2, rtol=1e-5)
    np.testing.assert_allclose(arrays["noise_ps"], data.COSMOS_NOISE_SIGMA**2, rtol=1e-5)
    # The truth holds the flux of mag_auto, up to what falls outside the stamp.
    flux = 10 ** (-0.4 * (mag - 25.94))
    truth_flux = arrays["truth"].sum(axis=(1, 2))
    assert np.all(truth_flux / flux > 0.85) and np.all(truth_flux / flux < 1.005)
    # The smooth twin keeps the total flux (knots given back to the disc).
    np.testing.assert_allclose(arrays["truth_smooth"].sum(axis=(1, 2)), truth_flux, rtol=0.03)
    assert np.all(np.abs(arrays["truth_smooth"] - arrays["truth"]).max(axis=(1, 2)) > 0)
    # Galaxies fit the stamp; the population is in its documented ranges.
    assert np.all(radius > 0.5) and np.all(radius <= STAMP / 5)
    assert np.all((mag >= 20.0) & (mag <= 25.2))
    assert np.all(zphot > 0)


def test_synthetic_is_reproducible(synthetic, tmp_path):
    again = data.build_synthetic_dataset(tmp_path / "again", 12, stamp_size=STAMP, seed=3, shard_size=5, progress=False)
    first, second = data.load_arrays(synthetic), data.load_arrays(again)
    for key in first:
        np.testing.assert_array_equal(first[key][:12], second[key], err_msg=key)
    other = data.build_synthetic_dataset(tmp_path / "other", 12, stamp_size=STAMP, seed=4, progress=False)
    assert not np.allclose(data.load_arrays(other, ["image"])["image"], first["image"][:12])


def test_synthetic_flux_is_shared_between_twins():
    params = data.sample_synthetic_parameters(np.random.default_rng(1), psf_hlr_arcsec=0.05)
    galaxy, smooth = data.synthetic_galaxy_profiles(params)
    expected = 10 ** (-0.4 * (params["mag"] - 25.94))
    assert galaxy.flux == pytest.approx(expected, rel=1e-6)
    assert smooth.flux == pytest.approx(expected, rel=1e-6)


def test_flux_radius_of_a_gaussian():
    sigma_pixels = 3.0
    image = galsim.Gaussian(sigma=sigma_pixels).drawImage(nx=64, ny=64, scale=1.0).array
    # Half-light radius of a circular Gaussian: sigma * sqrt(2 ln 2).
    assert data.flux_radius_pixels(image) == pytest.approx(sigma_pixels * np.sqrt(2 * np.log(2)), rel=0.03)


def test_correlated_noise_power_spectrum_is_true():
    model = synthetic_population.NoiseModel(0.5, 16, correlated=True)
    rng = np.random.default_rng(0)
    samples = np.array([model.sample(rng) for _ in range(4000)])
    measured = (np.abs(np.fft.rfft2(samples)) ** 2).mean(axis=0) / 16**2
    np.testing.assert_allclose(measured, model.power_spectrum, rtol=0.15, atol=0.02 * model.power_spectrum.max())
    assert samples.var() == pytest.approx(0.25, rel=0.03)
    # The inverse transform of the spectrum at lag 0 is the variance.
    assert np.fft.irfft2(model.power_spectrum, s=(16, 16))[0, 0] == pytest.approx(0.25, rel=1e-6)
    # Neighbouring pixels are correlated like ACS noise (about 0.48).
    neighbour = (samples * np.roll(samples, 1, axis=2)).mean() / samples.var()
    assert neighbour == pytest.approx(0.48, abs=0.05)


def test_synthetic_custom_psf_and_correlated_noise(tmp_path):
    out = data.build_synthetic_dataset(
        tmp_path / "set",
        4,
        stamp_size=STAMP,
        psf=galsim.Gaussian(fwhm=0.1),
        noise_sigma=0.01,
        correlated_noise=True,
        progress=False,
    )
    meta = data.read_dataset_metadata(out)
    assert meta["psf"]["type"] == "galsim" and "Gaussian" in meta["psf"]["repr"]
    assert meta["noise"]["type"] == "correlated_gaussian"
    arrays = data.load_arrays(out, ["psf", "noise_ps", "noise_var"])
    expected_psf = (
        galsim.Gaussian(fwhm=0.1)
        .drawImage(nx=STAMP, ny=STAMP, scale=0.03, method="no_pixel", use_true_center=False)
        .array
    )
    np.testing.assert_allclose(arrays["psf"][0], expected_psf / expected_psf.sum(), atol=1e-6)
    assert arrays["noise_ps"][0].max() > 2 * arrays["noise_ps"][0].min()
    variance = np.fft.irfft2(arrays["noise_ps"][0], s=(STAMP, STAMP))[0, 0]
    assert variance == pytest.approx(1e-4, rel=1e-4)


def test_build_refuses_non_empty_directory(tmp_path):
    out = tmp_path / "set"
    data.build_synthetic_dataset(out, 2, stamp_size=STAMP, progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        data.build_synthetic_dataset(out, 2, stamp_size=STAMP, progress=False)
    data.build_synthetic_dataset(out, 3, stamp_size=STAMP, shard_size=2, overwrite=True, progress=False)
    assert data.read_dataset_metadata(out)["n_examples"] == 3
    assert sorted(p.name for p in out.glob("*.npz")) == ["shard-00000.npz", "shard-00001.npz"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_examples": 0}, "n_examples"),
        ({"stamp_size": 8}, "stamp_size"),
        ({"pixel_scale": -1}, "pixel_scale"),
        ({"psf": "jwst"}, "psf"),
        ({"noise_sigma": -1.0}, "noise_sigma"),
    ],
)
def test_synthetic_invalid_arguments(tmp_path, kwargs, name):
    args = {"n_examples": 2, "stamp_size": STAMP, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=name):
        data.build_synthetic_dataset(tmp_path / "set", args.pop("n_examples"), **args)
    assert not (tmp_path / "set" / "dataset.json").exists()


def test_unfinished_or_malformed_dataset_is_rejected(synthetic, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "shard-00000.npz").write_bytes(b"")
    with pytest.raises(MetadataError, match="did not finish"):
        data.read_dataset_metadata(unfinished)
    meta = json.loads((synthetic / "dataset.json").read_text())
    cases = [
        ({"format": 2}, "format 2"),
        ({"shards": ["nope.npz"]}, "nope.npz"),
        ({"conditions": [{"name": "x"}]}, "condition 0"),
    ]
    for i, (change, message) in enumerate(cases):
        broken = tmp_path / f"broken{i}"
        broken.mkdir()
        (broken / "dataset.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(MetadataError, match=message):
            data.read_dataset_metadata(broken)
    with pytest.raises(MetadataError, match="no array"):
        data.load_arrays(synthetic, ["image", "truthiness"])


def test_tf_dataset_streams_batches(synthetic):
    batch = 8
    stream = data.make_tf_dataset(synthetic, batch, keys=("image", "conditions", "noise_ps"), repeat=False, seed=1)
    batches = list(stream.as_numpy_iterator())
    assert len(batches) == N_SYNTHETIC // batch
    for item in batches:
        assert item["image"].shape == (batch, STAMP, STAMP)
        assert item["conditions"].shape == (batch, 3)
        assert item["noise_ps"].shape == (batch, STAMP, STAMP // 2 + 1)
    # Each example appears once per pass; shuffling is seeded.
    seen = np.concatenate([b["conditions"][:, 0] for b in batches])
    all_mags = data.load_arrays(synthetic, ["conditions"])["conditions"][:, 0]
    assert len(np.unique(seen)) == N_SYNTHETIC and np.isin(seen, all_mags).all()
    assert not np.array_equal(seen, all_mags)
    again = np.concatenate(
        [
            b["conditions"][:, 0]
            for b in data.make_tf_dataset(
                synthetic, batch, keys=("conditions",), repeat=False, seed=1
            ).as_numpy_iterator()
        ]
    )
    np.testing.assert_array_equal(seen, again)
    ordered = data.make_tf_dataset(synthetic, 5, keys=("ident",), shuffle=False, repeat=True)
    idents = np.concatenate([b["ident"] for b in ordered.take(6).as_numpy_iterator()])
    np.testing.assert_array_equal(idents, np.arange(30) % N_SYNTHETIC)
    with pytest.raises(ValueError, match="batch_size"):
        data.make_tf_dataset(synthetic, N_SYNTHETIC + 1)


# ------------------------------------------------------------------------------------------
# COSMOS format: a small sample written in the layout of galsim_download_cosmos.
# ------------------------------------------------------------------------------------------

CATALOG = "real_galaxy_catalog_test.fits"
COSMOS_VARIANCE = 4e-6


def write_cosmos_sample(directory: pathlib.Path, n: int = 5, nan_ident: int | None = None):
    """Write a tiny COSMOS-format training sample (RealGalaxyCatalog layout) into directory."""
    rng = np.random.default_rng(0)
    psf = galsim.Gaussian(fwhm=0.1)
    gal_hdus, psf_hdus, rows, fit_rows = [], [], [], []
    for i in range(n):
        flux = 5.0 * (i + 1)
        galaxy = galsim.Sersic(n=0.5 + 0.25 * i, half_light_radius=0.08 + 0.01 * i, flux=flux)
        size = 36 + 4 * (i % 3)
        image = galsim.Convolve(galaxy.shear(e1=0.2, e2=-0.1), psf).drawImage(nx=size, ny=size, scale=0.03).array
        image += rng.normal(0.0, np.sqrt(COSMOS_VARIANCE), image.shape)
        ident = 1000 + i
        if ident == nan_ident:
            image[3, 3] = np.nan
        psf_image = psf.drawImage(nx=25, ny=25, scale=0.03).array
        hdu = fits.PrimaryHDU if i == 0 else fits.ImageHDU
        gal_hdus.append(hdu(image.astype(np.float32)))
        psf_hdus.append(hdu(psf_image.astype(np.float32)))
        mag = 25.94 - 2.5 * np.log10(flux)
        rows.append(
            (
                ident,
                150.0,
                2.0,
                mag,
                "F814W",
                1.0,
                "gals.fits",
                "psfs.fits",
                i,
                i,
                0.03,
                0.0,
                COSMOS_VARIANCE,
                "cf.fits",
                float(image.sum()),
            )
        )
        fit_rows.append((ident, mag + 0.01, 5.0 + i, 0.3 + 0.2 * i))
    fits.HDUList(gal_hdus).writeto(directory / "gals.fits")
    fits.HDUList(psf_hdus).writeto(directory / "psfs.fits")
    cf = np.zeros((9, 9))
    cf[4, 4] = 1.0  # uncorrelated noise
    fits.PrimaryHDU(cf).writeto(directory / "cf.fits")
    Table(
        rows=rows,
        names=[
            "IDENT",
            "RA",
            "DEC",
            "MAG",
            "BAND",
            "WEIGHT",
            "GAL_FILENAME",
            "PSF_FILENAME",
            "GAL_HDU",
            "PSF_HDU",
            "PIXEL_SCALE",
            "NOISE_MEAN",
            "NOISE_VARIANCE",
            "NOISE_FILENAME",
            "stamp_flux",
        ],
    ).write(directory / CATALOG)
    Table(rows=fit_rows, names=["IDENT", "mag_auto", "flux_radius", "ZPHOT"]).write(
        directory / CATALOG.replace(".fits", "_fits.fits")
    )


@pytest.fixture
def cosmos_dir(tmp_path):
    directory = tmp_path / "cosmos"
    directory.mkdir()
    write_cosmos_sample(directory)
    return directory


def test_cosmos_dataset(cosmos_dir, tmp_path):
    out = data.build_cosmos_dataset(
        tmp_path / "set",
        cosmos_dir,
        catalog_file=CATALOG,
        stamp_size=STAMP,
        exclusion_level="none",
        shard_size=2,
        progress=False,
    )
    meta = data.read_dataset_metadata(out)
    assert meta["source"] == "cosmos" and meta["n_examples"] == 5 and len(meta["shards"]) == 3
    assert [c["name"] for c in meta["conditions"]] == ["mag_auto", "flux_radius", "zphot"]
    arrays = data.load_arrays(out)
    assert set(arrays) == {"image", "psf", "noise_var", "noise_ps", "conditions", "ident", "background"}
    assert arrays["image"].shape == (5, STAMP, STAMP) and arrays["image"].dtype == np.float32
    assert arrays["noise_ps"].shape == (5, STAMP, STAMP // 2 + 1)
    np.testing.assert_array_equal(arrays["ident"], 1000 + np.arange(5))
    fits_cat = Table.read(cosmos_dir / CATALOG.replace(".fits", "_fits.fits"))
    np.testing.assert_allclose(
        arrays["conditions"],
        np.stack([fits_cat["mag_auto"], fits_cat["flux_radius"], fits_cat["ZPHOT"]], axis=1),
        rtol=1e-6,
    )
    # Uncorrelated catalog noise: a flat power spectrum at the catalog variance at low
    # frequencies, cut beyond the PSF's maxk by the deconvolution and reconvolution.
    np.testing.assert_allclose(arrays["noise_ps"][:, :3, :3], COSMOS_VARIANCE, rtol=0.05)
    lag0 = np.fft.irfft2(arrays["noise_ps"], s=(STAMP, STAMP), axes=(1, 2))[:, 0, 0]
    np.testing.assert_allclose(arrays["noise_var"], lag0, rtol=0.02)
    assert np.all(arrays["noise_ps"] >= 0)
    assert np.all(arrays["noise_var"] < COSMOS_VARIANCE)
    np.testing.assert_allclose(arrays["psf"].sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert np.unravel_index(arrays["psf"][0].argmax(), (STAMP, STAMP)) == (STAMP // 2,) * 2
    # The galaxy keeps its flux and sits at the centre; noise padding fills the whole stamp.
    flux = 10 ** (-0.4 * (Table.read(cosmos_dir / CATALOG)["MAG"] - 25.94))
    np.testing.assert_allclose(arrays["image"].sum(axis=(1, 2)), flux, rtol=0.05)
    assert np.unravel_index(arrays["image"][0].argmax(), (STAMP, STAMP)) in {(r, c) for r in (15, 16) for c in (15, 16)}
    corners = arrays["image"][:, :4, :4]
    assert corners.std() == pytest.approx(np.sqrt(arrays["noise_var"].mean()), rel=0.15)
    assert np.count_nonzero(corners == 0) == 0


def test_cosmos_cuts_columns_and_subsets(cosmos_dir, tmp_path):
    out = data.build_cosmos_dataset(
        tmp_path / "a",
        cosmos_dir,
        catalog_file=CATALOG,
        stamp_size=STAMP,
        exclusion_level="none",
        conditions=("MAG", "zphot"),
        max_mag=23.2,
        min_flux_radius=6.0,
        progress=False,
    )
    arrays = data.load_arrays(out, ["ident", "conditions"])
    # flux_radius >= 6 drops 1000; mag_auto <= 23.2 drops 1000 (24.2) and 1001 (23.45).
    np.testing.assert_array_equal(arrays["ident"], [1002, 1003, 1004])
    assert [c["name"] for c in data.read_dataset_metadata(out)["conditions"]] == ["MAG", "zphot"]
    subset = data.build_cosmos_dataset(
        tmp_path / "b",
        cosmos_dir,
        catalog_file=CATALOG,
        stamp_size=STAMP,
        exclusion_level="none",
        max_galaxies=2,
        seed=5,
        progress=False,
    )
    idents = data.load_arrays(subset, ["ident"])["ident"]
    assert len(idents) == 2 and set(idents) <= set(range(1000, 1005))


def test_cosmos_missing_files(cosmos_dir, tmp_path):
    (cosmos_dir / "gals.fits").unlink()
    (cosmos_dir / "cf.fits").unlink()
    with pytest.raises(data.CosmosFilesNotFoundError) as info:
        data.build_cosmos_dataset(
            tmp_path / "set", cosmos_dir, catalog_file=CATALOG, exclusion_level="none", progress=False
        )
    message = str(info.value)
    assert "gals.fits" in message and "cf.fits" in message and "psfs.fits" not in message
    assert str(cosmos_dir) in message and "galsim_download_cosmos -s 25.2" in message
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="real_galaxy_catalog_25.2_fits.fits"):
        data.build_cosmos_dataset(tmp_path / "set", tmp_path / "empty", progress=False)


def test_cosmos_missing_condition_column(cosmos_dir, tmp_path):
    with pytest.raises(CatalogError, match="'sfr'") as info:
        data.build_cosmos_dataset(
            tmp_path / "set",
            cosmos_dir,
            catalog_file=CATALOG,
            exclusion_level="none",
            conditions=("mag_auto", "sfr"),
            progress=False,
        )
    assert "flux_radius" in str(info.value) and "ZPHOT" in str(info.value)
    # Quality cuts that need parametric fits say how to do without them.
    with pytest.raises(CatalogError, match="exclusion_level='none'"):
        data.build_cosmos_dataset(
            tmp_path / "set", cosmos_dir, catalog_file=CATALOG, exclusion_level="bad_fits", progress=False
        )
    with pytest.raises(ValueError, match="exclusion_level"):
        data.build_cosmos_dataset(
            tmp_path / "set", cosmos_dir, catalog_file=CATALOG, exclusion_level="strict", progress=False
        )


def test_cosmos_nan_stamp_names_the_galaxy(tmp_path):
    directory = tmp_path / "cosmos"
    directory.mkdir()
    write_cosmos_sample(directory, n=3, nan_ident=1001)
    with pytest.raises(CatalogError, match="IDENT 1001"):
        data.build_cosmos_dataset(
            tmp_path / "set", directory, catalog_file=CATALOG, stamp_size=STAMP, exclusion_level="none", progress=False
        )
    assert not (tmp_path / "set" / "dataset.json").exists()
