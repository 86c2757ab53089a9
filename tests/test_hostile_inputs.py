"""Hardening, round 3 (issue 17): API input checks, CLI output checks before sampling, OS errors named."""

from __future__ import annotations

import shutil

import pytest
from astropy.table import Table
from conftest import minimal_metadata

from galsim_hub.cli import main
from galsim_hub.errors import DownloadError, HandleError, MetadataError
from galsim_hub.hub import http as hub_http
from galsim_hub.hub.cache import fetch
from galsim_hub.hub.handle import resolve
from galsim_hub.metadata import validate_metadata
from galsim_hub.model import GenerativeGalaxyModel

# ------------------------------------------------------------------------- API checks (16)


@pytest.fixture(scope="module")
def multiband_dir(tmp_path_factory):
    from toy_models import build_multiband_toy_model

    return build_multiband_toy_model(tmp_path_factory.mktemp("mb") / "mb")


def _mb_catalog():
    return Table({"mag_auto": [22.0, 23.0], "flux_radius": [2.0, 3.0], "m_g": [22.5, 23.5]})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mag": {"g": "m_g"}, "zero_point": {"g": "28"}}, r"zero_point= must be a number, got '28'"),
        ({"flux": {"g": None}}, r"flux= gives None for band\(s\) \['g'\]"),
        ({"mag": {"g": None}}, r"mag= gives None for band\(s\) \['g'\]"),
    ],
)
def test_bad_band_options_are_named(multiband_dir, options, message):
    model = GenerativeGalaxyModel(multiband_dir)
    with pytest.raises(ValueError, match=message):
        model.sample(_mb_catalog(), seed=1, **options)


def test_bad_single_band_zero_point_is_named(toy):
    cat = Table({"mag_auto": [22.0], "flux_radius": [2.0], "m": [22.0]})
    with pytest.raises(ValueError, match=r"zero_point= must be a number, got \[28\]"):
        toy.sample(cat, seed=1, mag="m", zero_point=[28])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": 5}, "'name' must be a non-empty string, got 5"),
        ({"version": None}, "'version' must be a non-empty string, got None"),
        ({"name": " "}, "'name' must be a non-empty string"),
    ],
)
def test_metadata_name_and_version_must_be_strings(change, message):
    with pytest.raises(MetadataError, match=message):
        validate_metadata({**minimal_metadata(), **change}, "m")


# --------------------------------------------------------- CLI output checked first (10, 13)


def test_non_ascii_model_path_is_written(toy_dir, tmp_path, capsys):
    path = tmp_path / "modèle-ü"
    shutil.copytree(toy_dir, path)
    out = tmp_path / "out.fits"
    assert main(["sample", str(path), "--n", "2", "--seed", "1", "--out", str(out)]) == 0
    from astropy.io import fits

    assert "mod\\xe8le" in fits.getheader(out)["MODEL"]


def test_catalog_with_too_many_columns_fails_before_sampling(toy_dir, tmp_path, capsys, monkeypatch):
    columns = {"mag_auto": [22.0], "flux_radius": [2.0]}
    columns.update({f"c{i}": [float(i)] for i in range(1000)})
    catalog = tmp_path / "wide.ecsv"
    Table(columns).write(catalog)
    monkeypatch.setattr(GenerativeGalaxyModel, "sample", lambda *a, **k: pytest.fail("sampled first"))
    assert main(["sample", str(toy_dir), "--catalog", str(catalog), "--out", str(tmp_path / "o.fits")]) == 1
    assert "a FITS table holds at most 999" in capsys.readouterr().err


def test_repeated_band_is_refused(multiband_dir, tmp_path, capsys):
    assert main(["sample", str(multiband_dir), "--n", "2", "--bands", "g,g", "--out", str(tmp_path / "x.fits")]) == 1
    assert "names g twice" in capsys.readouterr().err


# ------------------------------------------------------------------- OS errors named (11)


def test_cache_that_is_a_file_is_named(tmp_path, monkeypatch, capsys):
    bogus = tmp_path / "cache-file"
    bogus.write_text("not a folder")
    monkeypatch.setenv("GALSIM_HUB_CACHE", str(bogus))
    assert main(["cache", "list"]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err


def test_unwritable_lock_folder_is_named(model_archive, tmp_path, monkeypatch):
    """A cache whose lock folder cannot be made (a file stands in its way: as root, the one
    way to make a folder unwritable) gives the cache's name, not a raw OS error."""
    root = tmp_path / "cache"
    root.mkdir()
    (root / ".locks").write_text("in the way")
    monkeypatch.setenv("GALSIM_HUB_CACHE", str(root))
    with pytest.raises(HandleError, match=r"the galsim-hub cache .* cannot be written"):
        fetch(resolve(model_archive))


def test_disk_full_during_extraction_is_named(model_archive, hub_cache, monkeypatch):
    import errno

    from galsim_hub.hub import extract

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(extract, "_write_file", full)
    with pytest.raises(HandleError, match="could not extract .* No space left on device"):
        fetch(resolve(model_archive))


def test_disk_full_during_download_is_named(http_server, tmp_path, monkeypatch):
    import errno

    (http_server.root / "f.bin").write_bytes(bytes(5000))

    class Full:
        name = str(tmp_path / "x")

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = open
    monkeypatch.setattr(
        "builtins.open",
        lambda path, mode="r", *a, **k: (
            _Wrapped(real_open(path, mode, *a, **k), Full())
            if str(path).endswith("out.bin")
            else real_open(path, mode, *a, **k)
        ),
    )
    with pytest.raises(DownloadError, match="could not write the download .* No space left on device"):
        hub_http.download(http_server.url("f.bin"), tmp_path / "out.bin")


class _Wrapped:
    """A file whose writes go to ``failing`` (and everything else to the real file)."""

    def __init__(self, real, failing):
        self._real, self._failing = real, failing

    def write(self, data):
        return self._failing.write(data)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()


def test_html_error_page_is_named(http_server, hub_cache):
    (http_server.root / "model.tar.gz").write_text("<!DOCTYPE html><html><body>Sign in</body></html>" * 10)
    with pytest.raises(DownloadError, match="sent a web page, not a model archive"):
        fetch(resolve(http_server.url("model.tar.gz")))


def test_catalog_folder_is_named(toy_dir, tmp_path, capsys):
    assert main(["sample", str(toy_dir), "--catalog", str(tmp_path), "--out", str(tmp_path / "o.fits")]) == 1
    assert "is a folder; give a catalog file" in capsys.readouterr().err


def test_nan_zero_point_uses_the_option_name(toy_dir, tmp_path, capsys):
    catalog = tmp_path / "c.fits"
    Table({"mag_auto": [22.0], "flux_radius": [2.0], "m": [22.0]}).write(catalog)
    assert (
        main(
            [
                "sample",
                str(toy_dir),
                "--catalog",
                str(catalog),
                "--mag-column",
                "m",
                "--zero-point",
                "nan",
                "--out",
                str(tmp_path / "o.fits"),
            ]
        )
        == 1
    )
    assert "--zero-point must be a finite number" in capsys.readouterr().err
