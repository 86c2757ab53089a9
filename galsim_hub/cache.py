"""Local cache of model archives: download, verify, extract safely, reuse.

Layout under `cache_root`::

    <key>/entry.json       what the entry came from (written before the entry appears)
    <key>/model/...        the extracted archive
    .locks/<key>.lock      one lock file per entry, serialising processes
    .tmp-<key>-XXXX/       work folder of a fetch in progress (renamed to <key> when done)

An entry appears with a single ``os.rename`` of a finished work folder, so a half-done
entry is never visible, and a failed fetch leaves nothing behind. The key is the archive's
sha256 when the source states it, else the sha256 of its URL, or of its absolute path,
modification time and size for a local archive.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import filelock
import platformdirs

from .errors import ChecksumError, DownloadError, HandleError, MetadataError, UnsafeArchiveError

if TYPE_CHECKING:
    from .handle import ModelSource

__all__ = ["cache_root", "is_offline", "fetch", "list_entries", "clear"]

CACHE_ENV = "GALSIM_HUB_CACHE"
OFFLINE_ENV = "GALSIM_HUB_OFFLINE"
HTTP_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds
CHUNK_SIZE = 1 << 20
MODEL_MARKERS = ("galsim_hub.json", "saved_model.pb", "tfhub_module.pb")
ENTRY_FILE = "entry.json"
MODEL_FOLDER = "model"


def cache_root() -> Path:
    """The cache folder: ``$GALSIM_HUB_CACHE``, else the platform's user cache folder.

    Returns
    -------
    pathlib.Path
        Absolute path; it is created on first use by `fetch`.
    """
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("galsim_hub"))


def is_offline() -> bool:
    """Whether ``GALSIM_HUB_OFFLINE`` is set to ``1``, ``true`` or ``yes`` (any case)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def _entry_key(source: ModelSource) -> str:
    if source.sha256:
        return source.sha256.lower()
    if source.kind == "archive":
        stat = os.stat(source.location)
        identity = f"{source.location}\n{stat.st_mtime_ns}\n{stat.st_size}"
    else:
        identity = source.location
    return hashlib.sha256(identity.encode()).hexdigest()


def _lock(root: Path, key: str) -> filelock.FileLock:
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(locks / f"{key}.lock"))


def _read_entry(entry_dir: Path) -> dict | None:
    """The record of a finished entry, or None when the folder is not a usable entry."""
    try:
        record = json.loads((entry_dir / ENTRY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("model_subdir"), str):
        return None
    model_dir = entry_dir / MODEL_FOLDER / record["model_subdir"]
    if not model_dir.is_dir():
        return None
    record["path"] = str(entry_dir)
    record["model_dir"] = str(model_dir)
    return record


def _matching_entry(source: ModelSource) -> dict | None:
    """A finished entry holding the archive that a hub entry describes, whatever its origin.

    This lets ``galsim-hub fetch /path/model.tar.gz`` of a copy downloaded elsewhere serve
    ``hub:NAME`` offline. The archive must match the index's sha256 or, when the index
    states only a size, that size: the same check a download of the URL gets.
    """
    if source.entry is None or (not source.sha256 and source.size is None):
        return None
    for record in list_entries():
        if source.sha256:
            if record.get("sha256") == source.sha256:
                return record
        elif record.get("size_bytes") == source.size:
            return record
    return None


def _offline_error(source: ModelSource, root: Path) -> DownloadError:
    advice = (
        f"download {source.location} on a machine with network, then run "
        f"`galsim-hub fetch /path/model.tar.gz` (with the same {CACHE_ENV}) or pass the local path"
    )
    if source.entry is not None:
        return DownloadError(
            f"offline mode is on ({OFFLINE_ENV}) and {source.handle} is not in the cache {root}; {advice}"
        )
    return DownloadError(
        f"offline mode is on ({OFFLINE_ENV}) and {source.location} is not in the cache {root}; "
        f"unset {OFFLINE_ENV}, or download the file elsewhere and pass its local path"
    )


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _download(source: ModelSource, target: Path, progress: bool) -> None:
    """Stream ``source.location`` to ``target``, checking the byte count."""
    import requests
    import urllib3.exceptions
    from tqdm.auto import tqdm

    url = source.location
    advice = ""
    if source.entry is not None:
        advice = (
            f" Without network: download {url} on a machine with network, then "
            f"`galsim-hub fetch /path/model.tar.gz` or pass the local path."
        )
    received = 0
    try:
        with requests.get(url, stream=True, timeout=HTTP_TIMEOUT) as response:
            if response.status_code >= 400:
                raise DownloadError(
                    f"could not download {url}: HTTP {response.status_code} {response.reason}.{advice}"
                )
            header = response.headers.get("Content-Length")
            announced = int(header) if header and header.isdigit() else None
            total = announced if announced is not None else source.size
            with open(target, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=PurePosixPath(url).name, disable=not progress
            ) as bar:
                # Raw bytes: a server's Content-Encoding must not unpack the .tar.gz itself.
                for chunk in response.raw.stream(CHUNK_SIZE, decode_content=False):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
        raise DownloadError(f"could not download {url}: timed out ({exc}).{advice}") from exc
    except requests.ConnectionError as exc:
        raise DownloadError(f"could not download {url}: connection failed ({exc}).{advice}") from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise DownloadError(
            f"truncated download of {url}: the transfer broke off after {received} bytes ({exc}).{advice}"
        ) from exc
    if announced is not None and received != announced:
        raise DownloadError(
            f"truncated download of {url}: got {received} bytes, the server announced {announced}"
        )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(source: ModelSource, archive: Path) -> tuple[str, int]:
    """Check the archive's size and sha256 against the source; return both."""
    size = archive.stat().st_size
    if source.size is not None and size != source.size:
        problem = "truncated" if size < source.size else "wrong size of"
        raise DownloadError(
            f"{problem} archive {source.location}: {size} bytes, the index says {source.size}"
        )
    actual = _file_sha256(archive)
    if source.sha256 and actual != source.sha256.lower():
        raise ChecksumError(
            f"sha256 mismatch for {source.location}: expected {source.sha256.lower()}, got {actual}"
        )
    return actual, size


def _check_member(member: tarfile.TarInfo, archive: str) -> None:
    """Refuse absolute paths, ``..``, links leaving the archive, devices and fifos."""
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchiveError(f"{archive}: member {name!r} is a device or fifo")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        if target.is_absolute():
            raise UnsafeArchiveError(
                f"{archive}: link {name!r} points to the absolute path {member.linkname!r}"
            )
        base = path.parent if member.issym() else PurePosixPath()
        depth = 0
        for part in (base / target).parts:
            depth += -1 if part == ".." else (0 if part == "." else 1)
            if depth < 0:
                raise UnsafeArchiveError(
                    f"{archive}: link {name!r} points outside the archive ({member.linkname!r})"
                )


def _extract(archive: Path, destination: Path, label: str) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, label)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, members=members, filter="data")
            else:  # Python < 3.10.12 / 3.11.4: our own checks above are the filter.
                tar.extractall(destination, members=members)
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"{label}: unsafe archive member ({exc})") from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        error = DownloadError if label.startswith(("http://", "https://")) else HandleError
        raise error(f"{label} is not a readable .tar.gz archive ({exc})") from exc


def _find_model_dir(extracted: Path, label: str) -> Path:
    """The folder holding the model: the archive's top level or its single top-level folder."""
    if any((extracted / marker).exists() for marker in MODEL_MARKERS):
        return extracted
    children = [child for child in extracted.iterdir() if not child.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir():
        if any((children[0] / marker).exists() for marker in MODEL_MARKERS):
            return children[0]
    raise MetadataError(
        f"{label} holds no model: none of {', '.join(MODEL_MARKERS)} at its top level "
        f"or in a single top-level folder"
    )


def _build_entry(source: ModelSource, root: Path, key: str, progress: bool) -> Path:
    """Download/verify/extract into a work folder, then rename it into place (lock held)."""
    for stale in root.glob(f".tmp-{key}-*"):  # left by a killed process (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
    try:
        if source.kind == "url":
            archive = work / "download.tar.gz"
            _download(source, archive, progress)
        else:
            archive = Path(source.location)
        sha256, size = _verify(source, archive)
        extracted = work / MODEL_FOLDER
        extracted.mkdir()
        _extract(archive, extracted, source.location)
        model_dir = _find_model_dir(extracted, source.location)
        if source.kind == "url":
            archive.unlink()
        record = {
            "key": key,
            "source": source.handle,
            "url" if source.kind == "url" else "archive_path": source.location,
            "archive_name": PurePosixPath(source.location.split("?")[0]).name,
            "sha256": sha256,
            "size_bytes": size,
            "model_subdir": model_dir.relative_to(extracted).as_posix(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if source.entry is not None:
            record["name"] = source.entry["name"]
            record["version"] = source.entry["version"]
        (work / ENTRY_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.rename(work, root / key)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return root / key / MODEL_FOLDER / record["model_subdir"]


def fetch(source: ModelSource, *, progress: bool | None = None) -> Path:
    """Make a model available locally and return its directory.

    A ``"directory"`` source is returned as is. An ``"archive"`` or ``"url"`` source is
    looked up in the cache; a finished entry is reused without any network access.
    Otherwise, under a per-entry file lock, the archive is downloaded (streamed, with a
    progress bar), its size and sha256 are checked when known, it is extracted with a safe
    filter into a work folder inside the cache, and the folder is renamed into place.

    Parameters
    ----------
    source : ModelSource
        As returned by `galsim_hub.handle.resolve`.
    progress : bool, optional
        Show a download progress bar; by default only when stderr is a terminal.

    Returns
    -------
    pathlib.Path
        The directory holding ``galsim_hub.json``, ``saved_model.pb`` or
        ``tfhub_module.pb``: the archive's top level or its single top-level folder.

    Raises
    ------
    DownloadError
        Network failure, HTTP error status, truncated download, or offline mode
        (``GALSIM_HUB_OFFLINE``) with the archive not cached.
    ChecksumError
        The archive's sha256 differs from the expected one.
    UnsafeArchiveError
        The archive holds absolute paths, ``..``, links leaving it, or devices.
    MetadataError
        The archive holds no recognisable model.
    HandleError
        A local source vanished or is not a readable archive.
    """
    if source.kind == "directory":
        path = Path(source.location)
        if not path.is_dir():
            raise HandleError(f"{source.handle!r}: the model directory {path} does not exist")
        return path
    if source.kind not in ("archive", "url"):
        raise HandleError(f"{source.handle!r}: unknown source kind {source.kind!r}")
    if source.kind == "archive" and not Path(source.location).is_file():
        raise HandleError(f"{source.handle!r}: the archive {source.location} does not exist")

    root = cache_root()
    key = _entry_key(source)
    record = _read_entry(root / key)
    if record is not None:
        return Path(record["model_dir"])
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root, key):
        record = _read_entry(root / key)
        if record is not None:
            return Path(record["model_dir"])
        if (root / key).exists():  # an unusable leftover, e.g. partly deleted by hand
            _remove_entry_folder(root, key)
        if source.kind == "url":
            matching = _matching_entry(source)
            if matching is not None:
                return Path(matching["model_dir"])
            if is_offline():
                raise _offline_error(source, root)
        return _build_entry(source, root, key, _show_progress(progress))


def list_entries() -> list[dict]:
    """Finished cache entries.

    Returns
    -------
    list of dict
        One per entry, sorted by creation time, with keys ``key``, ``path`` (the entry
        folder), ``model_dir``, ``source`` (the handle used), ``url`` or ``archive_path``,
        ``sha256`` and ``size_bytes`` of the archive, ``created`` (ISO 8601, UTC), and
        ``name``/``version`` for hub models.
    """
    root = cache_root()
    if not root.is_dir():
        return []
    records = []
    for child in root.iterdir():
        if child.name.startswith(".") or not child.is_dir():
            continue
        record = _read_entry(child)
        if record is not None:
            records.append(record)
    return sorted(records, key=lambda record: (record.get("created", ""), record["key"]))


def _remove_entry_folder(root: Path, key: str) -> None:
    """Move the entry aside in one rename, then delete it: no half-deleted entry is visible."""
    trash = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
    os.rename(root / key, trash / key)
    shutil.rmtree(trash, ignore_errors=True)


def clear(keys: list[str] | None = None) -> int:
    """Remove cache entries.

    Parameters
    ----------
    keys : list of str, optional
        Keys (as in `list_entries`) to remove; all entries, and the work folders of
        killed fetches, when None.

    Returns
    -------
    int
        Number of entries removed.

    Raises
    ------
    HandleError
        If a key names no entry (nothing is removed then).
    """
    root = cache_root()
    if not root.is_dir():
        if keys:
            raise HandleError(f"no cache entry {keys[0]!r}: the cache {root} is empty")
        return 0
    existing = [child.name for child in root.iterdir() if not child.name.startswith(".") and child.is_dir()]
    if keys is None:
        targets = existing
    else:
        unknown = [key for key in keys if key not in existing]
        if unknown:
            raise HandleError(
                f"no cache entry {', '.join(map(repr, unknown))} in {root}; "
                f"entries: {', '.join(sorted(existing)) or 'none'}"
            )
        targets = list(dict.fromkeys(keys))
    removed = 0
    for key in targets:
        with _lock(root, key):
            if (root / key).is_dir():
                _remove_entry_folder(root, key)
                removed += 1
    if keys is None:
        for work in root.glob(".tmp-*"):
            key = work.name[len(".tmp-"):].rsplit("-", 1)[0]
            lock = _lock(root, key)
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                continue  # a fetch is running
            try:
                shutil.rmtree(work, ignore_errors=True)
            finally:
                lock.release()
    return removed
