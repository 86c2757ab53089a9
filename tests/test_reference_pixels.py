"""Every bundled model gives the pixels it gave before the sampling paths were merged."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

import galsim_hub

HERE = Path(__file__).resolve().parent / "data" / "reference_pixels"
_spec = importlib.util.spec_from_file_location("make_reference", HERE / "make_reference.py")
make_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_reference)
REFERENCE = np.load(HERE / "reference.npz")


def test_every_bundled_model_has_a_reference():
    assert sorted(make_reference.bundled_handles()) == sorted(REFERENCE.files)


@pytest.mark.parametrize("handle", sorted(REFERENCE.files))
def test_bundled_model_pixels_match_the_reference(handle):
    model = galsim_hub.GenerativeGalaxyModel(handle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = model.sample(make_reference.reference_catalog(model), seed=1234, return_arrays=True)
    expected = REFERENCE[handle]
    assert images.shape == expected.shape
    # float32 round-off of the decoder (a relative 1e-6 of the peak), nothing more
    np.testing.assert_allclose(images, expected, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))
