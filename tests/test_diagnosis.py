"""The VAE-or-flow diagnosis and the pedestal measure of galsim_hub.training.validation.diagnosis."""

from __future__ import annotations

import galsim
import numpy as np
import pytest

from galsim_hub.cli import main
from galsim_hub.training.validation import diagnosis

pytestmark = pytest.mark.slow  # these tests train models


def _gaussians(n=3, size=32, sigma=2.0):
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    one = np.exp(-0.5 * (x**2 + y**2) / sigma**2)
    return np.repeat((100 * one / one.sum())[None], n, axis=0)


def test_pedestal_levels_see_a_postage_stamp_and_not_a_clean_profile():
    psf = galsim.Gaussian(fwhm=0.1)
    clean = diagnosis.pedestal_levels(_gaussians(), 0.05, psf, 0.05, noise_sigma=0.01)
    assert np.all(np.abs(clean["level_error"]) < 1.0)
    square = _gaussians()
    square[:, 4:-4, 4:-4] += 0.02  # a faint square pedestal, 2 sigma per pixel
    with_pedestal = diagnosis.pedestal_levels(square, 0.05, psf, 0.05, noise_sigma=0.01)
    assert np.all(with_pedestal["level_sigma"] > 0.5) and np.all(with_pedestal["level_error"] > 10)
    assert clean["r_half"] == pytest.approx(np.full(3, 2.0 * 1.1774 * 0.05), rel=0.25)


def test_flux_offsets_are_binned_by_catalog_magnitude():
    magnitudes = np.array([19.0, 21.0, 21.5, 23.0, 25.0])
    offsets = np.array([0.1, -0.2, 0.0, np.nan, 1.0])
    bins = diagnosis.flux_offsets_by_magnitude(magnitudes, offsets)
    assert [(b["lo"], b["n"], b["median"]) for b in bins] == [(16.0, 1, 0.1), (20.0, 2, -0.1), (24.5, 1, 1.0)]


def test_diagnosis_of_a_model_on_real_galaxies(tmp_path):
    """The four samples on tests/data's real galaxies, with a tiny trained model of their geometry."""
    from pathlib import Path

    from galsim_hub.training.datasets import data
    from galsim_hub.training.fitting import train
    from galsim_hub.training.fitting.config import config_from_dict

    here = Path(__file__).parent / "data"
    catalogs = [
        {"dir": str(here / "cosmos_23.5_example"), "file": "real_galaxy_catalog_23.5_example.fits"},
        {
            "dir": str(here / "cosmos_btk100"),
            "file": "real_galaxy_catalog_26_extension_example.fits",
            "exclusion_level": "none",
        },
    ]
    dataset = data.build_cosmos_dataset(
        tmp_path / "d", catalogs=catalogs, stamp_size=32, pixel_scale=0.12, max_galaxies=12, progress=False
    )
    config = config_from_dict(
        {
            "dataset": {
                "source": "cosmos",
                "stamp_size": 32,
                "pixel_scale": 0.12,
                "n_examples": None,
                "options": {"catalogs": catalogs},
            },
            "vae": {
                "latent_dim": 4,
                "num_stages": 3,
                "base_depth": 8,
                "max_depth": 16,
                "batch_size": 8,
                "steps": 20,
                "checkpoint_every": 20,
            },
            "flow": {"n_blocks": 2, "hidden_units": [16, 16], "steps": 20, "batch_size": 12, "checkpoint_every": 20},
            "export": {"name": "diag", "version": "0.1", "flux_calibration": "mag_auto"},
        }
    )
    work = tmp_path / "w"
    model_dir = train.run_all(config, work, tmp_path / "model", progress=False, log=lambda _: None)
    result = diagnosis.diagnose(str(model_dir), dataset, seed=1, n_bootstrap=20)
    table = result["table"]
    assert list(table["sample"]) == list(diagnosis.DIAGNOSIS_SAMPLES)
    assert np.all(np.isfinite(table["mean_sigma"])) and np.all(table["n"] > 0)
    assert set(result["flux_bins"]) == set(diagnosis.DIAGNOSIS_SAMPLES)
    text = diagnosis.diagnosis_markdown(result)
    assert "| reconstruction |" in text and "| flow_mode |" in text
    assert (
        main(["diagnose", str(model_dir), "--data", str(dataset), "--out", str(tmp_path / "out"), "--bootstrap", "10"])
        == 0
    )
    assert (tmp_path / "out" / "diagnosis.md").is_file()
