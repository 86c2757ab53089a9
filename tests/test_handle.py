"""Handles: parsing, index loading and validation, version selection, resolution."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from galsim_hub.errors import HandleError
from galsim_hub.hub.handle import ModelSource, find_entry, load_index, parse_hub_handle, resolve, version_key

LANUSSE_URL = "https://github.com/McWilliamsCenter/galsim_hub/raw/master/hub/Lanusse2020/model.tar.gz"


def write_index(path: Path, models: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": 1, "models": models}))
    return path


def toy_entry(version: str, **location) -> dict:
    return {"name": "toy", "version": version, "format": "galsim-hub", "card": "toy/README.md", **location}


@pytest.fixture
def local_hub(tmp_path, hub_cache, monkeypatch, make_model_archive, make_model_dir):
    """An extra index, named by path in GALSIM_HUB_INDEX, listing toy 1.0, 1.9 and 1.10."""
    hub = tmp_path / "hub"
    archive = make_model_archive(hub / "toy" / "toy-1.10.tar.gz", version="1.10")
    make_model_dir(hub / "toy" / "v1.9", version="1.9")
    make_model_archive(hub / "toy" / "toy-1.0.tar.gz", version="1.0")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    index = write_index(
        hub / "index.json",
        [
            toy_entry("1.0", path="toy/toy-1.0.tar.gz"),
            toy_entry("1.10", path="toy/toy-1.10.tar.gz", sha256=sha.upper(), size=archive.stat().st_size),
            toy_entry("1.9", path="toy/v1.9"),
        ],
    )
    monkeypatch.setenv("GALSIM_HUB_INDEX", str(index))
    return hub


@pytest.mark.parametrize(
    "handle, expected",
    [
        ("hub:Lanusse2020", ("Lanusse2020", None)),
        ("hub:toy@1.10", ("toy", "1.10")),
        ("hub:a-b_c.d@2.0rc1", ("a-b_c.d", "2.0rc1")),
    ],
)
def test_parse_hub_handle(handle, expected):
    assert parse_hub_handle(handle) == expected


@pytest.mark.parametrize("handle", ["hub:", "hub:a@", "hub:@1.0", "hub:a b", "hub:a@1@2", "Lanusse2020", "hub:../x"])
def test_parse_hub_handle_rejects_malformed(handle):
    with pytest.raises(HandleError, match="hub:NAME"):
        parse_hub_handle(handle)


def test_version_key_orders_numerically():
    versions = ["1.10", "1.9", "2.0rc1", "0.1", "2.0", "1.9.1", "10"]
    assert sorted(versions, key=version_key) == ["0.1", "1.9", "1.9.1", "1.10", "2.0rc1", "2.0", "10"]
    assert version_key("1") == version_key("1.0") == version_key("v1.0.0")


def test_bundled_index_lists_lanusse2020(hub_cache):
    entry = find_entry("Lanusse2020")
    assert entry["url"] == entry["_location"] == LANUSSE_URL
    assert entry["size"] == 52063270 and entry["sha256"] is None and entry["sha256_prefix"] == "ff2f097c"
    assert entry["format"] == "tf1-hub"
    metadata = entry["metadata"]
    assert [c["name"] for c in metadata["conditions"]] == ["mag_auto", "flux_radius", "zphot"]
    assert (metadata["stamp_size"], metadata["pixel_scale"], metadata["latent_dim"]) == (128, 0.03, 16)
    assert metadata["noise_input"] == "random_normal"
    card = Path(entry["_card_path"])
    assert card.is_file() and "mag_auto" in card.read_text()


def test_resolve_hub_lanusse2020(hub_cache):
    source = resolve("hub:Lanusse2020")
    assert (source.handle, source.kind, source.location, source.sha256, source.size) == (
        "hub:Lanusse2020",
        "url",
        LANUSSE_URL,
        None,
        52063270,
    )
    assert source.entry == find_entry("Lanusse2020") and source.sha256_prefix == "ff2f097c"
    assert resolve("hub:Lanusse2020@1").entry["version"] == "1.0"


def test_extra_local_index_newest_version_and_named_versions(local_hub):
    newest = resolve("hub:toy")
    assert newest.entry["version"] == "1.10"
    assert newest.kind == "archive"
    assert newest.location == str(local_hub / "toy" / "toy-1.10.tar.gz")
    assert newest.sha256 == newest.sha256.lower() and len(newest.sha256) == 64
    assert newest.size == Path(newest.location).stat().st_size
    assert newest.entry["_card_path"] == str(local_hub / "toy" / "README.md")
    assert newest.entry["_index"] == str(local_hub / "index.json")

    directory = resolve("hub:toy@1.9")
    assert (directory.kind, directory.location) == ("directory", str(local_hub / "toy" / "v1.9"))
    assert resolve("hub:toy@1.0").location.endswith("toy-1.0.tar.gz")
    assert resolve("hub:Lanusse2020").kind == "url"  # the bundled index is still searched


def test_extra_http_index_resolves_relative_urls(http_server, hub_cache, monkeypatch, tmp_path):
    write_index(
        http_server.root / "hub" / "index.json",
        [toy_entry("1.0", url="toy/toy-1.0.tar.gz"), toy_entry("2.0", url="https://example.org/toy-2.tgz")],
    )
    local = write_index(tmp_path / "other" / "index.json", [{"name": "other", "version": "3", "path": "o.tar.gz"}])
    monkeypatch.setenv("GALSIM_HUB_INDEX", f"{http_server.url('hub/index.json')}, {local}")
    assert resolve("hub:toy@1.0") == ModelSource(
        "hub:toy@1.0", "url", http_server.url("hub/toy/toy-1.0.tar.gz"), entry=find_entry("toy", "1.0")
    )
    assert resolve("hub:toy").location == "https://example.org/toy-2.tgz"
    assert find_entry("toy", "1.0")["_card_url"] == http_server.url("hub/toy/README.md")
    assert find_entry("other")["_location"] == str(tmp_path / "other" / "o.tar.gz")
    assert http_server.count("hub/index.json") > 0


def test_remote_index_copy_serves_offline_mode(http_server, hub_cache, monkeypatch):
    write_index(http_server.root / "index.json", [toy_entry("1.0", url="toy.tar.gz")])
    monkeypatch.setenv("GALSIM_HUB_INDEX", http_server.url("index.json"))
    online = find_entry("toy")
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    http_server.stop()
    assert find_entry("toy") == online


def test_remote_index_never_fetched_offline_is_an_error(http_server, hub_cache, monkeypatch):
    monkeypatch.setenv("GALSIM_HUB_INDEX", http_server.url("index.json"))
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "yes")
    with pytest.warns(UserWarning, match="offline mode is on.*index.json.*skipped"):
        load_index()
    with pytest.warns(UserWarning), pytest.raises(HandleError, match="Skipped index .*index.json: offline mode is on"):
        find_entry("toy")
    assert http_server.count("index.json") == 0


def test_remote_index_http_error(http_server, hub_cache, monkeypatch):
    monkeypatch.setenv("GALSIM_HUB_INDEX", http_server.url("missing/index.json"))
    with pytest.warns(UserWarning, match=r"missing/index.json.*HTTP 404.*skipped"):
        assert {e["name"] for e in load_index()} >= {"cosmos_real", "synthetic_bdk"}


def test_extra_index_cannot_shadow_bundled_model(tmp_path, hub_cache, monkeypatch):
    index = write_index(
        tmp_path / "index.json", [{"name": "Lanusse2020", "version": "1.0", "url": "https://evil.example/m.tar.gz"}]
    )
    monkeypatch.setenv("GALSIM_HUB_INDEX", str(index))
    with pytest.warns(UserWarning, match="cannot shadow a bundled model"):
        assert resolve("hub:Lanusse2020").location == LANUSSE_URL


def test_url_handle(hub_cache):
    url = "https://example.org/models/toy.tar.gz"
    assert resolve(url) == ModelSource(url, "url", url)
    assert resolve("http://127.0.0.1:8000/a.tgz").kind == "url"


def test_local_directory_and_archive_handles(model_dir, model_archive):
    assert resolve(model_dir) == ModelSource(str(model_dir), "directory", str(model_dir))
    assert resolve(str(model_archive)) == ModelSource(str(model_archive), "archive", str(model_archive))
    assert resolve(model_archive.as_uri()).location == str(model_archive)


def test_relative_local_path_is_made_absolute(model_dir, monkeypatch):
    monkeypatch.chdir(model_dir.parent)
    source = resolve(model_dir.name)
    assert source.location == str(model_dir) and Path(source.location).is_absolute()


def test_unknown_name_suggests_close_names_and_lists_indexes(local_hub):
    with pytest.raises(HandleError) as info:
        resolve("hub:Lanuse2020")
    message = str(info.value)
    assert "Lanusse2020" in message and "Did you mean" in message
    assert str(local_hub / "index.json") in message and "index.json" in message.split(str(local_hub))[0]


def test_unknown_version_lists_available_versions(local_hub):
    with pytest.raises(HandleError, match=r"no version '3.0'.*1\.0, 1\.9, 1\.10"):
        resolve("hub:toy@3.0")


@pytest.mark.parametrize("handle", ["hub:", "hub:a@", "ftp://example.org/m.tar.gz", "", "   "])
def test_malformed_handles(handle, hub_cache):
    with pytest.raises(HandleError, match="accepted handles"):
        resolve(handle)


def test_missing_path_and_non_archive_file(tmp_path):
    with pytest.raises(HandleError, match="does not exist.*accepted handles"):
        resolve(tmp_path / "nowhere")
    text = tmp_path / "model.zip"
    text.write_text("not a model")
    with pytest.raises(HandleError, match="neither a directory nor a .tar.gz"):
        resolve(text)


def test_handle_of_wrong_type():
    with pytest.raises(HandleError, match="string or a path"):
        resolve(42)


@pytest.mark.parametrize(
    "document, problem",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"format": 2, "models": []}), "format"),
        (json.dumps({"format": 1}), "'models' list"),
        (json.dumps({"format": 1, "models": [{"name": "x", "version": "1"}]}), "exactly one of 'url' and 'path'"),
        (json.dumps({"format": 1, "models": [{"name": "x", "version": "1", "url": "a", "path": "b"}]}), "exactly one"),
        (json.dumps({"format": 1, "models": [{"name": "x", "version": "1", "url": "a", "sha256": "abc"}]}), "64 hex"),
        (json.dumps({"format": 1, "models": [{"name": "x", "version": "1", "url": "a", "size": -1}]}), "non-negative"),
        (json.dumps({"format": 1, "models": [{"version": "1", "url": "a"}]}), "'name'"),
        (
            json.dumps({"format": 1, "models": [{"name": "x", "version": "1", "url": "a", "metadata": []}]}),
            "'metadata'",
        ),
    ],
)
def test_malformed_index_is_rejected(document, problem, tmp_path, hub_cache, monkeypatch):
    index = tmp_path / "bad_index.json"
    index.write_text(document)
    monkeypatch.setenv("GALSIM_HUB_INDEX", str(index))
    with pytest.warns(UserWarning, match=problem) as info:
        entries = load_index()
    assert "bad_index.json" in str(info[0].message)
    assert "cosmos_real" in {e["name"] for e in entries}  # the bundled models still resolve


def test_missing_extra_index(tmp_path, hub_cache, monkeypatch):
    monkeypatch.setenv("GALSIM_HUB_INDEX", str(tmp_path / "absent.json"))
    with pytest.warns(UserWarning, match="absent.json.*does not exist.*skipped"):
        load_index()
    with pytest.warns(UserWarning), pytest.raises(HandleError, match="Skipped index .*absent.json"):
        find_entry("toy")


def test_model_source_is_hashable(hub_cache):
    source = resolve("hub:Lanusse2020")
    assert {source: 1}[resolve("hub:Lanusse2020")] == 1


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["down", 404, 503, "malformed"])
def test_bad_remote_index_uses_its_last_good_copy_or_is_skipped(failure, http_server, hub_cache, monkeypatch):
    """Issue 17 (5): one unreadable extra index must not break bundled or cached handles."""
    write_index(http_server.root / "index.json", [toy_entry("1.0", url="toy.tar.gz")])
    monkeypatch.setenv("GALSIM_HUB_INDEX", http_server.url("index.json"))
    good = find_entry("toy")
    if failure == "down":
        http_server.stop()
    elif failure == "malformed":
        (http_server.root / "index.json").write_text("<html>proxy error</html>")
    else:
        http_server.fail("index.json", failure)
    with pytest.warns(UserWarning, match="using its last good copy"):
        assert find_entry("toy") == good
    # Without a copy: skipped, and the bundled models still resolve.
    _remote_copy = __import__("galsim_hub.hub.handle", fromlist=["_remote_index_copy"])._remote_index_copy
    _remote_copy(http_server.url("index.json")).unlink()
    with pytest.warns(UserWarning, match="skipped"):
        assert resolve("hub:synthetic_bdk").entry["name"] == "synthetic_bdk"


def test_malformed_answer_does_not_replace_the_good_copy(http_server, hub_cache, monkeypatch):
    write_index(http_server.root / "index.json", [toy_entry("1.0", url="toy.tar.gz")])
    monkeypatch.setenv("GALSIM_HUB_INDEX", http_server.url("index.json"))
    find_entry("toy")
    (http_server.root / "index.json").write_text("{broken")
    with pytest.warns(UserWarning, match="not valid JSON.*last good copy"):
        find_entry("toy")
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    assert find_entry("toy")["version"] == "1.0"
