"""publish: validation, reproducible archives, directory and HTTP hubs, failures."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from galsim_hub.errors import DownloadError, HandleError, MetadataError
from galsim_hub.hub.publish import publish, write_archive
from galsim_hub.model import GenerativeGalaxyModel

TOKEN = "s3cret"
CATALOG = {"mag_auto": np.array([21.0, 22.5, 24.0]), "flux_radius": np.array([2.0, 3.0, 4.0])}


@pytest.fixture(scope="module")
def toy(toy_dir):
    """The session's toy model (named toy, version 1.0)."""
    return toy_dir


class PutServer:
    """A loopback hub accepting PUT with a bearer token; ``fail_put`` makes the n-th PUT fail."""

    def __init__(self, root: Path):
        self.root, self.puts, self.fail_put = root, [], None
        self.redirect_put: int | None = None  # answer PUTs with this redirect status
        self.drop_body = False  # accept PUTs but store nothing (a lying hub)
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                pass

            def do_PUT(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self.send_error(401)
                    return
                server.puts.append(self.path)
                if server.redirect_put is not None:
                    self.send_response(server.redirect_put)
                    self.send_header("Location", "/elsewhere" + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if server.drop_body:
                    body = b""
                if server.fail_put == len(server.puts):
                    self.send_error(500)
                    return
                target = root / self.path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hub/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def put_server(tmp_path, monkeypatch):
    monkeypatch.setenv("GALSIM_HUB_TOKEN", TOKEN)
    server = PutServer(tmp_path / "www")
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_archive_is_reproducible(toy, tmp_path):
    first = write_archive(toy, tmp_path / "a.tar.gz", "toy-1.0")
    copy = shutil.copytree(toy, tmp_path / "copy")  # new mtimes and inodes
    second = write_archive(copy, tmp_path / "b.tar.gz", "toy-1.0")
    assert first == second
    assert hashlib.sha256((tmp_path / "a.tar.gz").read_bytes()).hexdigest() == first[0]
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname) for m in members} == {(0, 0, 0, "")}


def test_publish_to_directory_then_sample_from_hub(toy, tmp_path, hub_cache, monkeypatch):
    hub = tmp_path / "hub"
    hub.mkdir()
    entry = publish(toy, hub, version="2.0")
    index = json.loads((hub / "index.json").read_text())
    assert index["models"] == [entry]
    assert (hub / entry["path"]).stat().st_size == entry["size"]
    assert (hub / entry["path"]).parent.stat().st_mode & 0o777 == 0o755  # readable by every hub user
    assert hashlib.sha256((hub / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert (hub / entry["card"]).read_text() == (toy / "README.md").read_text()
    monkeypatch.setenv("GALSIM_HUB_INDEX", str(hub / "index.json"))
    model = GenerativeGalaxyModel("hub:toy@2.0")
    assert model.metadata["version"] == "2.0"
    published = model.sample(CATALOG, seed=7, return_arrays=True)
    source = GenerativeGalaxyModel(toy).sample(CATALOG, seed=7, return_arrays=True)
    np.testing.assert_array_equal(published, source)
    with pytest.raises(HandleError, match="already published"):
        publish(toy, hub, version="2.0")
    assert json.loads((hub / "index.json").read_text()) == index


def test_publish_to_http_then_sample_from_hub(toy, put_server, hub_cache, monkeypatch):
    entry = publish(toy, put_server.url)
    assert put_server.puts == ["/hub/toy/1.0/model.tar.gz", "/hub/toy/1.0/README.md", "/hub/index.json"]
    monkeypatch.setenv("GALSIM_HUB_INDEX", put_server.url + "index.json")
    published = GenerativeGalaxyModel("hub:toy").sample(CATALOG, seed=3, return_arrays=True)
    source = GenerativeGalaxyModel(toy).sample(CATALOG, seed=3, return_arrays=True)
    np.testing.assert_array_equal(published, source)
    assert entry["sha256"] == hashlib.sha256((put_server.root / "hub/toy/1.0/model.tar.gz").read_bytes()).hexdigest()
    with pytest.raises(HandleError, match="already published"), pytest.warns(UserWarning, match="sends no ETag"):
        publish(toy, put_server.url)


def test_failed_upload_leaves_index_untouched(toy, put_server):
    put_server.fail_put = 2  # the model card
    with pytest.raises(DownloadError, match="HTTP 500.*index was not changed"):
        publish(toy, put_server.url)
    assert not (put_server.root / "hub" / "index.json").exists()
    assert "/hub/index.json" not in put_server.puts


def test_missing_token_is_named(toy, put_server, monkeypatch):
    monkeypatch.delenv("GALSIM_HUB_TOKEN")
    with pytest.raises(DownloadError, match="GALSIM_HUB_TOKEN"):
        publish(toy, put_server.url)


def test_invalid_models_are_refused(toy, tmp_path):
    hub = tmp_path / "hub"
    hub.mkdir()
    no_card = shutil.copytree(toy, tmp_path / "no_card")
    (no_card / "README.md").unlink()
    with pytest.raises(MetadataError, match="model card"):
        publish(no_card, hub)
    bad_meta = shutil.copytree(toy, tmp_path / "bad_meta")
    metadata = json.loads((bad_meta / "galsim_hub.json").read_text())
    metadata["stamp_size"] = 48  # disagrees with the model's output
    (bad_meta / "galsim_hub.json").write_text(json.dumps(metadata))
    with pytest.raises(MetadataError, match="stamp_size"):
        publish(bad_meta, hub)
    with pytest.raises(MetadataError, match="not a model directory"):
        publish(tmp_path / "nothing", hub)
    assert list(hub.iterdir()) == []


def test_non_finite_pixels_are_refused(tmp_path):
    import tensorflow as tf

    from galsim_hub.hub.publish import check_model_for_publish
    from galsim_hub.training.fitting.export import export_model

    class Flow(tf.Module):
        def sample(self, noise, conditions):
            return noise

    class Decoder(tf.Module):
        def __call__(self, z):
            return tf.fill([tf.shape(z)[0], 8, 8], np.float32(np.nan))

    conditions = [{"name": "mag_auto", "unit": "mag", "description": "", "min": 20.0, "max": 25.0}]
    path = export_model(
        tmp_path / "nan",
        flow=Flow(),
        decoder=Decoder(),
        conditions=conditions,
        latent_dim=2,
        stamp_size=8,
        pixel_scale=0.03,
        name="nan",
        version="1.0",
    )
    with pytest.raises(MetadataError, match="NaN or infinite"):
        check_model_for_publish(path)


@pytest.mark.parametrize("field, value", [("name", 5), ("version", 2.0), ("version", ["1"])])
def test_non_string_name_or_version_is_named(field, value, toy, tmp_path):
    hub = tmp_path / "hub"
    hub.mkdir()
    with pytest.raises(HandleError, match=f"the published {field} must be a string, got"):
        publish(toy, hub, **{field: value})
    assert list(hub.iterdir()) == []


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_on_upload_is_refused_and_the_index_untouched(status, toy, put_server):
    put_server.redirect_put = status
    with pytest.raises(
        DownloadError,
        match=rf"HTTP {status} redirect to /elsewhere/hub/toy/1.0/model.tar.gz.*"
        "never follows a redirect on an upload",
    ):
        publish(toy, put_server.url)
    assert put_server.puts == ["/hub/toy/1.0/model.tar.gz"]  # one PUT, not followed, nothing else
    assert not (put_server.root / "hub" / "index.json").exists()


def test_upload_that_stores_nothing_is_detected_before_the_index(toy, put_server):
    put_server.drop_body = True
    with pytest.raises(DownloadError, match="accepted the upload but serves 0 bytes"):
        publish(toy, put_server.url)
    assert "/hub/index.json" not in put_server.puts


def test_entry_format_follows_the_model_format(tmp_path):
    from toy_models import build_multiband_toy_model

    hub = tmp_path / "hub"
    hub.mkdir()
    entry = publish(build_multiband_toy_model(tmp_path / "mb"), hub)
    assert entry["format"] == "galsim-hub-2"
    index = json.loads((hub / "index.json").read_text())
    assert index["models"][0]["format"] == "galsim-hub-2"


@pytest.mark.parametrize("field", ["name", "version"])
def test_empty_name_or_version_is_refused(field, toy, tmp_path):
    hub = tmp_path / "hub"
    hub.mkdir()
    with pytest.raises(HandleError, match=f"the published {field} is empty"):
        publish(toy, hub, **{field: "  " if field == "version" else ""})
    assert list(hub.iterdir()) == []


def test_model_failing_at_one_edge_of_its_range_is_refused(tmp_path):
    """NaN only for faint magnitudes (mag > 24): the centre alone would pass."""
    import tensorflow as tf

    from galsim_hub.hub.publish import check_model_for_publish
    from galsim_hub.training.fitting.export import export_model

    class Flow(tf.Module):
        def sample(self, noise, conditions):
            return tf.concat([conditions, noise[:, 1:]], axis=1)

    class Decoder(tf.Module):
        def __call__(self, z):
            faint = z[:, 0] > 0.6  # standardised mag > 24 for the range 20 - 25
            value = tf.where(faint, tf.constant(np.nan, tf.float32), tf.ones_like(z[:, 0]))
            return tf.ones([tf.shape(z)[0], 8, 8]) * value[:, None, None]

    conditions = [{"name": "mag_auto", "unit": "mag", "description": "", "min": 20.0, "max": 25.0}]
    path = export_model(
        tmp_path / "edge",
        flow=Flow(),
        decoder=Decoder(),
        conditions=conditions,
        latent_dim=2,
        stamp_size=8,
        pixel_scale=0.03,
        name="edge",
        version="1.0",
    )
    with pytest.raises(
        MetadataError, match=r"failed at \d+ of \d+ points of its training range \(e.g. mag_auto=25.*NaN or infinite"
    ):
        check_model_for_publish(path)
