"""Shared pytest fixtures: a loopback HTTP server and an isolated model cache."""

from __future__ import annotations

import collections
import http.server
import io
import json
import tarfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest


class LoopbackServer:
    """A static file server on 127.0.0.1 with request counting and failure injection.

    Attributes
    ----------
    root : pathlib.Path
        The served directory; write files into it.
    base_url : str
        ``http://127.0.0.1:PORT/``.
    """

    def __init__(self, root: Path):
        self.root = root
        self._counts: collections.Counter = collections.Counter()
        self._failures: dict[str, int] = {}
        self._truncations: dict[str, int] = {}
        self._delays: dict[str, float] = {}
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.running = True

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (relative to `root`)."""
        return self.base_url + path.lstrip("/")

    def count(self, path: str, method: str = "GET") -> int:
        """How many ``method`` requests reached ``path``."""
        with self._lock:
            return self._counts[(method, "/" + path.lstrip("/"))]

    def fail(self, path: str, status: int) -> None:
        """Answer every request for ``path`` with HTTP ``status``."""
        self._failures["/" + path.lstrip("/")] = status

    def truncate(self, path: str, nbytes: int) -> None:
        """Announce the full Content-Length of ``path`` but send only ``nbytes``, then close."""
        self._truncations["/" + path.lstrip("/")] = nbytes

    def delay(self, path: str, seconds: float) -> None:
        """Wait ``seconds`` before answering requests for ``path``."""
        self._delays["/" + path.lstrip("/")] = seconds

    def restore(self, path: str) -> None:
        """Serve ``path`` normally again (undo `fail`, `truncate` and `delay`)."""
        key = "/" + path.lstrip("/")
        for table in (self._failures, self._truncations, self._delays):
            table.pop(key, None)

    def stop(self) -> None:
        """Shut the server down: later connections are refused."""
        if self.running:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self.running = False

    def _handler_class(self):
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def log_message(self, format, *args):  # keep pytest output quiet
                pass

            def _intercept(self) -> bool:
                path = unquote(urlparse(self.path).path)
                with server._lock:
                    server._counts[(self.command, path)] += 1
                if path in server._delays:
                    time.sleep(server._delays[path])
                if path in server._failures:
                    self.send_error(server._failures[path])
                    return True
                if path in server._truncations and self.command == "GET":
                    body = (server.root / path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: server._truncations[path]])
                    self.wfile.flush()
                    self.close_connection = True
                    return True
                return False

            def do_GET(self):
                if not self._intercept():
                    super().do_GET()

            def do_HEAD(self):
                if not self._intercept():
                    super().do_HEAD()

        return Handler


@pytest.fixture
def http_server(tmp_path):
    """A `LoopbackServer` serving ``tmp_path / "www"`` on 127.0.0.1 at a random port.

    Put files in ``http_server.root``, get their URL with ``http_server.url("a/b.tar.gz")``,
    count requests with ``http_server.count(path)``, inject failures with
    ``http_server.fail(path, 503)``, ``http_server.truncate(path, nbytes)`` and
    ``http_server.delay(path, seconds)``, and refuse all connections with ``http_server.stop()``.
    """
    root = tmp_path / "www"
    root.mkdir()
    server = LoopbackServer(root)
    yield server
    server.stop()


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty model cache at ``tmp_path / "cache"`` (``GALSIM_HUB_CACHE``), online, bundled index only."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GALSIM_HUB_CACHE", str(cache))
    monkeypatch.delenv("GALSIM_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("GALSIM_HUB_INDEX", raising=False)
    return cache


def minimal_metadata(name: str = "toy", version: str = "1.0") -> dict:
    """Valid single-band metadata of a model that handle and cache tests never load."""
    return {
        "format": 1,
        "name": name,
        "version": version,
        "stamp_size": 32,
        "pixel_scale": 0.1,
        "latent_dim": 4,
        "conditions": [{"name": "mag_auto", "unit": "mag", "min": 20.0, "max": 25.0}],
    }


def _model_files(name: str, version: str) -> dict:
    """The files of a complete-looking model (a SavedModel's files as placeholders)."""
    return {
        "galsim_hub.json": json.dumps(minimal_metadata(name, version)).encode(),
        "README.md": f"# {name} {version}\n".encode(),
        "saved_model.pb": b"placeholder saved model",
        "variables/variables.index": b"placeholder index",
        "variables/variables.data-00000-of-00001": b"placeholder data",
    }


def write_model_dir(path: Path, name: str = "toy", version: str = "1.0") -> Path:
    """A minimal model directory for handle and cache tests: ``galsim_hub.json`` and placeholder
    SavedModel files (complete enough for the cache, never loaded)."""
    for file_name, data in _model_files(name, version).items():
        (path / file_name).parent.mkdir(parents=True, exist_ok=True)
        (path / file_name).write_bytes(data)
    return path


def write_model_archive(archive: Path, name: str = "toy", version: str = "1.0", top_folder: bool = True) -> Path:
    """A ``.tar.gz`` of a minimal model, in one top-level folder or (``top_folder=False``) at the top level."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for file_name, data in _model_files(name, version).items():
            info = tarfile.TarInfo(f"{name}/{file_name}" if top_folder else file_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


@pytest.fixture
def model_dir(tmp_path):
    """A minimal model directory (``galsim_hub.json`` only), see `write_model_dir`."""
    return write_model_dir(tmp_path / "models" / "toy_dir")


@pytest.fixture
def model_archive(tmp_path):
    """A minimal model ``.tar.gz`` with the model in one top-level folder, see `write_model_archive`."""
    return write_model_archive(tmp_path / "models" / "toy.tar.gz")


@pytest.fixture
def make_model_dir():
    """The function `write_model_dir(path, name="toy", version="1.0")`."""
    return write_model_dir


@pytest.fixture
def make_model_archive():
    """The function `write_model_archive(archive, name="toy", version="1.0", top_folder=True)`."""
    return write_model_archive


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory):
    """A small single-band toy model directory (tests/toy_models.py), built once per test session.

    Tests read it; a test that changes a model copies it first."""
    from toy_models import build_toy_model

    return build_toy_model(tmp_path_factory.mktemp("models") / "toy")


@pytest.fixture(scope="session")
def toy(toy_dir):
    """The toy model of ``toy_dir``, loaded."""
    from galsim_hub.model import GenerativeGalaxyModel

    return GenerativeGalaxyModel(toy_dir)
