"""Models on the Hugging Face Hub: ``hf:ORG/REPO[@REVISION]`` handles and publishing to a model repo.

A galsim-hub model repository on the Hugging Face Hub holds a model directory as it is: the
model files (``saved_model.pb``, ``variables/``, ...), ``galsim_hub.json`` and the model card
``README.md``. ``huggingface_hub`` does the transfer: its cache (``HF_HUB_CACHE``), its revision
pinning (a branch, a tag or a commit after ``@``), its offline mode (``HF_HUB_OFFLINE``, and
``GALSIM_HUB_OFFLINE`` here) and its endpoint (``HF_ENDPOINT``, read at each call). It is an
optional dependency: ``pip install 'galsim-hub[hf]'``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from galsim_hub.errors import DownloadError, GalSimHubError, HandleError, MetadataError
from galsim_hub.hub import settings

__all__ = ["HF_PREFIX", "parse_hf_handle", "fetch_hf", "publish_hf"]

HF_PREFIX = "hf:"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def parse_hf_handle(text: str) -> tuple[str, str | None]:
    """``hf:ORG/REPO[@REVISION]`` as ``(repo_id, revision or None)``, or a `HandleError`."""
    body = text[len(HF_PREFIX) :] if text.startswith(HF_PREFIX) else text
    repo_id, _, revision = body.partition("@")
    if not _REPO_ID.match(repo_id) or ".." in repo_id or (revision == "" and "@" in body):
        raise HandleError(
            f"malformed Hugging Face handle {text!r}: expected hf:ORG/REPO or hf:ORG/REPO@REVISION "
            "(a branch, a tag or a commit)"
        )
    return repo_id, revision or None


def _huggingface_hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise GalSimHubError("hf: handles need the huggingface_hub package: pip install 'galsim-hub[hf]'") from None
    return huggingface_hub


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _offline() -> bool:
    return settings.is_offline() or settings.env_flag("HF_HUB_OFFLINE")


def fetch_hf(handle: str, repo_id: str, revision: str | None, progress: bool | None = None) -> Path:
    """Download (or find in the Hugging Face cache) the model of a repository; return its directory.

    Raises
    ------
    HandleError
        The repository or the revision does not exist.
    DownloadError
        The Hub cannot be reached, or offline mode with the revision not cached.
    MetadataError
        The repository holds no complete galsim-hub model.
    """
    hf = _huggingface_hub()
    from galsim_hub.hub.cache import check_model_files

    errors = hf.errors
    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        path = hf.snapshot_download(repo_id, revision=revision, endpoint=_endpoint(), local_files_only=_offline())
    except errors.RevisionNotFoundError:
        raise HandleError(f"{handle!r}: the Hugging Face repository {repo_id} has no revision {revision!r}") from None
    except errors.RepositoryNotFoundError:
        raise HandleError(f"{handle!r}: no Hugging Face model repository {repo_id} (or it is private)") from None
    except errors.LocalEntryNotFoundError as exc:
        hint = " (offline mode: fetch it once online)" if _offline() else ""
        raise DownloadError(
            f"{handle!r}: {where} is not in the Hugging Face cache and the Hub cannot be "
            f"reached{hint}: {str(exc).splitlines()[0]}"
        ) from None
    except (errors.HfHubHTTPError, OSError) as exc:
        raise DownloadError(
            f"{handle!r}: could not download {where} from the Hugging Face Hub: {str(exc).splitlines()[0]}"
        ) from None
    directory = Path(path)
    if not any((directory / name).is_file() for name in ("galsim_hub.json", "tfhub_module.pb")):
        raise MetadataError(
            f"{handle!r}: the Hugging Face repository {where} holds no galsim-hub model "
            "(no galsim_hub.json, no tfhub_module.pb); publish one with `galsim-hub publish "
            "MODEL_DIR --hub hf:ORG/REPO`"
        )
    check_model_files(directory, handle)
    return directory


def publish_hf(model_dir: str | os.PathLike, hub: str, token: str | None = None) -> dict:
    """Validate a model and upload it as a commit to a Hugging Face model repository.

    The repository is created when missing. The token is ``token``, else ``HF_TOKEN`` or the one
    ``huggingface-cli login`` saved.

    Returns
    -------
    dict
        ``name``, ``version``, ``repo``, ``commit`` and ``handle`` (``hf:ORG/REPO@COMMIT``, the
        pinned handle of exactly what was uploaded).
    """
    repo_id, revision = parse_hf_handle(hub)
    if revision is not None:
        raise HandleError(
            f"publish --hub {hub!r}: publish to hf:ORG/REPO (its main branch); each upload is "
            "a commit, and the printed hf:ORG/REPO@COMMIT pins it"
        )
    from galsim_hub.hub.publish import check_model_for_publish

    metadata = check_model_for_publish(model_dir)
    hf = _huggingface_hub()
    api = hf.HfApi(endpoint=_endpoint(), token=token)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(model_dir),
            repo_type="model",
            commit_message=f"galsim-hub: {metadata['name']} {metadata['version']}",
        )
    except hf.errors.HfHubHTTPError as exc:
        raise DownloadError(f"publishing to {hub}: {str(exc).splitlines()[0]}") from None
    return {
        "name": metadata["name"],
        "version": metadata["version"],
        "repo": repo_id,
        "commit": info.oid,
        "handle": f"hf:{repo_id}@{info.oid}",
    }
