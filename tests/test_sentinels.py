"""Catalog sentinels and extreme fluxes: every row is a finite galaxy or a named error (API, config, CLI)."""

from __future__ import annotations

import copy
import warnings

import galsim
import numpy as np
import pytest
from astropy.table import Table
from test_config import base_config, field_model  # noqa: F401  (the config tests' toy model fixture)

from galsim_hub.cli import main
from galsim_hub.errors import CatalogError

ROWS = {"flux_radius": [2.0, 3.0, 3.5], "zphot": [0.5, 0.5, 0.5]}


@pytest.fixture(scope="module")
def model(field_model):  # noqa: F811
    from galsim_hub.model import GenerativeGalaxyModel

    return GenerativeGalaxyModel(field_model)


def _sample(model, mags, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the out-of-range warning of clipped rows
        return model.sample(Table({"mag_auto": mags, **ROWS}), seed=2, return_arrays=True, **options)


@pytest.mark.parametrize(
    "sentinel, message",
    [
        (-99.0, r"rows 1 .*-99 is a common no-data value"),
        (-1e30, r"NaN or infinite in rows 1"),
        (1e30, r"zero or negative in rows 1"),
    ],
)
def test_magnitude_sentinels_on_the_clip_path_are_named_errors(model, sentinel, message):
    with pytest.raises(CatalogError, match=rf"the catalog's 'mag_auto'.*{message}"):
        _sample(model, [22.0, sentinel, 23.0])


def test_faint_sentinel_gives_a_finite_galaxy(model):
    stamps = _sample(model, [22.0, 99.0, 23.0])
    assert np.isfinite(stamps).all() and (stamps.sum(axis=(1, 2)) > 0).all()


@pytest.mark.parametrize(
    "flux, message",
    [
        ([1e300, 1.0, 1.0], r"fluxes outside 1e-30 - 1e\+30 .* rows 0 \(1e\+300\)"),
        ([1e-300, 1.0, 1.0], r"fluxes outside 1e-30 - 1e\+30 .* rows 0 \(1e-300\)"),
    ],
)
def test_extreme_user_fluxes_are_named_errors(model, flux, message):
    with pytest.raises(CatalogError, match=message):
        _sample(model, [22.0, 22.5, 23.0], flux=flux)


def test_magnitude_column_sentinel_is_named(model):
    cat = Table({"mag_auto": [22.0, 22.5, 23.0], "mag_r": [-99.0, 21.0, 22.0], **ROWS})
    with pytest.raises(CatalogError, match=r"magnitude column 'mag_r'.*rows 0 .*-99 is a common no-data value"):
        model.sample(cat, seed=1, mag="mag_r")


def test_config_with_a_sentinel_names_the_object(field_model, tmp_path):  # noqa: F811
    path = tmp_path / "cat.fits"
    Table(
        {
            "mag_auto": [21.0, 22.0, -99.0, 23.0, 23.5, 24.0],
            "flux_radius": np.linspace(2, 4, 6),
            "zphot": np.full(6, 0.5),
        }
    ).write(path)
    config = base_config(field_model, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((CatalogError, galsim.GalSimConfigError), match=r"-99 is a common no-data value"):
            galsim.config.BuildImage(copy.deepcopy(config))


def test_cli_with_a_sentinel_is_a_one_line_error(field_model, tmp_path, capsys):  # noqa: F811
    path = tmp_path / "cat.fits"
    Table({"mag_auto": [21.0, -99.0], "flux_radius": [2.0, 3.0], "zphot": [0.5, 0.5]}).write(path)
    out = tmp_path / "out.fits"
    assert main(["sample", str(field_model), "--catalog", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "-99 is a common no-data value" in err and "Traceback" not in err
    assert not out.exists()
