"""The real two-band AEGIS check (galsim_hub.training.validation.aegis) on the copy in tests/data/aegis_2band."""

import json
from pathlib import Path

import galsim
import numpy as np
import pytest
from astropy.table import Table

import galsim_hub
from galsim_hub.errors import MetadataError
from galsim_hub.training.validation import aegis

AEGIS_DIR = Path(__file__).resolve().parent / "data" / "aegis_2band"
IDENTS = [23409, 14886, 9024, 17038, 24216]
ZERO_POINTS = {"f435w": 25.6739, "f606w": 26.4955, "f814w": 25.94}
CONDITIONS = ("mag_f814w", "color_f435w_f606w", "color_f606w_f814w", "flux_radius", "zphot")


class AnalyticModel:
    """A stand-in multi-band model: exponential discs with the conditioned F814W magnitude, F606W -
    F814W colour and size (``flux_radius`` taken as the intrinsic half-light radius in 0.05" pixels),
    F606W ``ratio`` times larger than F814W."""

    pixel_scale = 0.05

    def __init__(self, ratio=1.0, bands=("f435w", "f606w", "f814w")):
        self.ratio = ratio
        self.bands = list(bands) if bands else None
        self.quantities = list(CONDITIONS)
        self.metadata = {
            "bands": [{"name": b, "zero_point": ZERO_POINTS[b]} for b in bands or ()],
            "conditions": [{"name": c, "min": -10.0, "max": 50.0} for c in CONDITIONS],
            "condition_mean": [24.0, 0.7, 0.8, 4.0, 1.0],
        }
        self.calls = []

    def sample(self, cat, seed=None):
        self.calls.append({q: float(np.median(cat[q])) for q in self.quantities})
        galaxies = []
        for row in range(len(cat)):
            hlr = float(cat["flux_radius"][row]) * self.pixel_scale
            flux_i = 10 ** (-0.4 * (cat["mag_f814w"][row] - ZERO_POINTS["f814w"]))
            flux_v = 10 ** (-0.4 * (cat["mag_f814w"][row] + cat["color_f606w_f814w"][row] - ZERO_POINTS["f606w"]))
            galaxy = type("Galaxy", (), {})()
            galaxy.images = {
                "f814w": galsim.Exponential(half_light_radius=hlr, flux=flux_i),
                "f606w": galsim.Exponential(half_light_radius=self.ratio * hlr, flux=flux_v),
            }
            galaxies.append(galaxy)
        return galaxies


def test_the_copied_files_hold_the_five_two_band_galaxies():
    galaxies = aegis.read_aegis(AEGIS_DIR)
    assert [g["ident"] for g in galaxies] == IDENTS
    for galaxy in galaxies:
        assert galaxy["pixel_scale"] == 0.03
        v, i = galaxy["bands"]["f606w"], galaxy["bands"]["f814w"]
        assert v["image"].shape == i["image"].shape and v["psf"].shape == (20, 20)
        assert 5e-6 < v["noise_variance"] < 1e-5 and 18 < i["mag"] < 26
    assert sum(p.stat().st_size for p in AEGIS_DIR.glob("*.fits")) < 1_000_000


def test_real_stamp_colours_follow_the_catalog_magnitudes():
    zp = (ZERO_POINTS["f606w"], ZERO_POINTS["f814w"])
    colours, catalog, ratios = [], [], []
    for galaxy in aegis.read_aegis(AEGIS_DIR):
        v, i = galaxy["bands"]["f606w"], galaxy["bands"]["f814w"]
        measured = aegis.measure_pair(
            v["image"], i["image"], v["noise_variance"] ** 0.5, i["noise_variance"] ** 0.5, zp
        )
        colours.append(measured["color"])
        catalog.append(v["mag"] - i["mag"])
        ratios.append(measured["ratio"])
        assert 1 < measured["hlr_814"] < 40  # pixels at 0.03"
    np.testing.assert_allclose(colours, catalog, atol=0.2)
    assert np.argmax(colours) == np.argmax(catalog) == IDENTS.index(24216)  # the red one
    assert 0.7 < min(ratios) and max(ratios) < 1.5


def test_mocks_reproduce_conditioned_colours_and_their_size_ratio(tmp_path):
    # White noise: precise enough to check the colours to 0.1 mag with 4 mocks.
    table = aegis.run_aegis_check(AnalyticModel(), AEGIS_DIR, None, n_mocks=4, seed=3, correlated=False)
    assert list(table["ident"]) == IDENTS and list(table["n_mocks"]) == [4] * 5
    np.testing.assert_allclose(table["color_mock"], table["color_mag"], atol=0.1)
    np.testing.assert_allclose(table["ratio_mock"], 1.0, atol=0.1)
    assert (table["color_mock_lo"] <= table["color_mock"]).all()
    assert (table["color_mock"] <= table["color_mock_hi"]).all()
    larger = aegis.run_aegis_check(AnalyticModel(ratio=1.4), AEGIS_DIR, None, n_mocks=4, seed=3, correlated=False)
    assert (larger["ratio_mock"] > 1.15).all() and (larger["hsm_ratio_mock"] > 1.1).all()
    assert "condition_mean" in table.meta["filled"] and table.meta["noise"].startswith("white")
    # The real correlated noise (the default) is noisier: faint galaxies scatter by ~0.15 mag.
    table = aegis.run_aegis_check(AnalyticModel(), AEGIS_DIR, tmp_path, n_mocks=6, seed=3)
    assert table.meta["noise"].startswith("correlated")
    np.testing.assert_allclose(table["color_mock"], table["color_mag"], atol=0.25)
    np.testing.assert_allclose(table["ratio_mock"], 1.0, atol=0.15)
    text = (tmp_path / "aegis.md").read_text()
    assert text.count("\n| 2") + text.count("\n| 1") + text.count("\n| 9") == 5 and "sanity check" in text
    numbers = json.loads((tmp_path / "aegis.json").read_text())
    assert [g["ident"] for g in numbers["galaxies"]] == IDENTS
    assert (tmp_path / "aegis.png").read_bytes()[:4] == b"\x89PNG" and "aegis.png" in text


def test_correlated_noise_has_the_real_variance_and_correlation():
    noise = aegis.correlated_noise(AEGIS_DIR / "acs_I_unrot_sci_cf.fits", 7e-6, rng=galsim.BaseDeviate(5))
    image = galsim.ImageD(200, 200, scale=0.03)
    image.addNoise(noise)
    pixels = image.array
    assert pixels.std() == pytest.approx(7e-6**0.5, rel=0.05)
    assert 0.35 < np.corrcoef(pixels[:, 1:].ravel(), pixels[:, :-1].ravel())[0, 1] < 0.6


def test_missing_conditions_come_from_the_nearest_reference_rows():
    model = AnalyticModel()
    rng = np.random.default_rng(0)
    mag = rng.uniform(20, 26, 500)
    colour = rng.uniform(0, 1.5, 500)
    reference = Table(
        {
            "mag_f814w": mag,
            "color_f606w_f814w": colour,
            "flux_radius": np.full(500, 3.0),
            "color_f435w_f606w": colour + 0.5,
            "zphot": mag / 10,
        }
    )
    known = {"mag_f814w": 24.0, "color_f606w_f814w": 1.0, "flux_radius": 5.0}
    values, note = aegis.aegis_conditions(model, known, reference, n_neighbours=10)
    assert values["flux_radius"] == 5.0 and values["mag_f814w"] == 24.0
    assert values["zphot"] == pytest.approx(2.4, abs=0.05)
    assert values["color_f435w_f606w"] == pytest.approx(1.5, abs=0.1)
    assert "median of the 10 reference rows nearest" in note and "zphot" in note
    values, note = aegis.aegis_conditions(model, known)
    assert values["zphot"] == 1.0 and "condition_mean" in note
    with pytest.raises(MetadataError, match=r"lacks the model's conditions \['zphot'\]"):
        aegis.aegis_conditions(model, known, reference[["mag_f814w", "color_f606w_f814w", "color_f435w_f606w"]])


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(MetadataError, match="needs a multi-band model with"):
        aegis.run_aegis_check(AnalyticModel(bands=None), AEGIS_DIR)
    with pytest.raises(MetadataError, match="has bands .*'f435w'.*needs a multi-band model"):
        aegis.run_aegis_check(AnalyticModel(bands=("f435w",)), AEGIS_DIR)
    with pytest.raises(MetadataError, match="AEGIS_F606w_catalog.fits not found"):
        aegis.run_aegis_check(AnalyticModel(), tmp_path)


def test_command_line(tmp_path, monkeypatch, capsys):
    from galsim_hub.training.__main__ import main

    opened = []

    def open_model(handle):
        opened.append(handle)
        return AnalyticModel()

    monkeypatch.setattr(galsim_hub, "GenerativeGalaxyModel", open_model, raising=False)
    status = main(["aegis", "hub:fake", "--aegis-dir", str(AEGIS_DIR), "--out", str(tmp_path), "--n-mocks", "2"])
    printed = capsys.readouterr().out
    assert status == 0 and opened == ["hub:fake"]
    assert "| IDENT |" in printed and "24216" in printed and (tmp_path / "aegis.md").is_file()
    assert main(["aegis", "hub:fake", "--aegis-dir", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    assert "not found" in capsys.readouterr().err
