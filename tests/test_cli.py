"""The galsim-hub command line, every verb end to end (in process, plus one real subprocess)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from toy_models import ZERO_POINT, build_toy_model

from galsim_hub.cli import main
from galsim_hub.model import GenerativeGalaxyModel


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return build_toy_model(tmp_path_factory.mktemp("model") / "toy", name="clitoy", version="1.0")


@pytest.fixture
def hub(toy, tmp_path, hub_cache, monkeypatch):
    """A hub folder holding the toy model, named in GALSIM_HUB_INDEX."""
    folder = tmp_path / "hub"
    folder.mkdir()
    assert main(["publish", str(toy), "--hub", str(folder)]) == 0
    monkeypatch.setenv("GALSIM_HUB_INDEX", str(folder / "index.json"))
    return folder


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_list_and_info(hub, capsys):
    status, out, _ = run(capsys, "list")
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith("hub:clitoy"))
    assert line.split()[:4] == ["hub:clitoy", "1.0", "32", "0.03"]
    assert "mag_auto[20, 25]" in line and "flux_radius[1.5, 4.5]" in line
    assert "hub:Lanusse2020" in out
    status, out, _ = run(capsys, "info", "hub:clitoy")
    assert status == 0
    assert "sha256: " in out and '"latent_dim": 4' in out
    assert "model card:\n# " in out


def test_fetch_and_cache(hub, hub_cache, capsys):
    status, out, _ = run(capsys, "fetch", "hub:clitoy", "--quiet")
    assert status == 0
    assert (hub_cache / out.strip().split("/cache/")[1]).is_dir()
    status, out, _ = run(capsys, "cache", "list")
    assert status == 0 and "clitoy@1.0" in out and "(1 entries)" in out
    status, out, _ = run(capsys, "cache", "clear")
    assert status == 0 and "removed 1 cache entry" in out
    assert "(0 entries)" in run(capsys, "cache", "list")[1]


def test_sample_with_catalog_matches_python_api(hub, toy, tmp_path, capsys):
    catalog = tmp_path / "cat.fits"
    Table({"mag_auto": [21.0, 22.0, 23.0, 24.0], "flux_radius": [2.0, 3.0, 4.0, 2.5]}).write(catalog)
    out = tmp_path / "out.fits"
    status, _, err = run(
        capsys, "sample", "hub:clitoy", "--catalog", str(catalog), "--n", "3", "--seed", "9", "--out", str(out)
    )
    assert status == 0, err
    with fits.open(out) as hdus:
        cube, header, table = hdus[0].data, hdus[0].header, Table(hdus["CATALOG"].data)
    assert cube.shape == (3, 32, 32)
    assert header["MODEL"] == "hub:clitoy" and header["SEED"] == 9 and header["PIXSCALE"] == 0.03
    assert list(table["mag_auto"]) == [21.0, 22.0, 23.0]
    expected = GenerativeGalaxyModel(toy).sample(table, seed=9, return_arrays=True)
    np.testing.assert_array_equal(cube, expected)


def test_sample_without_catalog_and_with_psf(hub, tmp_path, capsys):
    out = tmp_path / "psf.fits"
    status, _, err = run(
        capsys,
        "sample",
        "hub:clitoy",
        "--n",
        "5",
        "--seed",
        "1",
        "--psf",
        "0.1",
        "--psf-scale",
        "0.06",
        "--out",
        str(out),
    )
    assert status == 0, err
    with fits.open(out) as hdus:
        cube, table = hdus[0].data, Table(hdus["CATALOG"].data)
    assert cube.shape == (5, 20, 20)  # (32 px x 0.03" + 2 x 0.1" FWHM) / 0.06"
    assert ((table["mag_auto"] >= 20) & (table["mag_auto"] <= 25)).all()
    flux = 10 ** (-0.4 * (np.asarray(table["mag_auto"]) - ZERO_POINT))
    np.testing.assert_allclose(cube.sum(axis=(1, 2)), flux, rtol=0.1)  # PSF and drawing keep the flux


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "hub:nosuchmodel"], "no model named 'nosuchmodel'"),
        (["sample", "hub:clitoy", "--out", "x.fits"], "give --catalog"),
        (["sample", "hub:clitoy", "--catalog", "missing.fits", "--out", "x.fits"], "missing.fits does not exist"),
        (["publish", "nowhere", "--hub", "."], "not a model directory"),
        (["cache", "clear", "feedbeef"], "matches 0 entries"),
    ],
)
def test_errors_are_one_line_and_exit_1(hub, capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 1
    assert err.startswith("galsim-hub: error: ") and message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_catalog_without_the_model_columns(hub, tmp_path, capsys):
    catalog = tmp_path / "cat.fits"
    Table({"mag_auto": [21.0]}).write(catalog)
    status, _, err = run(capsys, "sample", "hub:clitoy", "--catalog", str(catalog), "--out", str(tmp_path / "o.fits"))
    assert status == 1 and "flux_radius" in err


def test_python_m_entry_point(hub, tmp_path):
    result = subprocess.run([sys.executable, "-m", "galsim_hub", "list"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "hub:clitoy" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "galsim_hub", "info", "hub:nope"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    index = json.loads((hub / "index.json").read_text())
    assert [entry["name"] for entry in index["models"]] == ["clitoy"]


def test_a_closed_pipe_is_not_an_error(hub, monkeypatch):
    import galsim_hub.cli as cli
    from galsim_hub.cli import hub_commands

    calls = []

    def write_to_closed_pipe(args):
        calls.append(args)
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(hub_commands, "cmd_list", write_to_closed_pipe)
    stderr = io.StringIO()
    monkeypatch.setattr(cli.sys, "stderr", stderr)
    assert cli.main(["list"]) == 0 and len(calls) == 1
    assert stderr.closed  # nothing more is written to a reader that went away


@pytest.mark.parametrize(
    "options, message",
    [
        (["--psf", "nan"], "--psf is a FWHM in arcsec and must be a positive finite number, got nan"),
        (["--psf", "inf"], "must be a positive finite number, got inf"),
        (["--psf", "-1"], "must be a positive finite number, got -1"),
        (["--psf", "100"], "more than the limit of 4096; give a smaller --psf"),
        (["--psf", "1e6"], "more than the limit of 4096"),
        (["--psf", "0.1", "--psf-scale", "0"], "--psf-scale is a pixel scale in arcsec and must be a positive"),
        (["--psf", "0.1", "--psf-scale", "-0.2"], "--psf-scale is a pixel scale"),
        (["--psf", "0.1", "--psf-scale", "nan"], "--psf-scale is a pixel scale"),
        (["--psf-scale", "0.06"], "give --psf FWHM too"),
        (["--seed", "0"], "--seed must be an integer from 1 to 2**63-1, got 0"),
        (["--seed", str(2**64)], "--seed must be an integer from 1 to 2**63-1"),
    ],
)
def test_hostile_sample_options_are_one_line_errors(options, message, hub, tmp_path, capsys):
    out = tmp_path / "o.fits"
    status, _, err = run(capsys, "sample", "hub:clitoy", "--n", "2", "--seed", "1", *options, "--out", str(out))
    assert status == 1 and message in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".o.fits*"))


@pytest.mark.parametrize("content", [b"\x00\x01 binary junk \xff" * 100, b"just some words\n", b""])
def test_catalog_that_is_not_a_table(content, hub, tmp_path, capsys):
    catalog = tmp_path / "notatable.fits"
    catalog.write_bytes(content)
    status, _, err = run(capsys, "sample", "hub:clitoy", "--catalog", str(catalog), "--out", str(tmp_path / "o.fits"))
    assert status == 1 and f"cannot read the catalog {catalog} as a table" in err
    assert err.count("\n") == 1


def test_out_folder_is_refused_and_leaves_nothing(hub, tmp_path, capsys):
    folder = tmp_path / "DIR"
    folder.mkdir()
    status, _, err = run(capsys, "sample", "hub:clitoy", "--n", "2", "--seed", "1", "--out", str(folder), "--overwrite")
    assert status == 1 and "is a folder" in err
    assert not (tmp_path / ".DIR.tmp").exists() and list(folder.iterdir()) == []


def test_failed_write_leaves_no_temporary_file(hub, tmp_path, capsys, monkeypatch):
    from astropy.io import fits as astropy_fits

    def disk_full(self, name, **kwargs):
        Path(name).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(astropy_fits.HDUList, "writeto", disk_full)
    out = tmp_path / "o.fits"
    status, _, err = run(capsys, "sample", "hub:clitoy", "--n", "2", "--seed", "1", "--out", str(out))
    assert status == 1 and "No space left" in err
    assert not out.exists() and not (tmp_path / ".o.fits.tmp").exists()


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sample"])
    assert info.value.code == 2 and "usage:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["sample", "hub:x", "--out", "o.fits", "--psf", "wide"])
    assert info.value.code == 2
