"""``hf:ORG/REPO[@REVISION]`` handles and ``publish --hub hf:ORG/REPO``, against a loopback Hugging Face Hub."""

from __future__ import annotations

import json
import shutil
import warnings

import huggingface_hub
import numpy as np
import pytest
from hf_server import FakeHub
from huggingface_hub import constants as hf_constants

from galsim_hub.cli import main
from galsim_hub.errors import DownloadError, HandleError, MetadataError
from galsim_hub.hub.hf import parse_hf_handle
from galsim_hub.model import GenerativeGalaxyModel

CATALOG = {"mag_auto": np.array([21.0, 23.0]), "flux_radius": np.array([2.0, 3.5])}


@pytest.fixture
def hf_hub(tmp_path, monkeypatch):
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_TOKEN", "hf_loopback")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    yield server
    server.close()


def sample(handle) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GenerativeGalaxyModel(handle).sample(CATALOG, seed=3, return_arrays=True)


def publish(model_dir, capsys) -> str:
    assert main(["publish", str(model_dir), "--hub", "hf:galaxies/toy"]) == 0
    printed = capsys.readouterr().out
    return printed.split(": ")[-1].strip()


@pytest.mark.slow
def test_publish_then_sample_pinned_and_latest(hf_hub, toy_dir, tmp_path, capsys):
    first = publish(toy_dir, capsys)
    assert first.startswith("hf:galaxies/toy@") and len(first.split("@")[1]) == 40
    np.testing.assert_array_equal(sample("hf:galaxies/toy"), sample(toy_dir))
    newer = tmp_path / "newer"
    shutil.copytree(toy_dir, newer)
    metadata = json.loads((newer / "galsim_hub.json").read_text())
    metadata["version"] = "1.1"
    (newer / "galsim_hub.json").write_text(json.dumps(metadata))
    second = publish(newer, capsys)
    assert second != first
    assert GenerativeGalaxyModel("hf:galaxies/toy").metadata["version"] == "1.1"  # the main branch moved
    assert GenerativeGalaxyModel(first).metadata["version"] == "1.0"  # a commit stays pinned


def test_offline_uses_the_hugging_face_cache_only(hf_hub, toy_dir, capsys, monkeypatch):
    pinned = publish(toy_dir, capsys)
    online = sample(pinned)
    count = len(hf_hub.requests)
    monkeypatch.setenv("GALSIM_HUB_OFFLINE", "1")
    np.testing.assert_array_equal(sample(pinned), online)
    assert len(hf_hub.requests) == count  # not a single request
    with pytest.raises(DownloadError, match="not in the Hugging Face cache.*offline mode"):
        GenerativeGalaxyModel("hf:galaxies/other")


def test_unknown_repositories_and_revisions_are_named(hf_hub, toy_dir, capsys):
    publish(toy_dir, capsys)
    with pytest.raises(HandleError, match="no Hugging Face model repository galaxies/nothing"):
        GenerativeGalaxyModel("hf:galaxies/nothing")
    with pytest.raises(HandleError, match="has no revision 'v9'"):
        GenerativeGalaxyModel("hf:galaxies/toy@v9")


def test_a_repository_without_a_model_is_refused(hf_hub, tmp_path):
    api = huggingface_hub.HfApi(endpoint=hf_hub.endpoint)
    api.create_repo("galaxies/notes")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("not a model")
    api.upload_folder(repo_id="galaxies/notes", folder_path=str(tmp_path / "notes"))
    with pytest.raises(MetadataError, match="galaxies/notes holds no galsim-hub model"):
        GenerativeGalaxyModel("hf:galaxies/notes")


@pytest.mark.parametrize("handle", ["hf:", "hf:toy", "hf:a/b/c", "hf:org/repo@", "hf:../x"])
def test_malformed_handles(handle):
    with pytest.raises(HandleError, match="malformed Hugging Face handle"):
        parse_hf_handle(handle)


def test_publish_to_a_revision_is_refused(hf_hub, toy_dir, capsys):
    assert main(["publish", str(toy_dir), "--hub", "hf:galaxies/toy@dev"]) == 1
    assert "each upload is a commit" in capsys.readouterr().err
