"""Concurrent publishes (issue #10, defect 2): no index entry may be lost.

The index update is exercised directly (`_publish_to_directory`, `_publish_to_url`) with
small files, so that no TensorFlow model is needed.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from galsim_hub.errors import HandleError, MetadataError
from galsim_hub.hub import publish as publish_module
from galsim_hub.hub.publish import ConcurrentPublishError, _publish_to_directory, _publish_to_url


def entry(version: str) -> dict:
    return {
        "name": "tiny",
        "version": version,
        "format": "galsim-hub-1",
        "path": f"tiny/{version}/model.tar.gz",
        "card": f"tiny/{version}/README.md",
        "sha256": hashlib.sha256(version.encode()).hexdigest(),
        "size": 1,
    }


@pytest.fixture
def files(tmp_path):
    archive, card = tmp_path / "model.tar.gz", tmp_path / "README.md"
    archive.write_bytes(b"archive")
    card.write_text("# tiny\n")
    return archive, card


def test_eight_concurrent_publishes_into_one_folder_keep_every_entry(tmp_path, files, monkeypatch):
    hub = tmp_path / "hub"
    hub.mkdir()
    real_copy = shutil.copyfile

    def slow_copy(source, target):  # widen the window between reading and writing the index
        time.sleep(0.05)
        return real_copy(source, target)

    monkeypatch.setattr(publish_module.shutil, "copyfile", slow_copy)
    versions = [f"{n}.0" for n in range(1, 9)]
    barrier, errors = threading.Barrier(len(versions)), []

    def publish_one(version):
        barrier.wait()
        try:
            _publish_to_directory(hub, entry(version), *files)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish_one, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    index = json.loads((hub / "index.json").read_text())
    assert sorted(e["version"] for e in index["models"]) == versions
    assert all((hub / "tiny" / v / "model.tar.gz").is_file() for v in versions)
    assert not list(hub.glob(".index.json.*.tmp"))


def test_folder_left_by_a_failed_publish_is_named(tmp_path, files):
    hub = tmp_path / "hub"
    (hub / "tiny" / "1.0").mkdir(parents=True)
    with pytest.raises(HandleError, match="does not list it"):
        _publish_to_directory(hub, entry("1.0"), *files)


@pytest.mark.parametrize(
    "index, problem",
    [
        ("{broken", "index.json is not valid JSON"),
        (json.dumps({"format": 1, "models": ["not an object"]}), "entry 0 is not a JSON object"),
        (json.dumps([1, 2]), "is not a galsim-hub index"),
    ],
)
def test_malformed_hub_index_is_named(index, problem, tmp_path, files):
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "index.json").write_text(index)
    with pytest.raises(MetadataError, match=problem):
        _publish_to_directory(hub, entry("1.0"), *files)


class ETagHub:
    """A loopback hub that serves GET with an ETag and honours If-Match / If-None-Match on PUT."""

    def __init__(self, root: Path, etags: bool = True):
        self.root, self.etags, self.conditions = root, etags, []
        self.before_index_put = None
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _file(self) -> Path:
                return hub.root / self.path.lstrip("/")

            def do_GET(self):
                path = self._file()
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if hub.etags:
                    self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                path = self._file()
                if path.name == "index.json":
                    if hub.before_index_put:
                        hub.before_index_put()
                    current = f'"{hashlib.sha256(path.read_bytes()).hexdigest()}"' if path.is_file() else None
                    match, none_match = self.headers.get("If-Match"), self.headers.get("If-None-Match")
                    hub.conditions.append((match, none_match))
                    if (match is not None and match != current) or (none_match == "*" and current is not None):
                        self.send_error(412)
                        return
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hub/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def index(self) -> dict:
        return json.loads((self.root / "hub" / "index.json").read_text())


@pytest.fixture
def etag_hub(tmp_path):
    hub = ETagHub(tmp_path / "www")
    yield hub
    hub.httpd.shutdown()
    hub.httpd.server_close()


def test_http_index_is_written_conditionally(etag_hub, files):
    _publish_to_url(etag_hub.url, entry("1.0"), *files)
    _publish_to_url(etag_hub.url, entry("2.0"), *files)
    first, second = etag_hub.conditions
    assert first == (None, "*")  # no index yet: create only
    assert second[0] and second[0].startswith('"') and second[1] is None  # If-Match: the ETag read
    assert [e["version"] for e in etag_hub.index()["models"]] == ["1.0", "2.0"]


def test_lost_http_update_is_refused_with_a_clear_error(etag_hub, files):
    _publish_to_url(etag_hub.url, entry("1.0"), *files)

    def other_publisher_wins():  # between our GET and our PUT another publish lands
        etag_hub.before_index_put = None
        index = etag_hub.index()
        index["models"].append(entry("3.0"))
        (etag_hub.root / "hub" / "index.json").write_text(json.dumps(index))

    etag_hub.before_index_put = other_publisher_wins
    with pytest.raises(ConcurrentPublishError, match=r"changed while publishing tiny@2.0 \(HTTP 412.*publish again"):
        _publish_to_url(etag_hub.url, entry("2.0"), *files)
    assert [e["version"] for e in etag_hub.index()["models"]] == ["1.0", "3.0"]  # nothing overwritten
    _publish_to_url(etag_hub.url, entry("2.0"), *files)  # publishing again works
    assert [e["version"] for e in etag_hub.index()["models"]] == ["1.0", "3.0", "2.0"]


def test_hub_without_etags_is_warned_about(tmp_path, files):
    hub = ETagHub(tmp_path / "www", etags=False)
    try:
        _publish_to_url(hub.url, entry("1.0"), *files)
        with pytest.warns(UserWarning, match="sends no ETag"):
            _publish_to_url(hub.url, entry("2.0"), *files)
    finally:
        hub.httpd.shutdown()
        hub.httpd.server_close()
