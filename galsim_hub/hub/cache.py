"""Local cache of models: download, verify, extract safely, reuse.

Layout under `cache_root`::

    <key>/entry.json       what the entry came from (written before the entry appears)
    <key>/model/...        the extracted archive, or the files of a multi-file source
    .locks/<key>.lock      one lock file per entry, serialising processes
    .locks/<key>.owner.json  who holds that lock (told to processes waiting for it)
    .tmp-<key>-XXXX/       work folder of a fetch in progress (renamed to <key> when done)

An entry appears with a single ``os.rename`` of a finished work folder, so a half-done
entry is never visible, and a failed fetch leaves nothing behind. The key is the archive's
sha256 when the source states it; else the sha256 of the list of git blob ids of a
multi-file source, of its URL, or of a local archive's absolute path, modification time and
size. Correctness does not rest on the lock (unreliable on NFS and Lustre): work folders
are swept only when their owner is gone, and an entry that another process renamed into
place first is accepted when its digest matches.

A hub entry may list several sources (`galsim_hub.hub.handle.ModelSource.alternatives`); a
cached entry of any of them is used, otherwise they are tried in order, each verified.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote

from galsim_hub.errors import DownloadError, HandleError, MetadataError, UnsafeArchiveError, is_local_write_error
from galsim_hub.hub import http, settings
from galsim_hub.hub.extract import safe_extract
from galsim_hub.hub.locks import OWNER_FILE, EntryLock, new_work_folder, sweep_stale_work
from galsim_hub.hub.settings import cache_root, is_offline
from galsim_hub.hub.verify import check_archive, check_blob
from galsim_hub.metadata import read_metadata

if TYPE_CHECKING:
    from galsim_hub.hub.handle import ModelSource

__all__ = ["cache_root", "is_offline", "fetch", "list_entries", "clear"]

MODEL_MARKERS = ("galsim_hub.json", "saved_model.pb", "tfhub_module.pb")
ENTRY_FILE = "entry.json"
MODEL_FOLDER = "model"


def _entry_key(source: ModelSource) -> str:
    if source.sha256:
        return source.sha256.lower()
    if source.kind == "files":
        manifest = json.dumps(sorted([path, blob] for path, _, blob in source.files))
        return hashlib.sha256(f"files\n{manifest}".encode()).hexdigest()
    if source.kind == "archive":
        stat = os.stat(source.location)
        identity = f"{source.location}\n{stat.st_mtime_ns}\n{stat.st_size}"
    else:
        identity = source.location
    return hashlib.sha256(identity.encode()).hexdigest()


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
    states only the beginning of the digest, that beginning and the size: a size alone
    does not identify a model.
    """
    if source.entry is None or source.kind != "url":
        return None
    for record in list_entries():
        digest = record.get("sha256") or ""
        if source.sha256:
            if digest == source.sha256:
                return record
        elif source.sha256_prefix and source.size is not None:
            if digest.startswith(source.sha256_prefix) and record.get("size_bytes") == source.size:
                return record
    return None


def _cached(source: ModelSource, root: Path) -> Path | None:
    """The model directory of a finished entry for ``source``, if there is one."""
    record = _read_entry(root / _entry_key(source)) or _matching_entry(source)
    return Path(record["model_dir"]) if record is not None else None


def _offline_error(source: ModelSource, root: Path) -> DownloadError:
    advice = (
        f"download {source.location} on a machine with network, then run "
        f"`galsim-hub fetch /path/model.tar.gz` (with the same {settings.CACHE_ENV}) or pass the local path"
    )
    if source.entry is not None:
        return DownloadError(
            f"offline mode is on ({settings.OFFLINE_ENV}) and {source.handle} is not in the cache {root}; {advice}"
        )
    return DownloadError(
        f"offline mode is on ({settings.OFFLINE_ENV}) and {source.location} is not in the cache {root}; "
        f"unset {settings.OFFLINE_ENV}, or download the file elsewhere and pass its local path"
    )


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _advice(source: ModelSource) -> str:
    if source.entry is None or source.kind != "url":
        return ""
    return (
        f" Without network: download {source.location} on a machine with network, then "
        f"`galsim-hub fetch /path/model.tar.gz` or pass the local path."
    )


def _extract(archive: Path, destination: Path, label: str) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            safe_extract(tar, destination, label)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, UnsafeArchiveError):
            raise
        if is_local_write_error(exc):
            raise HandleError(
                f"could not extract {label} into the cache {destination.parent.parent}: {getattr(exc, 'strerror', exc)}"
            ) from exc
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
        f"{label} holds no model: none of {', '.join(MODEL_MARKERS)} at its top level or in a single top-level folder"
    )


def check_model_files(model_dir: Path, label: str) -> None:
    """Refuse an incomplete model before its cache entry becomes visible.

    The metadata are read and validated; a SavedModel (galsim-hub formats, TF1 Hub modules)
    needs ``saved_model.pb`` and, where it has variables, their index and data shards; a
    format-3 model also its Keras-native file.
    """
    missing = []
    if (model_dir / "galsim_hub.json").is_file():
        metadata = read_metadata(model_dir)
        required = ["saved_model.pb", "variables/variables.index"] + [metadata.get("keras_model") or ""]
        missing += [name for name in required if name and not (model_dir / name).is_file()]
    elif (model_dir / "tfhub_module.pb").is_file():
        missing += [] if (model_dir / "saved_model.pb").is_file() else ["saved_model.pb"]
        if (model_dir / "variables").is_dir() and not (model_dir / "variables/variables.index").is_file():
            missing.append("variables/variables.index")
    if (model_dir / "variables/variables.index").is_file() and not any(
        (model_dir / "variables").glob("variables.data-*")
    ):
        missing.append("variables/variables.data-*")
    if missing:
        raise MetadataError(
            f"{label} holds an incomplete model: {', '.join(missing)} missing in {model_dir.name or 'its top level'}"
        )


def _download_files(source: ModelSource, destination: Path, progress: bool) -> int:
    """Download each file of a multi-file source and check its git blob id; return the total size."""
    total = 0
    for path, size, blob in source.files:
        url = source.location + quote(path)
        target = destination.joinpath(*path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        http.download(url, target, progress=progress, size=size)
        total += check_blob(target, url, blob, size)
    return total


def _fill_work_folder(source: ModelSource, work: Path, record: dict, progress: bool) -> Path:
    """Download/verify/extract into ``work``; complete ``record``; return the model directory."""
    extracted = work / MODEL_FOLDER
    extracted.mkdir()
    if source.kind == "files":
        record.update(
            base_url=source.location,
            files=len(source.files),
            sha256=None,
            size_bytes=_download_files(source, extracted, progress),
        )
        model_dir = _find_model_dir(extracted, source.location)
        check_model_files(model_dir, source.location)
        return model_dir
    if source.kind == "url":
        archive = work / "download.tar.gz"
        http.download(source.location, archive, progress=progress, size=source.size, advice=_advice(source))
    else:
        archive = Path(source.location)
    sha256, size = check_archive(archive, source.location, source.sha256, source.sha256_prefix, source.size)
    _extract(archive, extracted, source.location)
    if source.kind == "url":
        archive.unlink()
    record.update(
        {
            "url" if source.kind == "url" else "archive_path": source.location,
            "archive_name": PurePosixPath(source.location.split("?")[0]).name,
            "sha256": sha256,
            "size_bytes": size,
        }
    )
    model_dir = _find_model_dir(extracted, source.location)
    check_model_files(model_dir, source.location)
    return model_dir


def _same_content(existing: dict, record: dict) -> bool:
    if record.get("sha256"):
        return existing.get("sha256") == record["sha256"]
    return existing.get("base_url") is not None and existing.get("key") == record["key"]


def _install(work: Path, root: Path, key: str, record: dict) -> Path:
    """Rename the finished work folder into place; an equal entry already there is success."""
    target = root / key
    try:
        os.rename(work, target)
    except OSError:
        existing = _read_entry(target)
        if existing is None:  # an unusable leftover: move it away and try once more
            _remove_entry_folder(root, key)
            os.rename(work, target)
        elif _same_content(existing, record):
            shutil.rmtree(work, ignore_errors=True)  # another process got there first
            return Path(existing["model_dir"])
        else:
            raise DownloadError(
                f"the cache entry {target} appeared while fetching {record['source']} and holds other "
                f"content (sha256 {existing.get('sha256')} instead of {record.get('sha256')}); "
                "the source changed meanwhile: try again"
            ) from None
    return target / MODEL_FOLDER / record["model_subdir"]


def _build_entry(source: ModelSource, root: Path, key: str, progress: bool) -> Path:
    """Fill a work folder and rename it into place; nothing is left behind on failure."""
    sweep_stale_work(root, key)
    work = new_work_folder(root, key)
    try:
        record = {"key": key, "source": source.handle}
        model_dir = _fill_work_folder(source, work, record, progress)
        record["model_subdir"] = model_dir.relative_to(work / MODEL_FOLDER).as_posix()
        record["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        if source.entry is not None:
            record["name"] = source.entry["name"]
            record["version"] = source.entry["version"]
        (work / OWNER_FILE).unlink()
        (work / ENTRY_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        return _install(work, root, key, record)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _available(source: ModelSource, root: Path) -> Path | None:
    """The model directory of ``source`` when it needs no download or extraction."""
    if source.kind == "directory":
        return Path(source.location) if Path(source.location).is_dir() else None
    if source.kind == "archive" and not Path(source.location).is_file():
        return None
    return _cached(source, root)


def _fetch_one(source: ModelSource, root: Path, progress: bool) -> Path:
    if source.kind == "directory":
        if not Path(source.location).is_dir():
            raise HandleError(f"{source.handle!r}: the model directory {source.location} does not exist")
        return Path(source.location)
    if source.kind == "archive" and not Path(source.location).is_file():
        raise HandleError(f"{source.handle!r}: the archive {source.location} does not exist")
    if source.kind in ("url", "files") and is_offline():
        raise _offline_error(source, root)
    key = _entry_key(source)
    with EntryLock(root, key, source.location):
        cached = _cached(source, root)
        if cached is not None:
            return cached
        if (root / key).exists():  # an unusable leftover, e.g. partly deleted by hand
            _remove_entry_folder(root, key)
        return _build_entry(source, root, key, progress)


def fetch(source: ModelSource, *, progress: bool | None = None) -> Path:
    """Make a model available locally and return its directory.

    A ``"directory"`` source is returned as is. An ``"archive"``, ``"url"`` or ``"files"``
    source is looked up in the cache; a finished entry of it or of one of its
    ``alternatives`` is reused without any network access. Otherwise the sources are
    tried in order: under a per-entry file lock, the archive is downloaded (streamed,
    with a progress bar, resumed when the server allows), its size and sha256 are checked
    when known, it is extracted safely into a work folder inside the cache, and the folder
    is renamed into place; a multi-file source is downloaded file by file, each checked
    by its git blob id.

    Parameters
    ----------
    source : ModelSource
        As returned by `galsim_hub.hub.handle.resolve`.
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
        Network failure, HTTP error status, truncated or too slow download, offline mode
        (``GALSIM_HUB_OFFLINE``) with the model not cached, or every source failing.
    ChecksumError
        The archive's sha256 (or a file's git blob id) differs from the expected one.
    UnsafeArchiveError
        The archive holds absolute paths, ``..``, links, devices, or expands too much.
    MetadataError
        The archive holds no recognisable model.
    HandleError
        A local source vanished or is not a readable archive.
    """
    if source.kind == "hf":  # the Hugging Face Hub: its own cache, revisions and offline mode
        from galsim_hub.hub.hf import fetch_hf

        return fetch_hf(source.handle, source.location, source.revision, progress)
    if source.kind not in ("directory", "archive", "url", "files"):
        raise HandleError(f"{source.handle!r}: unknown source kind {source.kind!r}")
    candidates = [source, *source.alternatives]
    root = cache_root()
    for candidate in candidates:
        available = _available(candidate, root)
        if available is not None:
            return available
    if is_offline() and all(candidate.kind in ("url", "files") for candidate in candidates):
        raise _offline_error(source, root)
    failures: list[str] = []
    for candidate in candidates:
        try:
            return _fetch_one(candidate, root, _show_progress(progress))
        except (DownloadError, UnsafeArchiveError, MetadataError, HandleError) as exc:
            if len(candidates) == 1:
                raise
            failures.append(f"{len(failures) + 1}. {candidate.location}: {exc}")
    raise DownloadError(f"every source of {source.handle} failed: " + " ".join(failures))


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
    trash = new_work_folder(root, key)
    os.rename(root / key, trash / key)
    shutil.rmtree(trash, ignore_errors=True)


def clear(keys: list[str] | None = None) -> int:
    """Remove cache entries.

    Parameters
    ----------
    keys : list of str, optional
        Keys (as in `list_entries`) to remove; all entries, and the work folders of
        killed fetches (never those of running ones), when None.

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
        with EntryLock(root, key, "removing the entry"):
            if (root / key).is_dir():
                _remove_entry_folder(root, key)
                removed += 1
    if keys is None:
        sweep_stale_work(root)
    return removed
