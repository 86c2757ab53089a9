"""Model cache: download, verification, safe extraction, atomicity, locking, offline mode."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import platformdirs
import pytest

from galsim_hub.errors import ChecksumError, DownloadError, HandleError, MetadataError, UnsafeArchiveError
from galsim_hub.hub import cache, settings
from galsim_hub.hub.cache import cache_root, clear, fetch, is_offline, list_entries
from galsim_hub.hub.handle import ModelSource, resolve


def assert_no_leftovers(cache_dir: Path) -> None:
    """Nothing but lock files: no entry, no work folder, no downloaded file."""
    if not cache_dir.exists():
        return
    names = sorted(p.name for p in cache_dir.iterdir())
    assert names in ([], [".locks"]), names
    if names:
        assert all(p.suffix == ".lock" for p in (cache_dir / ".locks").iterdir())


def served_archive(http_server, make_model_archive, name="toy.tar.gz", **kwargs) -> tuple[str, Path]:
    archive = make_model_archive(http_server.root / name, **kwargs)
    return http_server.url(name), archive


def hub_source(url: str, archive: Path | None = None, **changes) -> ModelSource:
    """A source as resolved from a hub index entry for ``url``."""
    data = archive.read_bytes() if archive is not None else b""
    entry = {"name": "toy", "version": "1.0", "url": url, "_location": url}
    fields = {"sha256": hashlib.sha256(data).hexdigest() if archive else None, "size": len(data) if archive else None}
    fields.update(changes)
    return ModelSource("hub:toy", "url", url, entry=entry, **fields)


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.tar.gz"


def test_cache_root_from_environment_or_platform(tmp_path, monkeypatch):
    monkeypatch.setenv("GALSIM_HUB_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("GALSIM_HUB_CACHE")
    assert cache_root() == Path(platformdirs.user_cache_dir("galsim_hub"))


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)])
def test_is_offline(value, offline, monkeypatch):
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", value)
    assert is_offline() is offline


def test_directory_is_used_in_place(model_dir, hub_cache):
    assert fetch(resolve(model_dir)) == model_dir
    assert not hub_cache.exists()


def test_url_is_downloaded_once_then_reused_without_network(http_server, hub_cache, make_model_archive, monkeypatch):
    url, _ = served_archive(http_server, make_model_archive)
    model = fetch(resolve(url))
    assert (model / "galsim_hub.json").is_file() and model.name == "toy"
    assert model.is_relative_to(hub_cache)
    assert http_server.count("toy.tar.gz") == 1
    http_server.stop()
    assert fetch(resolve(url)) == model
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    assert fetch(resolve(url)) == model
    assert not list(hub_cache.glob("*/download.tar.gz"))  # the archive itself is not kept


def test_archive_with_model_at_top_level(http_server, hub_cache, make_model_archive):
    url, _ = served_archive(http_server, make_model_archive, top_folder=False)
    model = fetch(resolve(url))
    assert (model / "galsim_hub.json").is_file() and model.name == "model"


def test_tf1_hub_marker_is_recognised(http_server, hub_cache):
    archive = http_server.root / "tf1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("tfhub_module.pb", "saved_model.pb"):
            tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
    assert (fetch(resolve(http_server.url("tf1.tar.gz"))) / "tfhub_module.pb").is_file()


def test_local_archive_is_extracted_once_and_rekeyed_when_changed(model_archive, hub_cache, make_model_archive):
    first = fetch(resolve(model_archive))
    assert (first / "galsim_hub.json").is_file() and first.is_relative_to(hub_cache)
    assert fetch(resolve(model_archive)) == first
    assert len(list_entries()) == 1
    make_model_archive(model_archive, version="2.0")
    second = fetch(resolve(model_archive))
    assert second != first
    assert json.loads((second / "galsim_hub.json").read_text())["version"] == "2.0"


def test_known_sha256_is_the_key_and_is_verified(http_server, hub_cache, make_model_archive):
    url, archive = served_archive(http_server, make_model_archive)
    source = hub_source(url, archive)
    model = fetch(source)
    (entry,) = list_entries()
    assert entry["key"] == source.sha256 == entry["sha256"]
    assert entry["size_bytes"] == archive.stat().st_size
    assert (entry["name"], entry["version"], entry["url"], entry["source"]) == ("toy", "1.0", url, "hub:toy")
    assert model == Path(entry["model_dir"])


def test_sha256_mismatch_names_both_digests_and_leaves_nothing(http_server, hub_cache, make_model_archive):
    url, archive = served_archive(http_server, make_model_archive)
    good = hub_source(url, archive)
    wrong = dataclasses.replace(good, sha256="0" * 64)
    with pytest.raises(ChecksumError) as info:
        fetch(wrong)
    assert "0" * 64 in str(info.value) and good.sha256 in str(info.value) and url in str(info.value)
    assert_no_leftovers(hub_cache)
    assert (fetch(good) / "galsim_hub.json").is_file()


@pytest.mark.parametrize("status", [404, 500, 503])
def test_http_error_status(status, http_server, hub_cache, make_model_archive):
    url, _ = served_archive(http_server, make_model_archive)
    http_server.fail("toy.tar.gz", status)
    with pytest.raises(DownloadError, match=rf"{url}: HTTP {status}"):
        fetch(resolve(url))
    assert_no_leftovers(hub_cache)
    http_server.restore("toy.tar.gz")
    assert (fetch(resolve(url)) / "galsim_hub.json").is_file()


def test_connection_refused(hub_cache):
    url = refused_url()
    with pytest.raises(DownloadError, match=rf"{url}: connection failed"):
        fetch(resolve(url))
    assert_no_leftovers(hub_cache)


def test_timeout(http_server, hub_cache, make_model_archive, monkeypatch):
    url, _ = served_archive(http_server, make_model_archive)
    monkeypatch.setattr(settings, "HTTP_TIMEOUT", (2.0, 0.2))
    http_server.delay("toy.tar.gz", 1.0)
    with pytest.raises(DownloadError, match=rf"{url}: timed out"):
        fetch(resolve(url))
    assert_no_leftovers(hub_cache)


def test_truncated_body_is_detected(http_server, hub_cache, make_model_archive):
    url, archive = served_archive(http_server, make_model_archive)
    http_server.truncate("toy.tar.gz", archive.stat().st_size // 2)
    with pytest.raises(DownloadError, match=f"truncated download of {url}"):
        fetch(resolve(url))
    assert_no_leftovers(hub_cache)
    http_server.restore("toy.tar.gz")
    assert (fetch(resolve(url)) / "galsim_hub.json").is_file()


def test_size_differing_from_index_is_detected(http_server, hub_cache, make_model_archive):
    url, archive = served_archive(http_server, make_model_archive)
    size = archive.stat().st_size
    with pytest.raises(DownloadError, match=rf"truncated archive .*{size} bytes, the index says {size + 10}"):
        fetch(hub_source(url, sha256=None, size=size + 10))
    with pytest.raises(
        DownloadError, match=rf"announces {size} bytes, more than the size the index gives \({size - 10} bytes\)"
    ):
        fetch(hub_source(url, sha256=None, size=size - 10))
    assert_no_leftovers(hub_cache)


def test_offline_mode_refuses_uncached_url(http_server, hub_cache, make_model_archive, monkeypatch):
    url, _ = served_archive(http_server, make_model_archive)
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match=rf"offline mode is on.*{url}"):
        fetch(resolve(url))
    assert http_server.count("toy.tar.gz") == 0
    assert_no_leftovers(hub_cache)


def test_offline_mode_advice_for_lanusse2020(hub_cache, monkeypatch):
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    source = resolve("hub:Lanusse2020")
    with pytest.raises(DownloadError) as info:
        fetch(source)
    message = str(info.value)
    assert "offline mode is on" in message and "hub:Lanusse2020" in message and source.location in message
    assert "galsim-hub fetch /path/model.tar.gz" in message and "local path" in message
    assert_no_leftovers(hub_cache)


@pytest.mark.slow
def test_connection_error_for_hub_model_gives_offline_advice(hub_cache):
    source = dataclasses.replace(resolve("hub:Lanusse2020"), location=refused_url())
    with pytest.raises(DownloadError, match=r"connection failed.*galsim-hub fetch /path/model.tar.gz"):
        fetch(source)
    assert_no_leftovers(hub_cache)


@pytest.mark.parametrize("known", ["sha256", "prefix_and_size"])
def test_locally_fetched_archive_serves_hub_entry_offline(
    known, http_server, hub_cache, make_model_archive, monkeypatch
):
    url, archive = served_archive(http_server, make_model_archive)
    source = hub_source(url, archive)
    if known == "prefix_and_size":
        source = dataclasses.replace(source, sha256=None, sha256_prefix=source.sha256[:8])
    copy = archive.parent.parent / "downloaded_elsewhere" / "model.tar.gz"
    copy.parent.mkdir()
    copy.write_bytes(archive.read_bytes())
    local_model = fetch(resolve(copy))
    http_server.stop()
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    assert fetch(source) == local_model


def test_size_alone_does_not_identify_a_model(http_server, hub_cache, make_model_archive, monkeypatch, tmp_path):
    """Defect 4: a cached archive of the right size but other content must not serve a hub entry."""
    url, archive = served_archive(http_server, make_model_archive)
    for name in ("joy", "txo", "aoy", "tox", "toz", "boy", "yot", "tax"):  # same length, other bytes
        impostor = make_model_archive(tmp_path / "elsewhere" / "toy.tar.gz", name=name)
        if impostor.stat().st_size == archive.stat().st_size:
            break
    assert impostor.stat().st_size == archive.stat().st_size and impostor.read_bytes() != archive.read_bytes()
    fetch(resolve(impostor))
    source = hub_source(url, archive)
    size_only = dataclasses.replace(source, sha256=None)
    wrong_prefix = dataclasses.replace(source, sha256=None, sha256_prefix="0" * 8)
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    for unidentified in (size_only, wrong_prefix):
        with pytest.raises(DownloadError, match="offline mode is on"):
            fetch(unidentified)
    monkeypatch.delenv("GALSIM_HUB_OFFLINE")
    with pytest.raises(ChecksumError, match="expected a digest starting 00000000"):
        fetch(wrong_prefix)


def test_other_archive_does_not_serve_hub_entry(http_server, hub_cache, make_model_archive, monkeypatch, tmp_path):
    url, archive = served_archive(http_server, make_model_archive)
    fetch(resolve(make_model_archive(tmp_path / "other.tar.gz", name="other_model_name")))
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="offline mode is on"):
        fetch(hub_source(url, archive))


def unsafe_archive(path: Path, kind: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        marker = tarfile.TarInfo("model/galsim_hub.json")
        tar.addfile(marker, io.BytesIO(b""))
        info = tarfile.TarInfo(
            {"dotdot": "model/../../evil.txt", "absolute": "/tmp/galsim_hub_evil.txt"}.get(kind, "model/link")
        )
        if kind == "symlink_out":
            info.type, info.linkname = tarfile.SYMTYPE, "../../outside.txt"
        elif kind == "symlink_abs":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink_out":
            info.type, info.linkname = tarfile.LNKTYPE, "../outside.txt"
        elif kind == "device":
            info.type = tarfile.CHRTYPE
        elif kind == "fifo":
            info.type = tarfile.FIFOTYPE
        tar.addfile(info, io.BytesIO(b"") if info.isfile() else None)
    return path


@pytest.mark.parametrize(
    "kind, problem",
    [
        ("dotdot", "contains '..'"),
        ("absolute", "absolute path"),
        ("symlink_out", "is a symbolic link"),
        ("symlink_abs", "is a symbolic link"),
        ("hardlink_out", "is a hard link"),
        ("device", "device"),
        ("fifo", "fifo"),
    ],
)
def test_unsafe_archives_are_refused(kind, problem, tmp_path, hub_cache, http_server):
    archive = unsafe_archive(http_server.root / f"{kind}.tar.gz", kind)
    for handle in (archive, http_server.url(archive.name)):
        with pytest.raises(UnsafeArchiveError, match=problem):
            fetch(resolve(handle))
        assert_no_leftovers(hub_cache)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/galsim_hub_evil.txt").exists()


def test_even_an_internal_symlink_is_refused(tmp_path, hub_cache):
    archive = tmp_path / "linked.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("m/galsim_hub.json"), io.BytesIO(b""))
        link = tarfile.TarInfo("m/alias.json")
        link.type, link.linkname = tarfile.SYMTYPE, "galsim_hub.json"
        tar.addfile(link)
    with pytest.raises(UnsafeArchiveError, match="'m/alias.json' is a symbolic link to 'galsim_hub.json'"):
        fetch(resolve(archive))
    assert_no_leftovers(hub_cache)


def test_corrupt_archive(tmp_path, hub_cache, http_server):
    (http_server.root / "junk.tar.gz").write_bytes(b"this is not gzip" * 100)
    with pytest.raises(DownloadError, match="junk.tar.gz is not a readable .tar.gz"):
        fetch(resolve(http_server.url("junk.tar.gz")))
    with pytest.raises(HandleError, match="junk.tar.gz is not a readable .tar.gz"):
        fetch(resolve(http_server.root / "junk.tar.gz"))
    assert_no_leftovers(hub_cache)


def test_archive_without_model(tmp_path, hub_cache):
    archive = tmp_path / "empty.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("a/notes.txt"), io.BytesIO(b""))
        tar.addfile(tarfile.TarInfo("b/galsim_hub.json"), io.BytesIO(b""))
    with pytest.raises(MetadataError, match="holds no model"):
        fetch(resolve(archive))
    assert_no_leftovers(hub_cache)


def test_local_archive_removed_after_resolve(model_archive, hub_cache):
    source = resolve(model_archive)
    model_archive.unlink()
    with pytest.raises(HandleError, match="does not exist"):
        fetch(source)


def work_folder(cache_dir: Path, key: str, pid: int, host: str | None = None) -> Path:
    """A work folder as a fetch by process ``pid`` leaves it."""
    folder = cache_dir / f".tmp-{key}-{pid}"
    folder.mkdir(parents=True)
    (folder / "download.tar.gz").write_bytes(b"partial")
    owner = {"host": host or socket.gethostname(), "pid": pid, "started": "2026-01-01T00:00:00+00:00"}
    (folder / ".owner.json").write_text(json.dumps(owner))
    return folder


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_work_folder_of_killed_fetch_is_removed(http_server, hub_cache, make_model_archive):
    url, archive = served_archive(http_server, make_model_archive)
    source = hub_source(url, archive)
    stale = work_folder(hub_cache, source.sha256, dead_pid())
    fetch(source)
    assert not stale.exists()
    other = work_folder(hub_cache, "f" * 64, dead_pid())
    clear()
    assert not other.exists()
    assert_no_leftovers(hub_cache)


def test_work_folder_of_a_running_fetch_is_kept(http_server, hub_cache, make_model_archive):
    """Locks may not work (NFS, Lustre): a live process's work folder is never swept."""
    url, archive = served_archive(http_server, make_model_archive)
    source = hub_source(url, archive)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as running:
        try:
            busy = work_folder(hub_cache, source.sha256, running.pid)
            elsewhere = work_folder(hub_cache, "e" * 64, 1, host="another-host.example")
            assert (fetch(source) / "galsim_hub.json").is_file()
            assert clear() == 1
            assert (busy / "download.tar.gz").is_file() and elsewhere.is_dir()
        finally:
            running.kill()
    old = time.time() - settings.STALE_WORK_SECONDS - 10
    os.utime(elsewhere, (old, old))
    clear()
    assert not busy.exists() and not elsewhere.exists()


def test_entry_renamed_into_place_by_another_process_is_accepted(
    http_server, hub_cache, make_model_archive, monkeypatch
):
    """Without a working lock two processes may build the same entry: the second rename is success."""
    url, archive = served_archive(http_server, make_model_archive)
    source = hub_source(url, archive)
    real_install = cache._install

    def racing_install(work, root, key, record):
        other = root / ".other-process"
        shutil.copytree(work, other)
        os.rename(other, root / key)  # the other process finishes first
        return real_install(work, root, key, record)

    monkeypatch.setattr(cache, "_install", racing_install)
    model = fetch(source)
    assert model == hub_cache / source.sha256 / "model" / "toy"
    assert (model / "galsim_hub.json").is_file() and len(list_entries()) == 1
    assert_no_leftovers_but_entries(hub_cache)


def assert_no_leftovers_but_entries(cache_dir: Path) -> None:
    assert not [p.name for p in cache_dir.iterdir() if p.name.startswith(".") and p.name != ".locks"]


def test_damaged_entry_is_rebuilt(model_archive, hub_cache):
    model = fetch(resolve(model_archive))
    (model.parent.parent / "entry.json").unlink()
    assert list_entries() == []
    rebuilt = fetch(resolve(model_archive))
    assert (rebuilt / "galsim_hub.json").is_file() and len(list_entries()) == 1


def test_progress_bar(http_server, hub_cache, make_model_archive, capfd):
    url, _ = served_archive(http_server, make_model_archive)
    fetch(resolve(url), progress=True)
    assert "toy.tar.gz" in capfd.readouterr().err
    clear()
    fetch(resolve(url), progress=False)
    assert capfd.readouterr().err == ""


def test_list_entries_and_clear(http_server, hub_cache, make_model_archive, model_archive):
    assert list_entries() == [] and clear() == 0
    url, _ = served_archive(http_server, make_model_archive)
    fetch(resolve(url))
    fetch(resolve(model_archive))
    entries = list_entries()
    assert len(entries) == 2
    by_origin = {("url" in e): e for e in entries}
    assert by_origin[True]["url"] == url and by_origin[False]["archive_path"] == str(model_archive)
    for entry in entries:
        assert set(entry) >= {"key", "path", "model_dir", "source", "sha256", "size_bytes", "created"}
        assert Path(entry["path"]) == hub_cache / entry["key"]
    with pytest.raises(HandleError, match="no cache entry 'nope'"):
        clear(["nope"])
    assert len(list_entries()) == 2
    assert clear([by_origin[True]["key"]]) == 1
    assert [e["key"] for e in list_entries()] == [by_origin[False]["key"]]
    assert clear() == 1
    assert list_entries() == []
    assert_no_leftovers(hub_cache)


def _fetch_in_process(source, barrier, results):
    barrier.wait()
    results.put(str(fetch(source, progress=False)))


@pytest.mark.slow
def test_concurrent_processes_download_once(http_server, hub_cache, make_model_archive):
    url, _ = served_archive(http_server, make_model_archive)
    http_server.delay("toy.tar.gz", 0.5)  # keep the first download going while the others arrive
    source = resolve(url)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(8), context.Queue()
    workers = [context.Process(target=_fetch_in_process, args=(source, barrier, results)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * 8
    paths = [results.get(timeout=5) for _ in workers]
    assert len(set(paths)) == 1 and (Path(paths[0]) / "galsim_hub.json").is_file()
    assert http_server.count("toy.tar.gz") == 1
    assert len(list_entries()) == 1
    assert not list(hub_cache.glob(".tmp-*"))


def test_cache_entries_and_data_sets_follow_the_umask(model_archive, hub_cache, tmp_path):
    """Issue 17 (12): a group-shared cache (umask 002) gets group-writable entries, not 0700."""
    import os

    from galsim_hub.hub import permissions
    from galsim_hub.training.datasets.data import build_synthetic_dataset

    old = os.umask(0o002)
    permissions._umask = None
    try:
        model = fetch(resolve(model_archive))
        entry = model.relative_to(hub_cache).parts[0]
        assert (hub_cache / entry).stat().st_mode & 0o777 == 0o775
        data = build_synthetic_dataset(tmp_path / "data", 4, stamp_size=16, noise_sigma=0.01, seed=0, shard_size=4)
        assert all(p.stat().st_mode & 0o777 == 0o664 for p in data.iterdir() if p.is_file())
    finally:
        os.umask(old)
        permissions._umask = None
