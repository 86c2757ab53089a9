"""Hostile model archives (issue #10, defect 1): nothing may be written outside the cache.

Each archive is fetched as a local file and as an ``http://`` URL, with the ``tarfile`` of
this Python and with a ``tarfile`` stripped of ``data_filter`` and ``FilterError`` as on
Python 3.10.0-3.10.11.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from conftest import minimal_metadata

from galsim_hub.cli import main
from galsim_hub.errors import MetadataError, UnsafeArchiveError
from galsim_hub.hub import settings
from galsim_hub.hub.cache import fetch, list_entries
from galsim_hub.hub.handle import resolve

MARKER = json.dumps(minimal_metadata()).encode()


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, hard: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
    tar.addfile(info)


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    tar.addfile(info)


def cve_2025_4517_chain(tar: tarfile.TarFile) -> None:
    """Directories of 247 characters reached through one-letter symlinks, so that the resolved
    path exceeds PATH_MAX and ``os.path.realpath`` stops checking, then a link up the chain."""
    component = "d" * 247
    steps = "abcdefghijklmnop"
    path = ""
    for step in steps:
        add_dir(tar, os.path.join(path, component))
        add_link(tar, os.path.join(path, step), component)
        path = os.path.join(path, component)
    chain = os.path.join(*steps, "l" * 254)
    add_link(tar, chain, "../" * len(steps))
    add_link(tar, "escape", os.path.join(chain, "..", "..", "..", ".."))
    add_file(tar, "escape/pwned_by_chain.txt", b"owned")


def dot_loop(tar: tarfile.TarFile) -> None:
    """``x -> .`` and ``x/x/x/s -> ../../..``: name checks alone let ``x/x/x/s/...`` escape."""
    add_link(tar, "x", ".")
    add_link(tar, "x/x/x/s", "../../..")
    add_file(tar, "x/x/x/s/pwned_by_loop.txt", b"owned")


def hard_link(tar: tarfile.TarFile) -> None:
    add_link(tar, "model/passwd", "../../../../../../etc/passwd", hard=True)


def inner_hard_link(tar: tarfile.TarFile) -> None:
    add_link(tar, "model/copy.json", "model/galsim_hub.json", hard=True)


def duplicate(tar: tarfile.TarFile) -> None:
    add_file(tar, "model/galsim_hub.json", b"replaced")


HOSTILE = {
    "cve_2025_4517_symlink_chain": (cve_2025_4517_chain, "is a symbolic link"),
    "dot_symlink_loop": (dot_loop, "'x' is a symbolic link to '.'"),
    "hard_link_out": (hard_link, "is a hard link"),
    "hard_link_inside": (inner_hard_link, "is a hard link"),
    "duplicate_member": (duplicate, "appears twice"),
}


def _add_saved_model(tar) -> None:
    """Placeholder SavedModel files: the cache refuses a model without them."""
    add_file(tar, "model/saved_model.pb", b"pb")
    add_file(tar, "model/variables/variables.index", b"index")
    add_file(tar, "model/variables/variables.data-00000-of-00001", b"data")


def hostile_archive(path: Path, build) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        add_file(tar, "model/galsim_hub.json", MARKER)
        build(tar)
        _add_saved_model(tar)
    return path


def snapshot(root: Path, cache: Path) -> set[str]:
    """Every path under ``root`` outside the cache (links are not followed)."""
    found = set()
    for folder, dirs, files in os.walk(root):
        if Path(folder) == cache or cache in Path(folder).parents:
            continue
        found.update(os.path.join(folder, name) for name in dirs + files)
    return found


@pytest.fixture(params=["this_python", "python_3_10_0"])
def tarfile_flavour(request, monkeypatch):
    """The real ``tarfile``, or one without the 3.10.12+/3.11.4+ extraction filters."""
    if request.param == "python_3_10_0":
        for name in (
            "data_filter",
            "tar_filter",
            "fully_trusted_filter",
            "FilterError",
            "AbsolutePathError",
            "OutsideDestinationError",
            "LinkOutsideDestinationError",
        ):
            monkeypatch.delattr(tarfile, name, raising=False)
    return request.param


@pytest.fixture
def deep_cache(tmp_path, monkeypatch):
    """A cache four folders below ``tmp_path``, so escapes of a few ``..`` land in ``tmp_path``."""
    cache = tmp_path / "a" / "b" / "c" / "cache"
    cache.mkdir(parents=True)
    monkeypatch.setenv("GALSIM_HUB_CACHE", str(cache))
    monkeypatch.delenv("GALSIM_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("GALSIM_HUB_INDEX", raising=False)
    return cache


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_writes_nothing_outside(
    case, tarfile_flavour, tmp_path, deep_cache, http_server
):
    build, problem = HOSTILE[case]
    archive = hostile_archive(http_server.root / f"{case}.tar.gz", build)
    before = snapshot(tmp_path, deep_cache)
    for handle in (str(archive), http_server.url(archive.name)):
        with pytest.raises(UnsafeArchiveError, match=problem):
            fetch(resolve(handle))
    assert snapshot(tmp_path, deep_cache) == before
    assert list_entries() == []
    assert sorted(p.name for p in deep_cache.iterdir()) == [".locks"]  # no work folder left


def test_cli_fetch_of_hostile_archive_exits_1_and_writes_nothing(tmp_path, deep_cache, capsys):
    archive = hostile_archive(tmp_path / "bad.tar.gz", dot_loop)
    before = snapshot(tmp_path, deep_cache)
    assert main(["fetch", str(archive), "--quiet"]) == 1
    assert "is a symbolic link" in capsys.readouterr().err
    assert snapshot(tmp_path, deep_cache) == before


@pytest.mark.parametrize("kind", ["fifo", "block_device", "char_device"])
def test_special_members_are_refused(kind, tmp_path, deep_cache):
    archive = tmp_path / f"{kind}.tar.gz"

    def special(tar):
        info = tarfile.TarInfo("model/special")
        info.type = {"fifo": tarfile.FIFOTYPE, "block_device": tarfile.BLKTYPE, "char_device": tarfile.CHRTYPE}[kind]
        tar.addfile(info)

    hostile_archive(archive, special)
    with pytest.raises(UnsafeArchiveError, match="fifo" if kind == "fifo" else "device"):
        fetch(resolve(archive))


def test_archive_bomb_is_stopped_at_the_configured_cap(tmp_path, deep_cache, monkeypatch):
    archive = tmp_path / "bomb.tar.gz"
    hostile_archive(archive, lambda tar: add_file(tar, "model/zeros.bin", bytes(8_000_000)))
    assert archive.stat().st_size < 50_000  # a small archive ...
    monkeypatch.setenv(settings.MAX_EXTRACT_ENV, "1000000")  # ... that expands 8x beyond the cap
    with pytest.raises(
        UnsafeArchiveError, match=f"expands beyond the limit of 1000000 bytes.*{settings.MAX_EXTRACT_ENV}"
    ):
        fetch(resolve(archive))
    assert sorted(p.name for p in deep_cache.iterdir()) == [".locks"]
    monkeypatch.setenv(settings.MAX_EXTRACT_ENV, "9000000")
    assert (fetch(resolve(archive)) / "zeros.bin").stat().st_size == 8_000_000


def test_member_count_is_capped(tmp_path, deep_cache, monkeypatch):
    archive = tmp_path / "many.tar.gz"
    hostile_archive(archive, lambda tar: [add_file(tar, f"model/f{i}") for i in range(30)])
    monkeypatch.setattr(settings, "MAX_EXTRACT_MEMBERS", 20)
    with pytest.raises(UnsafeArchiveError, match="more than 20 members"):
        fetch(resolve(archive))


def test_bad_cap_setting_is_named(tmp_path, deep_cache, monkeypatch):
    archive = hostile_archive(tmp_path / "ok.tar.gz", lambda tar: None)
    monkeypatch.setenv(settings.MAX_EXTRACT_ENV, "lots")
    with pytest.raises(ValueError, match=f"{settings.MAX_EXTRACT_ENV}='lots' is not a number"):
        fetch(resolve(archive))


def test_regular_archive_still_extracts_with_modes(tmp_path, deep_cache, tarfile_flavour):
    archive = tmp_path / "fine.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_dir(tar, "model")
        add_file(tar, "model/galsim_hub.json", MARKER)
        add_dir(tar, "model/variables")
        add_file(tar, "model/variables/variables.index", b"index")
        add_file(tar, "model/variables/variables.data-00000-of-00001", b"data")
        add_file(tar, "model/saved_model.pb", b"pb")
    model = fetch(resolve(archive))
    assert (model / "galsim_hub.json").read_bytes() == MARKER
    assert (model / "variables" / "variables.index").stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------- corrupt archives (issue 17, 1)

BUNDLED = Path(__file__).resolve().parents[1] / "hub_models" / "synthetic_bdk" / "1.0" / "model.tar.gz"


def _entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("where", [0.5, 0.3, 0.95])
def test_flipped_byte_in_a_model_archive_is_refused_and_not_cached(tmp_path, deep_cache, capsys, where):
    data = bytearray(BUNDLED.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    flipped = tmp_path / "flip.tar.gz"
    flipped.write_bytes(bytes(data))
    assert main(["fetch", str(flipped)]) != 0
    assert "flip.tar.gz" in capsys.readouterr().err
    assert _entries(deep_cache) == []


def test_bad_tar_header_in_the_middle_is_not_taken_for_the_end(tmp_path, deep_cache):
    """tarfile stops silently at a header it cannot parse: the members after it would be lost."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.GNU_FORMAT) as tar:
        add_file(tar, "model/galsim_hub.json", MARKER)
        add_file(tar, "model/README.md", b"card")
        _add_saved_model(tar)
    raw = bytearray(plain.getvalue())
    raw[1024 + 148 : 1024 + 156] = b"garbage!"  # the checksum field of the second member's header
    archive = tmp_path / "bad-header.tar.gz"
    archive.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(UnsafeArchiveError, match="corrupt: an unreadable tar header follows its 1 readable member"):
        fetch(resolve(archive))
    assert _entries(deep_cache) == []


def test_incomplete_model_is_refused_before_the_entry_appears(tmp_path, deep_cache):
    archive = tmp_path / "incomplete.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_file(tar, "model/galsim_hub.json", MARKER)
        add_file(tar, "model/saved_model.pb", b"pb")
    with pytest.raises(MetadataError, match=r"incomplete model: variables/variables.index missing"):
        fetch(resolve(archive))
    assert _entries(deep_cache) == []


def test_format3_model_without_its_keras_file_is_refused(tmp_path, deep_cache):
    archive = tmp_path / "no-keras.tar.gz"
    metadata = dict(minimal_metadata(), format=3, keras_model="model.keras")
    with tarfile.open(archive, "w:gz") as tar:
        add_file(tar, "model/galsim_hub.json", json.dumps(metadata).encode())
        _add_saved_model(tar)
    with pytest.raises(MetadataError, match=r"incomplete model: model.keras missing"):
        fetch(resolve(archive))
    assert _entries(deep_cache) == []


def test_unloadable_cached_model_names_its_cache_entry(tmp_path, deep_cache):
    from galsim_hub.model import GenerativeGalaxyModel

    model_dir = fetch(resolve(hostile_archive(tmp_path / "garbage.tar.gz", lambda tar: None)))
    entry = model_dir.relative_to(deep_cache).parts[0]
    with pytest.raises(
        MetadataError,
        match=rf"cannot be loaded .*cache entry {entry}: remove it with "
        rf"`galsim-hub cache clear {entry}`",
    ):
        GenerativeGalaxyModel(model_dir).sample({"mag_auto": [22.0]}, seed=1)
