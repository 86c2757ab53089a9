"""Every bundled model gives the pixels it gave before the sampling paths were merged."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

import galsim_hub
from galsim_hub.sampling.plan import BORDER_FRACTION, border_fractions

HERE = Path(__file__).resolve().parent / "data" / "reference_pixels"
_spec = importlib.util.spec_from_file_location("make_reference", HERE / "make_reference.py")
make_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_reference)
REFERENCE = np.load(HERE / "reference.npz")


def test_every_bundled_model_has_a_reference():
    assert sorted(make_reference.bundled_handles()) == sorted(REFERENCE.files)


@pytest.mark.parametrize("backend", ["tensorflow", "numpy"])
@pytest.mark.parametrize("handle", sorted(REFERENCE.files))
def test_bundled_model_pixels_match_the_reference(handle, backend):
    """The reference was drawn on TensorFlow; the NumPy backend, in this process too, draws it again."""
    model = galsim_hub.GenerativeGalaxyModel(handle, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = model.sample(make_reference.reference_catalog(model), seed=1234, return_arrays=True)
    expected = REFERENCE[handle]
    assert images.shape == expected.shape
    # One change is intended: a multi-band row clipped to the training range whose stamp fills
    # the stamp (more than BORDER_FRACTION of a band's flux in the border) is now pulled further
    # in, as single-band rows always were. Every other stamp is the same, to float32 round-off.
    with_bands = expected.reshape(*expected.shape[:3], -1)
    clipped = np.arange(len(expected)) == len(expected) - 1  # the reference catalog's last row
    fixed = clipped & (border_fractions(with_bands) > BORDER_FRACTION).any(axis=1) & (expected.ndim == 4)
    same = ~fixed
    np.testing.assert_allclose(images[same], expected[same], rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))
    assert (border_fractions(images.reshape(with_bands.shape)[fixed]) <= BORDER_FRACTION).all()


def test_the_reference_holds_the_one_intended_change():
    """synthetic_chromatic's clipped row was a stamp-filling failure before the pipelines merged."""
    expected = REFERENCE["hub:synthetic_chromatic@1.0"]
    fixed = (border_fractions(expected) > BORDER_FRACTION).any(axis=1)
    assert fixed.tolist() == [False] * 5 + [True]
