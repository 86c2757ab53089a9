"""Backends: the same galaxies on TensorFlow, JAX, PyTorch and NumPy; gradients through JAX-GalSim.

Keras runs one backend per process, and this test process runs TensorFlow's, so each other
backend is run in a fresh process (``backend_probe.py``) and compared here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from galsim_hub.backends import BACKEND_ENV, choose_backend
from galsim_hub.backends.keras_runtime import KerasModel, keras_backend
from galsim_hub.errors import GalSimHubError, MetadataError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TIMEOUT = 600


def probe(tmp_path: Path, backend: str, mode: str) -> dict:
    out = tmp_path / f"{backend}_{mode}.npz"
    env = dict(os.environ, GALSIM_HUB_CACHE=str(tmp_path / "cache"))
    env.pop("KERAS_BACKEND", None)
    result = subprocess.run(
        [sys.executable, str(HERE / "backend_probe.py"), backend, str(out), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as data:
        return dict(data)


def test_choose_backend_reads_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert choose_backend() == "tensorflow"
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert choose_backend() == "torch"
    assert choose_backend("jax") == "jax"
    with pytest.raises(ValueError, match="backend must be one of tensorflow, jax, torch, numpy, got 'mxnet'"):
        choose_backend("mxnet")
    monkeypatch.setenv(BACKEND_ENV, "tf")
    with pytest.raises(ValueError, match="GALSIM_HUB_BACKEND must be one of"):
        choose_backend()


def test_a_format1_model_on_jax_is_refused_with_the_way_out(tmp_path):
    from toy_models import build_toy_model

    path = build_toy_model(tmp_path / "toy")
    with pytest.raises(
        MetadataError, match="format-1 model .*backend='tensorflow', or convert it with `galsim-hub upgrade"
    ):
        KerasModel(path, "jax")


def test_a_second_keras_backend_in_one_process_is_refused():
    import keras  # this process's Keras runs TensorFlow's backend

    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(GalSimHubError, match="Keras already runs the tensorflow backend in this process"):
        keras_backend("jax")


def test_upgrade_needs_galsim_hub_architectures(tmp_path):
    from toy_models import build_toy_model

    from galsim_hub.training.fitting.upgrade import upgrade_model

    path = build_toy_model(tmp_path / "toy")
    with pytest.raises(MetadataError, match="records no network architectures"):
        upgrade_model(path, tmp_path / "new")
    bundled = tmp_path / "bundled"
    from galsim_hub import GenerativeGalaxyModel

    directory = GenerativeGalaxyModel("hub:synthetic_bdk", backend="tensorflow")._directory
    with pytest.raises(MetadataError, match="is already format 3"):
        upgrade_model(directory, bundled)


@pytest.mark.slow
def test_every_backend_draws_the_same_galaxies(tmp_path):
    """Every bundled model, rows inside and beyond its training range, two batch sizes."""
    results = {backend: probe(tmp_path, backend, "sample") for backend in ("tensorflow", "jax", "torch", "numpy")}
    reference = results["tensorflow"]
    for backend, result in results.items():
        assert list(result["imported_by_galsim_hub"]) == [], f"importing galsim_hub imported a backend ({backend})"
        for key, stamps in reference.items():
            if key.startswith("imported_"):
                continue
            assert result[key].shape == stamps.shape, (backend, key)
            scale = np.abs(stamps).max()
            np.testing.assert_allclose(result[key], stamps, rtol=0, atol=1e-5 * scale, err_msg=f"{backend} {key}")
    assert list(results["numpy"]["imported_after_sampling"]) == []  # NumPy alone: no framework at all
    assert "keras" in results["jax"]["imported_after_sampling"]
    chromatic = reference["synthetic_chromatic@1.0"]
    assert chromatic.ndim == 4 and chromatic.shape[-1] == 3


@pytest.mark.slow
def test_a_gradient_flows_from_a_jax_galsim_image_to_the_conditions(tmp_path):
    result = probe(tmp_path, "jax", "gradient")
    # d(loss)/d(mag_auto, flux_radius, zphot) of the first galaxy against central differences.
    np.testing.assert_allclose(result["gradient"][0], result["finite_difference"], rtol=0.05)
    assert np.all(np.abs(result["gradient"][0]) > 1e-3)
    np.testing.assert_array_equal(result["gradient"][1], 0.0)  # the loss draws only the first galaxy
    # JAX-GalSim draws the stamp as GalSim does.
    drawn, reference = result["jax_galsim"], result["galsim"]
    np.testing.assert_allclose(drawn, reference, rtol=0, atol=1e-5 * reference.max())
    # sample_jax gives the stamps of sample_arrays, flux-calibrated to the catalog magnitude.
    stamps, plain = result["sample_jax"], result["sample_arrays"]
    np.testing.assert_allclose(stamps.sum(axis=(1, 2)), result["catalog_flux"], rtol=1e-5)
    rescaled = plain * (stamps.sum(axis=(1, 2)) / plain.sum(axis=(1, 2)))[:, None, None]
    np.testing.assert_allclose(stamps, rescaled, rtol=0, atol=1e-5 * stamps.max())


@pytest.mark.slow
def test_the_galsim_config_runs_on_jax_and_numpy(tmp_path):
    """The example field through the ``galsim`` executable: TensorFlow, JAX, and NumPy with two
    processes (nothing to break in a forked worker)."""
    images = {}
    for backend in ("tensorflow", "jax", "numpy"):
        env = dict(os.environ, GALSIM_HUB_CACHE=str(tmp_path / "cache"))
        env.pop("KERAS_BACKEND", None)
        command = [
            sys.executable,
            "-m",
            "galsim",
            str(REPO / "examples" / "field.yaml"),
            f"input.catalog.dir={REPO / 'examples'}",
            f"input.generative_model.backend={backend}",
            "image.nobjects=12",
            f"output.dir={backend}",
        ] + (["image.nproc=2"] if backend == "numpy" else [])
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert result.returncode == 0, result.stderr[-3000:]
        images[backend] = fits.getdata(tmp_path / backend / "field.fits")
    assert images["jax"].max() > 10 * 0.02  # galaxies above the noise
    for backend in ("jax", "numpy"):
        np.testing.assert_allclose(
            images[backend], images["tensorflow"], rtol=0, atol=1e-4 * images["tensorflow"].max()
        )
