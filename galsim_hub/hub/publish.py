"""Publish a model into a hub: validate it, archive it reproducibly, add it to the index.

A hub is a folder (e.g. a checkout of ``hub_models/``) or an HTTP(S) endpoint that accepts
``PUT`` (with ``Authorization: Bearer $GALSIM_HUB_TOKEN``). Its ``index.json`` lists one
entry per NAME@VERSION; the archive goes to ``NAME/VERSION/model.tar.gz`` and the model card
to ``NAME/VERSION/README.md``, both relative to the index. The index is written last, and
only when everything else is in place, so a failure never leaves an entry pointing at a
missing or partial file.

Concurrent publishes never lose an entry: into a folder, the whole read-modify-write of
``index.json`` happens under a file lock (``.index.json.lock``) and the new index replaces
the old one atomically; to an HTTP hub, the index is written with a conditional ``PUT``
(``If-Match`` with the ETag of the index that was read, ``If-None-Match: *`` when there was
none), and a hub that answers ``412 Precondition Failed`` makes publish stop with an error.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urljoin, urlparse

import filelock
import numpy as np

from galsim_hub.errors import ConcurrentPublishError, DownloadError, HandleError, MetadataError
from galsim_hub.hub import http, settings
from galsim_hub.hub.handle import INDEX_FORMAT, version_key
from galsim_hub.metadata import MODEL_METADATA_FILE, read_metadata, validate_metadata

__all__ = ["check_model_for_publish", "write_archive", "publish", "TOKEN_ENV", "ConcurrentPublishError"]

TOKEN_ENV = settings.TOKEN_ENV
#: Index entries say which model format their archive holds: ``galsim-hub-1`` or ``galsim-hub-2``.
ENTRY_FORMAT = "galsim-hub-{format}"
CARD_FILE = "README.md"
ARCHIVE_FILE = "model.tar.gz"
INDEX_FILE = "index.json"
INDEX_LOCK_FILE = ".index.json.lock"
UPLOAD_TIMEOUT = (settings.HTTP_TIMEOUT[0], 300.0)


def check_model_for_publish(model_dir: str | os.PathLike) -> dict:
    """Load a galsim-hub (format 1 or 2) model and check that it samples sensible images.

    The model is loaded and sampled at the centre of its training range (zero base noise),
    at its corners and at points spread inside it (:func:`validation_points`), each with its
    own base noise; the images must have the shape of the metadata, be finite, non-negative
    and carry positive flux.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A format-1 or format-2 model directory (``galsim_hub.json``, SavedModel, ``README.md``).

    Returns
    -------
    dict
        The validated metadata.

    Raises
    ------
    MetadataError
        If a file is missing, the metadata are invalid, or the samples fail a check.
    """
    from galsim_hub.backends.tensorflow import LoadedModel

    directory = Path(model_dir)
    if not directory.is_dir():
        raise MetadataError(f"{directory} is not a model directory")
    if not (directory / MODEL_METADATA_FILE).is_file():
        raise MetadataError(
            f"{directory} lacks {MODEL_METADATA_FILE}: only galsim-hub format models (formats 1 and 2) can be published"
        )
    if not (directory / CARD_FILE).is_file():
        raise MetadataError(f"{directory} lacks the model card {CARD_FILE}")
    metadata = read_metadata(directory)
    conditions = metadata["conditions"]
    if any(c.get("min") is None or c.get("max") is None for c in conditions):
        raise MetadataError(f"{directory}: every condition needs its training range (min, max) to be published")
    model = LoadedModel(directory, device="/CPU:0")
    points = validation_points(conditions)
    noise = np.random.default_rng(0).standard_normal((len(points), model.latent_dim)).astype(np.float32)
    noise[0] = 0.0
    names = [c["name"] for c in conditions]

    def describe(rows) -> str:
        return "; ".join(", ".join(f"{n}={v:.4g}" for n, v in zip(names, points[i])) for i in rows[:3])

    try:
        images = np.asarray(model.sample_images(points, noise))
    except Exception as exc:  # any failure of the model's own code: find the points that fail
        failing = []
        for i in range(len(points)):
            try:
                model.sample_images(points[i : i + 1], noise[i : i + 1])
            except Exception:
                failing.append(i)
        where = (
            f" at {len(failing)} of {len(points)} points of its training range (e.g. {describe(failing)})"
            if failing
            else ""
        )
        raise MetadataError(f"{directory}: sampling over the training range failed{where}: {exc}") from exc
    size = model.stamp_size
    expected = (len(points), size, size, model.n_bands)
    if images.shape != expected:
        raise MetadataError(f"{directory}: the model returned images of shape {images.shape}, expected {expected}")
    flux = images.sum(axis=(1, 2))  # [N, B]: every band needs flux
    checks = (
        ("NaN or infinite pixels", ~np.isfinite(images).reshape(len(points), -1).all(axis=1)),
        ("negative pixels", (images < 0).reshape(len(points), -1).any(axis=1)),
        ("empty images (no flux)", ~(flux > 0).reshape(len(points), -1).all(axis=1)),
    )
    for problem, bad in checks:
        if bad.any():
            raise MetadataError(
                f"{directory}: the model returned {problem} at {int(bad.sum())} of "
                f"{len(points)} points of its training range (e.g. {describe(np.flatnonzero(bad))})"
            )
    return metadata


def validation_points(conditions: list[dict], n_random: int = 16, max_corners: int = 64) -> np.ndarray:
    """Conditions at which a model is sampled before it is published.

    The centre of the training range, its corners (all of them up to ``max_corners``, else a
    fixed random subset) and ``n_random`` points drawn uniformly inside it (fixed seed): a
    model that fails only at one edge of its range (e.g. NaN for faint magnitudes) is caught.

    Parameters
    ----------
    conditions : list of dict
        The metadata conditions, each with ``min`` and ``max``.

    Returns
    -------
    numpy.ndarray
        ``[P, C]`` condition values, the centre first.
    """
    low = np.array([c["min"] for c in conditions], dtype=np.float64)
    high = np.array([c["max"] for c in conditions], dtype=np.float64)
    rng = np.random.default_rng(0)
    n = len(conditions)
    if 2**n <= max_corners:
        bits = np.array([[(k >> i) & 1 for i in range(n)] for k in range(2**n)], dtype=bool)
    else:
        bits = rng.integers(0, 2, size=(max_corners, n)).astype(bool)
    corners = np.where(bits, high, low)
    inside = low + rng.uniform(size=(n_random, n)) * (high - low)
    return np.vstack([(low + high) / 2.0, corners, inside])


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def write_archive(model_dir: str | os.PathLike, archive: str | os.PathLike, top_folder: str) -> tuple[str, int]:
    """Write a reproducible ``.tar.gz`` of a model directory.

    Members are sorted, owned by uid/gid 0 without user names, dated 1970 and have modes
    0644/0755; the gzip header holds no date or file name. The same files give the same
    bytes, hence the same sha256.

    Parameters
    ----------
    model_dir : str or os.PathLike
        The directory to archive (links and special files are refused).
    archive : str or os.PathLike
        The file to write.
    top_folder : str
        Name of the single top-level folder in the archive.

    Returns
    -------
    (str, int)
        The sha256 (hex) and byte size of the archive.
    """
    root = Path(model_dir)
    paths = sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_normalise(tar.gettarinfo(str(root), arcname=top_folder)))
            for path in paths:
                if path.is_symlink() or not (path.is_file() or path.is_dir()):
                    raise MetadataError(f"{path}: links and special files cannot be published")
                arcname = f"{top_folder}/{path.relative_to(root).as_posix()}"
                info = _normalise(tar.gettarinfo(str(path), arcname=arcname))
                if path.is_file():
                    with open(path, "rb") as stream:
                        tar.addfile(info, stream)
                else:
                    tar.addfile(info)
    data = buffer.getvalue()
    Path(archive).write_bytes(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def _staged_model(model_dir: Path, metadata: dict, name: str, version: str, work: Path) -> Path:
    """A copy of the model whose metadata carry the published name and version."""
    staged = work / "model"
    shutil.copytree(model_dir, staged, symlinks=True)
    if (metadata["name"], metadata["version"]) != (name, version):
        updated = dict(metadata, name=name, version=version)
        (staged / MODEL_METADATA_FILE).write_text(json.dumps(updated, indent=2) + "\n", encoding="utf-8")
    return staged


def _entry(name: str, version: str, sha256: str, size: int, metadata: dict) -> dict:
    public = {k: copy.deepcopy(v) for k, v in metadata.items() if k != "format"}
    public.update(name=name, version=version)
    return {
        "name": name,
        "version": version,
        "format": ENTRY_FORMAT.format(format=metadata["format"]),
        "path": f"{name}/{version}/{ARCHIVE_FILE}",
        "sha256": sha256,
        "size": size,
        "card": f"{name}/{version}/{CARD_FILE}",
        "description": str(metadata.get("description", "")),
        "metadata": public,
    }


def _check_new(index: object, name: str, version: str, where: str) -> None:
    models = index.get("models") if isinstance(index, dict) else None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(models, list):
        raise MetadataError(f"{where} is not a galsim-hub index (format {INDEX_FORMAT} with a 'models' list)")
    for position, entry in enumerate(models):
        if not isinstance(entry, dict):
            raise MetadataError(f"{where}: entry {position} is not a JSON object; fix the index by hand first")
        if entry.get("name") == name and version_key(str(entry.get("version"))) == version_key(version):
            raise HandleError(
                f"{name}@{entry.get('version')} is already published in {where}; "
                "publish under a new --version (published versions are never overwritten)"
            )


def _parse_hub_index(text: str, where: str) -> dict:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MetadataError(f"the index {where} is not valid JSON: {exc}") from exc


def _publish_to_directory(hub: Path, entry: dict, archive: Path, card: Path) -> None:
    """Copy the files, then add the entry; the whole read-modify-write is under the hub's lock."""
    index_path = hub / INDEX_FILE
    with filelock.FileLock(str(hub / INDEX_LOCK_FILE)):
        if index_path.is_file():
            index = _parse_hub_index(index_path.read_text(encoding="utf-8"), str(index_path))
        else:
            index = {"format": INDEX_FORMAT, "models": []}
        _check_new(index, entry["name"], entry["version"], str(index_path))
        folder = hub / entry["name"] / entry["version"]
        if folder.exists():
            raise HandleError(
                f"{folder} already exists but {index_path} does not list it (left by a failed publish?); "
                "remove the folder or publish under a new --version"
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".publish-", dir=folder.parent))
        work.chmod(0o755)  # mkdtemp makes it private; a hub is read by others
        try:
            shutil.copyfile(archive, work / ARCHIVE_FILE)
            shutil.copyfile(card, work / CARD_FILE)
            os.rename(work, folder)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        try:
            index["models"].append(entry)
            tmp = index_path.with_name(f".{INDEX_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, index_path)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise


def _http(method: str, url: str, what: str, **kwargs):
    kwargs.setdefault("allow_redirects", method in ("GET", "HEAD"))
    headers = dict(kwargs.pop("headers", {}))
    token = os.environ.get(TOKEN_ENV)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http.request(
        method, url, f"{what}: {method} {url} failed", headers=headers, timeout=UPLOAD_TIMEOUT, **kwargs
    )


def _require_ok(response, what: str) -> None:
    """Only a 2xx answer is success; a redirect on a write is refused, never followed (a 302
    turns a PUT into a GET, a 301 may re-send it without its body)."""
    if 300 <= response.status_code < 400:
        target = response.headers.get("Location", "?")
        raise DownloadError(
            f"{what}: HTTP {response.status_code} redirect to {target}; galsim-hub never follows a "
            "redirect on an upload: publish to the final URL. The hub index was not changed"
        )
    if not 200 <= response.status_code < 300:
        hint = f" (is {TOKEN_ENV} set to a valid token?)" if response.status_code in (401, 403) else ""
        raise DownloadError(
            f"{what}: HTTP {response.status_code} {response.reason}{hint}; the hub index was not changed"
        )


def _verify_upload(url: str, local: Path) -> None:
    """Read an uploaded file back and compare its size and sha256 with the local file."""
    response = _http("GET", url, "reading back the upload")
    _require_ok(response, f"reading back {url}")
    expected = local.read_bytes()
    if response.content != expected:
        raise DownloadError(
            f"uploading {url}: the hub accepted the upload but serves {len(response.content)} bytes "
            f"(sha256 {hashlib.sha256(response.content).hexdigest()[:12]}) instead of {len(expected)} "
            f"(sha256 {hashlib.sha256(expected).hexdigest()[:12]}); the hub index was not changed"
        )


def _publish_to_url(hub: str, entry: dict, archive: Path, card: Path) -> None:
    if hub.endswith("/" + INDEX_FILE):
        hub = hub[: -len(INDEX_FILE)]
    base = hub if hub.endswith("/") else hub + "/"
    index_url = urljoin(base, INDEX_FILE)
    response = _http("GET", index_url, "reading the index")
    if response.status_code == 404:
        index: dict = {"format": INDEX_FORMAT, "models": []}
        condition = {"If-None-Match": "*"}
    else:
        _require_ok(response, f"reading the index {index_url}")
        index = _parse_hub_index(response.text, index_url)
        etag = response.headers.get("ETag")
        condition = {"If-Match": etag} if etag else {}
        if not etag:
            warnings.warn(
                f"the hub {index_url} sends no ETag, so its index cannot be updated conditionally: "
                "a publish running at the same time could lose an entry",
                stacklevel=2,
            )
    _check_new(index, entry["name"], entry["version"], index_url)
    for local, relative in ((archive, entry["path"]), (card, entry["card"])):
        url = urljoin(base, relative)
        with open(local, "rb") as stream:
            _require_ok(_http("PUT", url, "uploading", data=stream), f"uploading {url}")
        _verify_upload(url, local)
    index["models"].append(entry)
    body = (json.dumps(index, indent=1) + "\n").encode()
    response = _http(
        "PUT", index_url, "uploading the index", data=body, headers={"Content-Type": "application/json", **condition}
    )
    if response.status_code == 412:
        raise ConcurrentPublishError(
            f"the index {index_url} changed while publishing {entry['name']}@{entry['version']} "
            f"(HTTP 412: another publish updated it first); {entry['name']}/{entry['version']}/ was uploaded "
            "but is not listed: publish again to add it"
        )
    _require_ok(response, f"uploading the index {index_url}")


def publish(
    model_dir: str | os.PathLike,
    hub: str | os.PathLike,
    name: str | None = None,
    version: str | None = None,
) -> dict:
    """Validate a model and publish it into a hub.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A format-1 model directory.
    hub : str or os.PathLike
        A hub folder (its ``index.json`` is created when missing), an ``http(s)://``
        base URL accepting ``PUT`` (bearer token from ``GALSIM_HUB_TOKEN``), or
        ``hf:ORG/REPO``, a Hugging Face model repository (:func:`galsim_hub.hub.hf.publish_hf`;
        the result is then its dict).
    name, version : str, optional
        Published name and version; default: those of the metadata (the archived
        metadata are updated when they differ).

    Returns
    -------
    dict
        The index entry that was added.

    Raises
    ------
    MetadataError
        If the model fails validation, or the hub's index is malformed.
    HandleError
        If NAME@VERSION is already published, or the name or version is malformed.
    DownloadError
        If an upload fails (the index is then left untouched).
    ConcurrentPublishError
        If an HTTP hub's index changed between reading and writing it (HTTP 412).
    """
    from galsim_hub.hub.handle import parse_hub_handle

    if str(hub).startswith("hf:"):
        if name is not None or version is not None:
            raise HandleError(
                "a Hugging Face repository publishes the model as its metadata name it: leave --name and --version out"
            )
        from galsim_hub.hub.hf import publish_hf

        return publish_hf(model_dir, str(hub))
    for label, value in (("name", name), ("version", version)):
        if value is not None and not isinstance(value, str):
            raise HandleError(f"the published {label} must be a string, got {value!r} ({type(value).__name__})")
        if value is not None and not value.strip():
            raise HandleError(
                f"the published {label} is empty: give a {label} or leave the option out to use the metadata's"
            )
    model_dir = Path(model_dir)
    metadata = check_model_for_publish(model_dir)
    name = metadata["name"] if name is None else name
    version = metadata["version"] if version is None else version
    for label, value in (("name", name), ("version", version)):
        if not isinstance(value, str):
            raise MetadataError(f"{model_dir}: the metadata {label} must be a string, got {value!r}")
    parse_hub_handle(f"hub:{name}@{version}")  # the same rules as handles
    validate_metadata(dict(metadata, name=name, version=version), source=str(model_dir))
    with tempfile.TemporaryDirectory(prefix="galsim-hub-publish-") as tmp:
        work = Path(tmp)
        staged = _staged_model(model_dir, metadata, name, version, work)
        archive = work / ARCHIVE_FILE
        sha256, size = write_archive(staged, archive, top_folder=f"{name}-{version}")
        entry = _entry(name, version, sha256, size, metadata)
        hub_text = os.fspath(hub)
        if urlparse(hub_text).scheme in ("http", "https"):
            _publish_to_url(hub_text, entry, archive, staged / CARD_FILE)
        else:
            hub_dir = Path(hub_text).expanduser()
            if hub_dir.name == INDEX_FILE:
                hub_dir = hub_dir.parent
            if not hub_dir.is_dir():
                raise HandleError(f"the hub folder {hub_dir} does not exist")
            _publish_to_directory(hub_dir, entry, archive, staged / CARD_FILE)
    return entry
