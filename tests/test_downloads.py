"""Downloads that survive the real world (issue #10): several verified sources per entry,
multi-file sources checked by git blob id, Git LFS pointers, retries, resumed transfers,
a minimum rate and a deadline, one User-Agent, and lock holders that say who they are.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import threading
import time
from pathlib import Path

import pytest

from galsim_hub.errors import ChecksumError, DownloadError
from galsim_hub.hub import http as hub_http
from galsim_hub.hub import settings
from galsim_hub.hub.cache import fetch, list_entries
from galsim_hub.hub.handle import load_index, resolve
from galsim_hub.hub.locks import EntryLock

LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:ff2f097c\nsize 52063270\n"
MODULE_FILES = {
    "saved_model.pb": b"\x0a\x05graph" * 50,
    "tfhub_module.pb": b"\x08\x03",
    "variables/variables.index": b"index-bytes",
    "variables/variables.data-00000-of-00001": bytes(range(256)) * 40,
}


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class RealWorldServer:
    """Loopback static server with byte ranges, one-off truncation, trickling, 503 bursts and a log."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[tuple[str, str, dict]] = []
        self.truncate_once: dict[str, int] = {}
        self.trickle: dict[str, tuple[int, float]] = {}
        self.unavailable: dict[str, int] = {}
        self.ranges = True
        self.etags = False  # send an ETag (the content's sha1) and honour If-Range
        self.range_offset: dict[str, int] = {}  # answer a Range request from this many bytes later
        self.stall: dict[str, tuple[int, float]] = {}  # send this many bytes, then go silent
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                server.requests.append(("GET", path, dict(self.headers)))
                if server.unavailable.get(path, 0) > 0:
                    server.unavailable[path] -= 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                file = server.root / path
                if not file.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, start = file.read_bytes(), 0
                etag = f'"{hashlib.sha1(body).hexdigest()}"'
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if server.etags and if_range is not None and if_range != etag:
                    wanted = None  # the file changed since: send it whole
                if wanted and server.ranges:
                    start = int(wanted.split("=")[1].split("-")[0]) + server.range_offset.pop(path, 0)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                if server.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                if server.etags:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                body = body[start:]
                if path in server.truncate_once:
                    self.wfile.write(body[: server.truncate_once.pop(path)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if path in server.stall:  # one piece, then silence
                    size, pause = server.stall[path]
                    self._paced([body[:size]], pause)
                    return
                if path in server.trickle:  # piece after piece, a pause after each
                    size, pause = server.trickle[path]
                    self._paced([body[offset : offset + size] for offset in range(0, len(body), size)], pause)
                    return
                self.wfile.write(body)

            def _paced(self, pieces, pause):
                try:
                    for piece in pieces:
                        self.wfile.write(piece)
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:
                    pass
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def gets(self, path: str) -> list[dict]:
        return [headers for method, p, headers in self.requests if method == "GET" and p == path]


@pytest.fixture
def world(tmp_path, hub_cache, monkeypatch):
    monkeypatch.setattr(settings, "HTTP_BACKOFF", 0.0)
    root = tmp_path / "www"
    root.mkdir()
    server = RealWorldServer(root)
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def serve_module(world: RealWorldServer, folder: str = "repo/generator") -> list[dict]:
    files = []
    for path, data in MODULE_FILES.items():
        target = world.root / folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files.append(
            {
                "path": path,
                "size": None if path.endswith("saved_model.pb") else len(data),
                "git_blob_sha1": blob_id(data),
            }
        )
    return files


def use_index(tmp_path: Path, monkeypatch, entries: list[dict]) -> None:
    index = tmp_path / "extra" / "index.json"
    index.parent.mkdir(exist_ok=True)
    index.write_text(json.dumps({"format": 1, "models": entries}))
    monkeypatch.setenv("GALSIM_HUB_INDEX", str(index))


def two_source_entry(world: RealWorldServer, files: list[dict]) -> dict:
    return {
        "name": "paper",
        "version": "1.0",
        "url": world.base_url + "lfs/model.tar.gz",
        "size": 52063270,
        "sha256_prefix": "ff2f097c",
        "sources": [{"base_url": world.base_url + "repo/generator/", "files": files}],
    }


def test_multi_file_source_is_downloaded_and_verified_by_git_blob_id(world, tmp_path, monkeypatch):
    use_index(
        tmp_path,
        monkeypatch,
        [
            {
                "name": "paper",
                "version": "1.0",
                "sources": [{"base_url": world.base_url + "repo/generator/", "files": serve_module(world)}],
            }
        ],
    )
    model = fetch(resolve("hub:paper"))
    for path, data in MODULE_FILES.items():
        assert (model / path).read_bytes() == data
    (entry,) = list_entries()
    assert entry["files"] == 4 and entry["base_url"].endswith("repo/generator/")
    assert entry["size_bytes"] == sum(map(len, MODULE_FILES.values()))


def test_a_wrong_file_fails_its_git_blob_id(world, tmp_path, monkeypatch):
    files = serve_module(world)
    (world.root / "repo/generator/variables/variables.index").write_bytes(b"tampered!!!")
    use_index(
        tmp_path,
        monkeypatch,
        [
            {
                "name": "paper",
                "version": "1.0",
                "sources": [{"base_url": world.base_url + "repo/generator/", "files": files}],
            }
        ],
    )
    with pytest.raises(ChecksumError, match=r"git blob id mismatch for .*variables/variables.index"):
        fetch(resolve("hub:paper"))
    assert list_entries() == []


def test_lfs_pointer_of_first_source_falls_back_to_the_second(world, tmp_path, monkeypatch):
    """What upstream users met when LFS bandwidth ran out (galsim_hub#9), now survived."""
    (world.root / "lfs").mkdir()
    (world.root / "lfs" / "model.tar.gz").write_bytes(LFS_POINTER)
    use_index(tmp_path, monkeypatch, [two_source_entry(world, serve_module(world))])
    model = fetch(resolve("hub:paper"))
    assert (model / "tfhub_module.pb").read_bytes() == b"\x08\x03"
    assert len(world.gets("lfs/model.tar.gz")) == 1
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")  # the second source's entry now serves offline
    assert fetch(resolve("hub:paper")) == model


def test_every_source_failing_names_each_failure(world, tmp_path, monkeypatch):
    (world.root / "lfs").mkdir()
    (world.root / "lfs" / "model.tar.gz").write_bytes(LFS_POINTER)
    use_index(tmp_path, monkeypatch, [two_source_entry(world, serve_module(world, folder="elsewhere"))])
    with pytest.raises(DownloadError) as info:
        fetch(resolve("hub:paper"))
    message = str(info.value)
    assert "every source of hub:paper failed: 1. " in message
    assert "Git LFS pointer" in message and "2. " in message and "HTTP 404" in message


def test_offline_with_no_cached_source(world, tmp_path, monkeypatch):
    use_index(tmp_path, monkeypatch, [two_source_entry(world, serve_module(world))])
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="offline mode is on"):
        fetch(resolve("hub:paper"))
    assert world.requests == []


@pytest.mark.parametrize(
    "source, problem",
    [
        ({"base_url": "https://h/x/", "files": [{"path": "../x", "git_blob_sha1": "a" * 40}]}, "relative path"),
        ({"base_url": "https://h/x/", "files": [{"path": "/etc/x", "git_blob_sha1": "a" * 40}]}, "relative path"),
        ({"base_url": "https://h/x/", "files": [{"path": "a", "git_blob_sha1": "xyz"}]}, "40 lower-case hex"),
        ({"base_url": "https://h/x/", "files": []}, "non-empty list"),
        ({"base_url": "relative/", "files": [{"path": "a", "git_blob_sha1": "a" * 40}]}, "http"),
        ({"url": "https://h/m.tar.gz", "sha256_prefix": "zz"}, "sha256_prefix"),
        ("a string", "not a JSON object"),
    ],
)
def test_malformed_sources_are_named(source, problem, tmp_path, hub_cache, monkeypatch):
    use_index(tmp_path, monkeypatch, [{"name": "paper", "version": "1.0", "sources": [source]}])
    with pytest.warns(UserWarning, match=problem) as info:
        load_index()
    message = str(info[0].message)
    assert "paper@1.0" in message and "index.json" in message and "skipped" in message


def test_bundled_lanusse2020_has_a_verified_second_source(hub_cache):
    source = resolve("hub:Lanusse2020")
    assert (source.kind, source.size, source.sha256, source.sha256_prefix) == ("url", 52063270, None, "ff2f097c")
    (second,) = source.alternatives
    assert second.kind == "files"
    assert second.location == (
        "https://raw.githubusercontent.com/McWilliamsCenter/deep_galaxy_models/"
        "0a1d62b3393cd54f5737047373ee375a51c34596/modules/flow_vae_maf_16/generator/"
    )
    files = {path: (size, blob) for path, size, blob in second.files}
    assert set(files) == {
        "saved_model.pb",
        "tfhub_module.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
    }
    assert files["tfhub_module.pb"] == (2, blob_id(b"\x08\x03"))  # ModuleDef{format: 3}


def test_extra_index_cannot_shadow_a_bundled_model_with_a_newer_version(tmp_path, hub_cache, monkeypatch):
    """Defect 3: synthetic_bdk@99 of a third party must not become hub:synthetic_bdk."""
    use_index(
        tmp_path, monkeypatch, [{"name": "synthetic_bdk", "version": "99", "url": "https://evil.example/m.tar.gz"}]
    )
    with pytest.warns(UserWarning, match="cannot shadow a bundled model"):
        source = resolve("hub:synthetic_bdk")
    assert source.entry["version"] == "1.0" and "evil" not in source.location
    with pytest.warns(UserWarning), pytest.raises(Exception, match="no version '99'"):
        resolve("hub:synthetic_bdk@99")


def test_broken_transfer_is_resumed_with_a_range_request(world):
    data = bytes(range(256)) * 400
    (world.root / "big.bin").write_bytes(data)
    world.truncate_once["big.bin"] = 30000
    target = world.root.parent / "big.out"
    assert hub_http.download(world.base_url + "big.bin", target) == len(data)
    assert target.read_bytes() == data
    first, second = world.gets("big.bin")
    assert "Range" not in first and second["Range"] == "bytes=30000-"


def test_broken_transfer_without_ranges_is_a_truncation(world):
    world.ranges = False
    (world.root / "big.bin").write_bytes(bytes(50000))
    world.truncate_once["big.bin"] = 1000
    with pytest.raises(DownloadError, match="truncated download of .*big.bin"):
        hub_http.download(world.base_url + "big.bin", world.root.parent / "big.out")


def test_trickling_server_is_abandoned_below_the_minimum_rate(world, monkeypatch):
    (world.root / "slow.bin").write_bytes(bytes(200_000))
    world.trickle["slow.bin"] = (100, 0.05)  # about 2 kB/s
    monkeypatch.setenv(settings.MIN_RATE_ENV, "50000")
    monkeypatch.setattr(settings, "RATE_WINDOW", 0.5)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=f"too slow.*below the minimum 50000 bytes/s.*{settings.MIN_RATE_ENV}"):
        hub_http.download(world.base_url + "slow.bin", world.root.parent / "slow.out")
    assert time.monotonic() - start < 10


def test_download_deadline(world, monkeypatch):
    (world.root / "slow.bin").write_bytes(bytes(200_000))
    world.trickle["slow.bin"] = (5000, 0.05)
    monkeypatch.setenv(settings.DEADLINE_ENV, "0.5")
    with pytest.raises(DownloadError, match=f"not finished after 0.5 s.*{settings.DEADLINE_ENV}"):
        hub_http.download(world.base_url + "slow.bin", world.root.parent / "slow.out")


def test_unavailable_server_is_retried_with_the_user_agent(world):
    (world.root / "m.bin").write_bytes(b"payload")
    world.unavailable["m.bin"] = 2
    target = world.root.parent / "m.out"
    hub_http.download(world.base_url + "m.bin", target)
    assert target.read_bytes() == b"payload"
    attempts = world.gets("m.bin")
    assert len(attempts) == 3
    assert {headers["User-Agent"] for headers in attempts} == {f"galsim-hub/{hub_http.__version__}"}
    assert {headers["Accept-Encoding"] for headers in attempts} == {"identity"}


def test_waiting_for_a_lock_says_who_holds_it(world, tmp_path, monkeypatch, caplog, hub_cache):
    files = serve_module(world)
    use_index(
        tmp_path,
        monkeypatch,
        [
            {
                "name": "paper",
                "version": "1.0",
                "sources": [{"base_url": world.base_url + "repo/generator/", "files": files}],
            }
        ],
    )
    monkeypatch.setattr(settings, "LOCK_REPORT_AFTER", 0.2)
    source = resolve("hub:paper")
    from galsim_hub.hub.cache import _entry_key

    hub_cache.mkdir(parents=True, exist_ok=True)
    held, release = threading.Event(), threading.Event()

    def holder():
        with EntryLock(hub_cache, _entry_key(source), "https://example.org/slow-download"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    threading.Timer(0.7, release.set).start()
    with caplog.at_level(logging.WARNING, logger="galsim_hub"):
        fetch(source)
    thread.join()
    assert "waiting" in caplog.text and "slow-download" in caplog.text and "process " in caplog.text


# ------------------------------------------------------------- hardening, round 3 (issue 17)


def test_resumed_answer_from_the_wrong_offset_restarts_the_download(world):
    """A 206 whose Content-Range does not start where the download stopped is not appended."""
    data = bytes(range(256)) * 400
    (world.root / "big.bin").write_bytes(data)
    world.truncate_once["big.bin"] = 30000
    world.range_offset["big.bin"] = 1000
    target = world.root.parent / "big.out"
    assert hub_http.download(world.base_url + "big.bin", target) == len(data)
    assert target.read_bytes() == data
    assert [("Range" in h) for h in world.gets("big.bin")] == [False, True, False]


def test_resume_sends_if_range_and_a_changed_file_starts_again(world):
    world.etags = True
    old, new = bytes(range(256)) * 400, bytes(reversed(range(256))) * 400
    (world.root / "big.bin").write_bytes(old)
    world.truncate_once["big.bin"] = 30000
    target = world.root.parent / "big.out"

    class Changing:
        """Replace the file between the broken transfer and the resumed request."""

        def __init__(self):
            self.calls = 0

        def __call__(self, *args, **kwargs):
            self.calls += 1
            if self.calls == 2:
                (world.root / "big.bin").write_bytes(new)
            return original(*args, **kwargs)

    original = hub_http.request
    try:
        hub_http.request = Changing()
        assert hub_http.download(world.base_url + "big.bin", target) == len(new)
    finally:
        hub_http.request = original
    assert target.read_bytes() == new  # never the first 30000 bytes of the old file + the rest
    first, second = world.gets("big.bin")
    assert second["Range"] == "bytes=30000-"
    assert second["If-Range"] == f'"{hashlib.sha1(old).hexdigest()}"'  # the first answer's ETag


def test_download_is_capped_at_the_index_size(world):
    (world.root / "big.bin").write_bytes(bytes(100_000))
    with pytest.raises(DownloadError, match="announces 100000 bytes, more than the size the index gives"):
        hub_http.download(world.base_url + "big.bin", world.root.parent / "out", size=2000)


def test_download_without_announced_length_is_capped_while_streaming(world, tmp_path, monkeypatch):
    monkeypatch.setenv(settings.MAX_EXTRACT_ENV, "5000")

    class Chunked(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body ends when the connection closes
            for _ in range(100):
                self.wfile.write(bytes(1000))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Chunked)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with pytest.raises(DownloadError, match=r"it sent \d+ bytes, more than the largest download allowed"):
            hub_http.download(f"http://127.0.0.1:{httpd.server_address[1]}/x", tmp_path / "out")
        assert (tmp_path / "out").stat().st_size <= 5000 + 65536
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_deadline_is_enforced_during_a_stalled_read(world, monkeypatch):
    (world.root / "big.bin").write_bytes(bytes(100_000))
    world.stall["big.bin"] = (1000, 8.0)
    monkeypatch.setenv(settings.DEADLINE_ENV, "1.5")
    started = time.monotonic()
    with pytest.raises(DownloadError, match="not finished after 1.5 s"):
        hub_http.download(world.base_url + "big.bin", world.root.parent / "out")
    assert time.monotonic() - started < 5.0
