"""Tests of galsim_hub.training.validation.morphology (morphology statistics, comparisons, report)."""

import json

import galsim
import matplotlib.image
import numpy as np
import pytest
from astropy.table import Table

import galsim_hub
from galsim_hub.cli import main
from galsim_hub.errors import CatalogError
from galsim_hub.training.validation import morphology, statistics

STAMP = 32
SCALE = 0.03
NOISE = 0.05
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------
# Helpers: a tiny data set in the format of galsim_hub.training.datasets.data, and fake models
# ----------------------------------------------------------------------------------------
def _clumpy_galaxy(rng):
    """An exponential disc with bright knots, and its smooth counterpart of the same flux."""
    flux = rng.uniform(60, 150)
    hlr = rng.uniform(0.1, 0.18)
    shear = dict(g1=rng.uniform(-0.3, 0.3), g2=rng.uniform(-0.3, 0.3))
    disc = galsim.Exponential(half_light_radius=hlr).shear(**shear)
    knots = [galsim.Gaussian(sigma=0.012).shift(*rng.uniform(-1.2 * hlr, 1.2 * hlr, 2)) for _ in range(4)]
    clumpy = galsim.Add([disc.withFlux(0.5 * flux)] + [k.withFlux(0.125 * flux) for k in knots])
    return clumpy, disc.withFlux(flux), flux, hlr


def correlated_power_spectrum(sigma, size, kernel_sigma=0.6):
    """rfft2-layout power spectrum of noise of rms ``sigma`` smoothed by a Gaussian kernel."""
    y, x = np.indices((size, size)) - size // 2
    kernel = np.exp(-0.5 * (x**2 + y**2) / kernel_sigma**2)
    kernel /= np.sqrt((kernel**2).sum())
    return sigma**2 * np.abs(np.fft.rfft2(np.fft.ifftshift(kernel))) ** 2


def write_dataset(path, n=24, seed=1, noise_ps=True):
    """Write ``dataset.json`` and one shard with truth, truth_smooth, a noisy image, conditions,
    psf, noise_var and (optionally) a correlated noise power spectrum ``noise_ps``."""
    rng = np.random.default_rng(seed)
    psf = galsim.Gaussian(fwhm=0.08)
    psf_image = psf.drawImage(nx=STAMP, ny=STAMP, scale=SCALE, method="no_pixel", use_true_center=False).array
    psf_image /= psf_image.sum()
    truth, smooth, conditions = [], [], []
    for _ in range(n):
        clumpy, disc, flux, hlr = _clumpy_galaxy(rng)
        truth.append(clumpy.drawImage(nx=STAMP, ny=STAMP, scale=SCALE).array)
        smooth.append(disc.drawImage(nx=STAMP, ny=STAMP, scale=SCALE).array)
        conditions.append((25.94 - 2.5 * np.log10(flux), hlr / SCALE, rng.uniform(0.2, 2.0)))
    conditions = np.array(conditions, dtype=np.float32)
    path.mkdir(parents=True, exist_ok=True)
    arrays = dict(
        truth=np.array(truth, np.float32),
        truth_smooth=np.array(smooth, np.float32),
        image=(np.array(truth) + rng.normal(0, NOISE, np.shape(truth))).astype(np.float32),
        conditions=conditions,
        psf=np.repeat(psf_image[None].astype(np.float32), n, axis=0),
        noise_var=np.full(n, NOISE**2, np.float32),
        ident=np.arange(n, dtype=np.int64),
    )
    if noise_ps:
        arrays["noise_ps"] = np.repeat(correlated_power_spectrum(NOISE, STAMP)[None], n, axis=0).astype(np.float32)
    np.savez(path / "shard-00000.npz", **arrays)
    names = ("mag_auto", "flux_radius", "zphot")
    metadata = {
        "format": 1,
        "source": "synthetic",
        "stamp_size": STAMP,
        "pixel_scale": SCALE,
        "flux_units": "counts",
        "zero_point": 25.94,
        "n_examples": n,
        "shards": ["shard-00000.npz"],
        "psf": {"description": "Gaussian FWHM 0.08 arcsec"},
        "conditions": [
            {
                "name": name,
                "unit": "",
                "description": name,
                "min": float(conditions[:, i].min()),
                "max": float(conditions[:, i].max()),
            }
            for i, name in enumerate(names)
        ],
    }
    (path / "dataset.json").write_text(json.dumps(metadata))
    return path


class FakeModel:
    """A stand-in with the GenerativeGalaxyModel API that looks galaxies up by their conditions."""

    quantities = ["mag_auto", "flux_radius"]
    pixel_scale = SCALE
    stamp_size = STAMP

    def __init__(self, data_dir, wrong=False):
        with np.load(data_dir / "shard-00000.npz") as shard:
            self.truth = shard["truth"]
            self.conditions = shard["conditions"][:, :2]
        self.wrong = wrong
        self.calls = []

    def sample(self, cat, seed=None, return_arrays=False, out_of_range="clip"):
        assert return_arrays
        self.calls.append(list(cat.colnames))
        wanted = np.stack([np.asarray(cat[q]) for q in self.quantities], axis=1)
        rows = [int(np.argmin(np.abs(self.conditions - w).sum(axis=1))) for w in wanted]
        rng = np.random.default_rng(seed)
        if not self.wrong:  # the right galaxy, flux off by up to 1%
            return self.truth[rows] * rng.uniform(0.99, 1.01, len(rows))[:, None, None]
        # Round smooth blobs twice too large: wrong size, ellipticity and morphology.
        return np.array(
            [
                galsim.Gaussian(sigma=2 * self.conditions[r, 1] * SCALE, flux=self.truth[r].sum())
                .drawImage(nx=STAMP, ny=STAMP, scale=SCALE)
                .array
                for r in rows
            ]
        )


def _noisy(images, sigma=0.01, seed=0):
    return np.asarray(images) + np.random.default_rng(seed).normal(0, sigma, np.shape(images))


# ----------------------------------------------------------------------------------------
# Statistics of known profiles
# ----------------------------------------------------------------------------------------
def test_hsm_size_ellipticity_and_flux_of_gaussians():
    sigmas = np.array([0.05, 0.08, 0.1])
    images = [
        galsim.Gaussian(sigma=s, flux=100)
        .shear(g1=0.3, g2=-0.2)
        .drawImage(nx=STAMP, ny=STAMP, scale=SCALE, method="no_pixel")
        .array
        for s in sigmas
    ]
    table = morphology.measure_statistics(_noisy(images), SCALE, noise_sigma=0.01, n_morph=0)
    assert table["hsm_ok"].all()
    # HSM's sigma is the determinant radius; GalSim's shear keeps the area, so it is unchanged.
    np.testing.assert_allclose(table["sigma"], sigmas, rtol=0.01)
    np.testing.assert_allclose(table["g1"], 0.3, atol=0.01)
    np.testing.assert_allclose(table["g2"], -0.2, atol=0.01)
    np.testing.assert_allclose(table["g"], np.hypot(0.3, 0.2), atol=0.01)
    np.testing.assert_allclose(table["flux"], 100, rtol=0.01)
    assert not table["morph_ok"].any() and (table["morph_flag"] == -1).all()


def test_gini_of_uniform_disc_is_low_and_of_concentrated_profile_high():
    y, x = np.mgrid[:STAMP, :STAMP] - (STAMP - 1) / 2
    radius = np.hypot(x, y)
    disc = (radius < 8).astype(float)
    concentrated = 10 * np.exp(-radius / 1.0)
    table = morphology.measure_statistics(_noisy([disc, concentrated]), SCALE, noise_sigma=0.01)
    assert table["morph_ok"].all()
    assert table["gini"][0] < 0.2
    assert table["gini"][1] > 0.45
    # M20 of a concentrated profile is more negative than that of a flat disc.
    assert table["m20"][1] < table["m20"][0]


def test_central_segmap_keeps_the_central_source():
    image = np.zeros((STAMP, STAMP))
    image[14:18, 14:18] = 1.0  # central source
    image[1:4, 1:4] = 5.0  # brighter neighbour in a corner
    segmap = morphology.central_segmap(_noisy(image, 0.01), 0.01)
    assert segmap[15, 15] and not segmap[2, 2]
    assert not morphology.central_segmap(_noisy(np.zeros((STAMP, STAMP)), 0.01), 0.01, nsigma=50).any()


def test_failures_are_flagged_not_raised_and_subset_is_respected():
    source = galsim.Gaussian(sigma=0.08, flux=100).drawImage(nx=STAMP, ny=STAMP, scale=SCALE).array
    images = _noisy([source, np.zeros((STAMP, STAMP)), -source, source], 0.01)
    images[1] = 0.0  # nothing at all
    table = morphology.measure_statistics(images, SCALE, noise_sigma=0.01, n_morph=3)
    assert list(table["hsm_ok"]) == [True, False, False, True]
    assert list(table["morph_ok"]) == [True, False, False, False]  # the 4th was not measured
    assert np.isnan(table["gini"][1]) and np.isnan(table["sigma"][2]) and table["morph_flag"][3] == -1


@pytest.mark.slow
def test_parallel_statmorph_matches_serial():
    images = [
        galsim.Exponential(half_light_radius=h, flux=100).drawImage(nx=STAMP, ny=STAMP, scale=SCALE).array
        for h in (0.08, 0.12, 0.16)
    ]
    images = _noisy(images, 0.02)
    serial = morphology.measure_statistics(images, SCALE, noise_sigma=0.02)
    parallel = morphology.measure_statistics(images, SCALE, noise_sigma=0.02, n_jobs=2)
    for column in morphology.STAT_COLUMNS:
        np.testing.assert_array_equal(serial[column], parallel[column])


def test_noise_is_estimated_from_the_borders_when_not_given():
    source = galsim.Gaussian(sigma=0.08, flux=100).drawImage(nx=STAMP, ny=STAMP, scale=SCALE).array
    images = _noisy([source] * 20, 0.02)
    estimates = statistics._border_noise(images)
    assert estimates.mean() == pytest.approx(0.02, rel=0.05)
    np.testing.assert_allclose(estimates, 0.02, rtol=0.3)
    assert morphology.measure_statistics(images[:1], SCALE)["morph_ok"][0]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="non-finite"):
        morphology.measure_statistics(np.full((1, STAMP, STAMP), np.nan), SCALE)
    with pytest.raises(ValueError, match="noise_sigma"):
        morphology.measure_statistics(np.zeros((2, STAMP, STAMP)), SCALE, noise_sigma=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="segmap"):
        morphology.measure_statistics(np.zeros((2, STAMP, STAMP)), SCALE, segmap=np.ones((5, 5)))


# ----------------------------------------------------------------------------------------
# Drawing observed stamps
# ----------------------------------------------------------------------------------------
def test_draw_observed_convolves_resamples_and_adds_noise():
    profile = galsim.Gaussian(sigma=0.1, flux=50).drawImage(nx=64, ny=64, scale=0.015).array
    psf = galsim.Gaussian(sigma=0.05)
    noiseless = morphology.draw_observed([profile] * 2, 0.015, psf, SCALE, STAMP, 0.0, rng=1)
    assert noiseless.shape == (2, STAMP, STAMP)
    np.testing.assert_allclose(noiseless.sum(axis=(1, 2)), 50, rtol=0.01)
    table = morphology.measure_statistics(noiseless, SCALE, noise_sigma=0.0, n_morph=0)
    np.testing.assert_allclose(table["sigma"], np.hypot(0.1, 0.05), rtol=0.03)  # pixel adds a little

    noisy = morphology.draw_observed(
        np.zeros((200, 8, 8)) + [profile[28:36, 28:36]],
        0.015,
        psf,
        SCALE,
        8,
        np.full(200, 0.3),
        rng=np.random.default_rng(2),
    )
    assert abs(np.std(noisy - noisy.mean(axis=0)) - 0.3) < 0.02
    white = morphology.draw_observed(
        np.zeros((50, 16, 16)), SCALE, psf, SCALE, 16, None, rng=3, noise_power=np.full((50, 16, 9), 0.04)
    )
    correlated = morphology.draw_observed(
        np.zeros((50, 16, 16)),
        SCALE,
        psf,
        SCALE,
        16,
        None,
        rng=3,
        noise_power=np.repeat(correlated_power_spectrum(0.2, 16)[None], 50, 0),
    )
    for noise in (white, correlated):
        assert np.std(noise) == pytest.approx(0.2, rel=0.05)
    neighbours = [np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1] for n in (white, correlated)]
    assert abs(neighbours[0]) < 0.05 and neighbours[1] > 0.3
    with pytest.raises(ValueError, match="exactly one"):
        morphology.draw_observed(np.zeros((1, 16, 16)), SCALE, psf, SCALE, 16, 0.1, noise_power=np.ones((1, 16, 9)))
    with pytest.raises(ValueError, match="noise_power must have shape"):
        morphology.draw_observed(np.zeros((1, 16, 16)), SCALE, psf, SCALE, 16, None, noise_power=np.ones((1, 16, 16)))
    empty = morphology.draw_observed(np.zeros((1, 16, 16)), SCALE, psf, SCALE, 16, 0.0, rng=0)
    assert not empty.any()
    with pytest.raises(ValueError, match="psf"):
        morphology.draw_observed([profile] * 2, 0.015, [psf], SCALE, STAMP, 0.0)


# ----------------------------------------------------------------------------------------
# Comparisons
# ----------------------------------------------------------------------------------------
def _stats_table(sigma, flux=None, morph=None, hsm_ok=None):
    n = len(sigma)
    table = Table(
        {
            "flux": np.full(n, 100.0) if flux is None else flux,
            "sigma": sigma,
            "g1": np.zeros(n),
            "g2": np.zeros(n),
            "g": np.full(n, 0.2),
            "hsm_ok": np.ones(n, bool) if hsm_ok is None else hsm_ok,
        }
    )
    for column in morphology.MORPH_COLUMNS:
        table[column] = np.zeros(n) if morph is None else morph
    table["morph_flag"] = np.zeros(n, np.int16)
    table["morph_ok"] = np.ones(n, bool)
    return table


def test_compare_samples_detects_a_shifted_distribution():
    rng = np.random.default_rng(0)
    real = _stats_table(rng.normal(0.1, 0.01, 300), morph=rng.normal(0.5, 0.05, 300))
    same = _stats_table(rng.normal(0.1, 0.01, 300), morph=rng.normal(0.5, 0.05, 300))
    shifted = _stats_table(rng.normal(0.12, 0.01, 300), morph=rng.normal(0.6, 0.05, 300))
    close = {row["statistic"]: row for row in morphology.compare_samples(real, same)}
    far = {row["statistic"]: row for row in morphology.compare_samples(real, shifted)}
    assert abs(close["sigma"]["mean_diff"]) < 0.02 and close["sigma"]["relative"]
    assert far["sigma"]["mean_diff"] == pytest.approx(0.2, abs=0.03)
    assert far["gini"]["mean_diff"] == pytest.approx(0.1, abs=0.015) and not far["gini"]["relative"]
    assert far["sigma"]["wasserstein"] == pytest.approx(0.02, abs=0.003)
    assert far["gini"]["ks"] > 0.5 > close["gini"]["ks"]
    assert far["sigma"]["ks_pvalue"] < 1e-6 < close["sigma"]["ks_pvalue"]


def test_compare_samples_uses_only_good_rows():
    real = _stats_table(np.array([0.1, 0.1, 5.0]), hsm_ok=np.array([True, True, False]))
    row = morphology.compare_samples(real, _stats_table(np.array([0.1, 0.1])), columns=["sigma"])[0]
    assert row["n_real"] == 2 and row["mean_real"] == pytest.approx(0.1) and row["wasserstein"] == 0
    with pytest.raises(KeyError, match="nope"):
        morphology.compare_samples(real, real, columns=["nope"])


def test_conditional_residuals_measure_mean_and_scatter_per_bin():
    rng = np.random.default_rng(3)
    n = 400
    sigma = rng.uniform(0.05, 0.3, n)
    ratio = 1.1 + rng.normal(0, 0.05, n)
    flux = rng.uniform(10, 1000, n)
    dmag = rng.normal(0.2, 0.1, n)
    conditions = Table({"mag_auto": 25.94 - 2.5 * np.log10(flux), "flux_radius": sigma / SCALE})
    real = _stats_table(sigma, flux=flux)
    mock = _stats_table(sigma * ratio, flux=flux * 10 ** (-0.4 * dmag))
    table = morphology.conditional_residuals(real, mock, conditions, n_bins=4)
    overall = table[table["condition"] == "all"][0]
    assert overall["n"] == n
    assert overall["size_mean"] == pytest.approx(0.1, abs=0.01)
    assert overall["size_scatter"] == pytest.approx(0.05, rel=0.15)
    assert overall["mag_mean"] == pytest.approx(0.2, abs=0.02)
    assert overall["mag_scatter"] == pytest.approx(0.1, rel=0.15)
    for name in ("mag_auto", "flux_radius"):
        bins = table[table["condition"] == name]
        assert len(bins) == 4 and bins["n"].sum() == n
        assert np.all(np.diff(bins["bin_centre"]) > 0)
    with pytest.raises(CatalogError, match="zphot"):
        morphology.conditional_residuals(real, mock, conditions, names=["zphot"])


def test_reconstruction_check():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, (4, 8, 8))
    noisy = truth + rng.normal(0, 0.1, truth.shape)
    good = morphology.reconstruction_check(truth + rng.normal(0, 0.01, truth.shape), noisy, truth)
    bad = morphology.reconstruction_check(np.zeros_like(truth), noisy, truth)
    assert good["passed"] and not bad["passed"]
    assert good["mse_noisy"] == pytest.approx(0.01, rel=0.3) and good["ratio"] < 0.1


# ----------------------------------------------------------------------------------------
# End to end, figures, report, command line
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "set", n=24)


@pytest.fixture(scope="module")
def good_run(dataset, tmp_path_factory):
    model = FakeModel(dataset)
    out = tmp_path_factory.mktemp("good")
    return morphology.run_validation(model, dataset, out, seed=3), model, out


@pytest.mark.slow
def test_run_validation_with_a_faithful_model_passes(good_run):
    results, model, out = good_run
    assert model.calls == [["mag_auto", "flux_radius"]]
    assert set(results["stats"]) == {"real", "parametric", "mock"}
    assert results["metadata"]["n_galaxies"] == 24
    assert results["metadata"]["noise"] == "data set noise power spectra"
    for sample in ("real", "mock"):
        assert results["stats"][sample]["hsm_ok"].mean() > 0.9
        assert results["stats"][sample]["morph_ok"].mean() > 0.8
    failed = [t["name"] for t in results["targets"] if not t["passed"]]
    assert failed == []
    assert len(results["targets"]) == 4 + len(morphology.MORPH_COLUMNS)


@pytest.mark.slow
def test_figures_are_valid_pngs(good_run):
    results, _, out = good_run
    names = {p.name for p in results["figures"]}
    assert names == {"size_ellipticity.png", "residuals.png", "mid.png", "gini_m20.png", "gallery.png"}
    for path in results["figures"]:
        assert path.parent == out and path.read_bytes()[:8] == PNG_SIGNATURE
        assert matplotlib.image.imread(path).shape[0] > 100


@pytest.mark.slow
def test_report_and_json(good_run):
    results, _, out = good_run
    text = (out / "validation.md").read_text()
    assert "| mean_size_relative |" in text and "| gini_distance |" in text
    assert text.count("PASS") >= len(results["targets"]) and "FAIL" not in text
    assert "gini_m20.png" in text
    numbers = json.loads((out / "validation.json").read_text())
    assert [t["name"] for t in numbers["targets"]] == [t["name"] for t in results["targets"]]
    assert numbers["comparisons"]["mock"][1]["statistic"] == "sigma"


@pytest.mark.slow
def test_run_validation_with_a_wrong_model_fails(tmp_path):
    dataset = write_dataset(tmp_path / "white", n=16, noise_ps=False)
    results = morphology.run_validation(FakeModel(dataset, wrong=True), dataset, tmp_path, n=12, seed=1, n_morph=4)
    assert results["metadata"]["noise"] == "white, data set noise_var"
    outcome = {t["name"]: t["passed"] for t in results["targets"]}
    assert not outcome["mean_size_relative"] and not outcome["mean_g_relative"]
    assert not outcome["size_scatter"]
    assert "| mean_size_relative |" in (tmp_path / "validation.md").read_text()
    assert "FAIL" in (tmp_path / "validation.md").read_text()
    assert results["metadata"]["n_galaxies"] == 12 and len(set(results["indices"])) == 12


@pytest.mark.slow
def test_reconstruction_check_in_run_validation(dataset, tmp_path):
    with np.load(dataset / "shard-00000.npz") as shard:
        truth = shard["truth"]
    results = morphology.run_validation(
        FakeModel(dataset), dataset, tmp_path, n=4, n_morph=0, reconstructions=truth * 1.001
    )
    assert results["reconstruction"]["passed"]
    assert "Autoencoder reconstructions" in (tmp_path / "validation.md").read_text()
    with pytest.raises(ValueError, match="one image per data set row"):
        morphology.run_validation(FakeModel(dataset), dataset, tmp_path, n=4, reconstructions=truth[:3])


def test_model_needing_a_missing_condition_is_an_error(dataset, tmp_path):
    model = FakeModel(dataset)
    model.quantities = ["mag_auto", "sersic_n"]
    with pytest.raises(CatalogError, match="sersic_n"):
        morphology.run_validation(model, dataset, tmp_path, n=4)


@pytest.mark.slow
def test_cli_main_writes_the_report(dataset, tmp_path, monkeypatch, capsys):
    opened = []

    def open_model(handle):
        opened.append(handle)
        return FakeModel(dataset)

    monkeypatch.setattr(galsim_hub, "GenerativeGalaxyModel", open_model, raising=False)
    out = tmp_path / "out"
    status = main(
        ["validate", "hub:fake", "--data", str(dataset), "--out", str(out), "--n", "6", "--seed", "2", "--n-morph", "3"]
    )
    assert status == 0 and opened == ["hub:fake"]
    assert (out / "validation.md").is_file() and (out / "validation.json").is_file()
    assert len(list(out.glob("*.png"))) == 5
    printed = capsys.readouterr().out
    assert "| target | value | ± (bootstrap) | requirement | result |" in printed and "validation.md" in printed
    assert json.loads((out / "validation.json").read_text())["metadata"]["model"] == "hub:fake"


def test_cli_reports_an_unusable_data_set(tmp_path, capsys):
    status = main(["validate", "hub:fake", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert status == 1 and "dataset.json" in capsys.readouterr().err


def test_training_set_of_another_geometry_is_refused_before_any_statistic(toy_dir, tmp_path, monkeypatch):
    """Issue 17 (9): the memorisation check needs the data set's geometry; say so before the work."""
    from galsim_hub.errors import MetadataError
    from galsim_hub.training.datasets.data import build_synthetic_dataset
    from galsim_hub.training.validation import morphology, statistics

    data = build_synthetic_dataset(tmp_path / "data", 8, stamp_size=32, noise_sigma=0.01, seed=0)
    train = build_synthetic_dataset(tmp_path / "train", 8, stamp_size=16, noise_sigma=0.01, seed=1)
    monkeypatch.setattr(statistics, "measure_statistics", lambda *a, **k: pytest.fail("statistics computed"))
    with pytest.raises(MetadataError, match=r"training data set .* 16-pixel stamps .* 32-pixel stamps"):
        morphology.run_validation(str(toy_dir), data, tmp_path / "out", train_data=train)
