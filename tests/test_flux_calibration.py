"""Flux-calibrated models: stamps get the flux of the catalog magnitude unless flux=/mag= is given."""

import json
import shutil

import numpy as np
import pytest
from astropy.table import Table

from galsim_hub.errors import MetadataError
from galsim_hub.metadata import validate_metadata
from galsim_hub.model import GenerativeGalaxyModel

CATALOG = Table({"mag_auto": [20.5, 22.0, 24.5], "flux_radius": [2.0, 3.0, 4.0]})


@pytest.fixture(scope="module")
def calibrated_dir(toy_dir, tmp_path_factory):
    """The toy model, told that its zero point is 0.5 mag fainter and that it is flux-calibrated."""
    path = tmp_path_factory.mktemp("calibrated") / "toy"
    shutil.copytree(toy_dir, path)
    meta_file = path / "galsim_hub.json"
    metadata = json.loads(meta_file.read_text())
    metadata["zero_point"] += 0.5
    metadata["flux_calibration"] = {"condition": "mag_auto"}
    meta_file.write_text(json.dumps(metadata))
    return path


def test_calibrated_model_gives_catalog_magnitude_fluxes(calibrated_dir, toy):
    model = GenerativeGalaxyModel(calibrated_dir)
    zero_point = model.metadata["zero_point"]
    stamps = model.sample(CATALOG, seed=3, return_arrays=True)
    expected = 10 ** (-0.4 * (np.asarray(CATALOG["mag_auto"]) - zero_point))
    np.testing.assert_allclose(stamps.sum(axis=(1, 2)), expected, rtol=1e-5)
    # Without the calibration the same decoder gives 0.5 mag less (its own flux, up to its spread).
    raw = toy.sample(CATALOG, seed=3, return_arrays=True)
    np.testing.assert_allclose(stamps.sum(axis=(1, 2)) / raw.sum(axis=(1, 2)), 10**0.2, rtol=0.05)
    # Same morphology: only the flux changes.
    np.testing.assert_allclose(
        stamps / stamps.sum(axis=(1, 2))[:, None, None], raw / raw.sum(axis=(1, 2))[:, None, None], rtol=1e-4, atol=1e-7
    )
    galaxies = model.sample(CATALOG, seed=3)
    assert [g.flux for g in galaxies] == pytest.approx(expected, rel=1e-5)


def test_user_fluxes_win_over_the_calibration(calibrated_dir):
    model = GenerativeGalaxyModel(calibrated_dir)
    stamps = model.sample(CATALOG, seed=3, return_arrays=True, flux=[1.0, 2.0, 3.0])
    np.testing.assert_allclose(stamps.sum(axis=(1, 2)), [1.0, 2.0, 3.0], rtol=1e-5)


def test_clipped_rows_keep_their_catalog_magnitude(calibrated_dir):
    model = GenerativeGalaxyModel(calibrated_dir)
    cat = Table({"mag_auto": [26.5], "flux_radius": [3.0]})
    with pytest.warns(UserWarning, match="flux calibration"):
        stamp = model.sample(cat, seed=1, return_arrays=True)
    assert stamp.sum() == pytest.approx(10 ** (-0.4 * (26.5 - model.metadata["zero_point"])), rel=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"flux_calibration": {"condition": "flux_radius"}}, "not a condition of unit 'mag'"),
        ({"flux_calibration": {"condition": "nope"}}, "not a condition of unit 'mag'"),
        ({"flux_calibration": "mag_auto"}, "must be an object with a string 'condition'"),
        ({"flux_calibration": {"condition": "mag_auto"}, "zero_point": None}, "needs a finite 'zero_point'"),
    ],
)
def test_bad_flux_calibration_metadata_is_refused(toy_dir, change, message):
    metadata = json.loads((toy_dir / "galsim_hub.json").read_text())
    metadata.update(change)
    with pytest.raises(MetadataError, match=message):
        validate_metadata(metadata, "toy")


def test_stamp_window_fades_the_stamp_edge(toy_dir, tmp_path):
    """metadata stamp_window: the stamps are multiplied by a circular window (corners zero)."""
    from galsim_hub.backends.base import stamp_window

    path = tmp_path / "windowed"
    shutil.copytree(toy_dir, path)
    metadata = json.loads((path / "galsim_hub.json").read_text())
    metadata["stamp_window"] = {"inner": 0.5}
    (path / "galsim_hub.json").write_text(json.dumps(metadata))
    cat = Table({"mag_auto": [21.0], "flux_radius": [4.4]})
    plain = GenerativeGalaxyModel(toy_dir).sample(cat, seed=1, return_arrays=True)[0]
    windowed = GenerativeGalaxyModel(path).sample(cat, seed=1, return_arrays=True)[0]
    window = stamp_window(plain.shape[0], 0.5)
    assert window[0, 0] == 0 and window[16, 16] == 1 and 0 < window[16, 28] < 1
    np.testing.assert_allclose(windowed, plain * window, rtol=1e-5, atol=1e-9)
    metadata["stamp_window"] = {"inner": 1.5}
    with pytest.raises(MetadataError, match="'stamp_window' must be"):
        validate_metadata(metadata, "m")
