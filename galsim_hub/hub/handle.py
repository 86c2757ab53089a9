"""Model handles: ``hub:NAME[@VERSION]``, ``http(s)://`` URLs and local paths.

A handle is turned into a `ModelSource`, which says where the model lives and what its
archive should look like; `galsim_hub.hub.cache.fetch` then makes it a local directory.

``hub:`` names are looked up in the bundled index (``hub_models/index.json``) and then in
every index named by the ``GALSIM_HUB_INDEX`` environment variable (comma-separated URLs
or paths). When two indexes list the same NAME@VERSION, the first one searched wins. A
NAME of the bundled index belongs to it: an extra index listing that name (any version) is
ignored for it with a warning, so an extra index cannot shadow a bundled model.

An entry names one or more sources, tried in order by the cache, each verified: ``url`` or
``path`` (an archive or a directory), then the items of ``sources``, each either an archive
(``url``/``path`` with ``sha256``, ``sha256_prefix``, ``size``) or a multi-file source
(``base_url`` and ``files``, a list of ``{path, size, git_blob_sha1}``).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

from galsim_hub.errors import DownloadError, HandleError, MetadataError
from galsim_hub.hub import settings
from galsim_hub.hub.hf import HF_PREFIX, parse_hf_handle

__all__ = [
    "ModelSource",
    "parse_hub_handle",
    "load_index",
    "find_entry",
    "resolve",
    "version_key",
]

INDEX_ENV = settings.INDEX_ENV
INDEX_FORMAT = 1
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HEX_RE = re.compile(r"^[0-9a-f]{8,64}$")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")

ACCEPTED_FORMS = (
    "accepted handles are 'hub:NAME' or 'hub:NAME@VERSION' (a model of the hub index), "
    "hf:ORG/REPO[@REVISION] (a Hugging Face model repository), "
    "an http(s):// URL of a .tar.gz archive, a local model directory, "
    "or a local .tar.gz/.tgz archive"
)


@dataclass(frozen=True)
class ModelSource:
    """Where a model lives, as resolved from a handle.

    Attributes
    ----------
    handle : str
        The handle as the user gave it.
    kind : str
        ``"directory"`` (a local model directory), ``"archive"`` (a local ``.tar.gz``),
        ``"url"`` (an archive to download), ``"files"`` (files to download one by one
        from ``location``, a base URL ending in ``/``) or ``"hf"`` (a Hugging Face model repo).
    location : str
        Absolute local path, or the URL.
    sha256 : str or None
        Expected sha256 (lower-case hex) of the archive, when known.
    size : int or None
        Expected byte size of the archive, when known.
    entry : dict or None
        The hub index entry for ``hub:`` handles, else None.
    sha256_prefix : str or None
        The known beginning of the archive's sha256 when the whole digest is not known.
    files : tuple
        For ``"files"`` sources: ``(path, size or None, git_blob_sha1)`` per file.
    alternatives : tuple of ModelSource
        Further sources of the same model, tried in order when this one fails.
    revision : str or None
        For ``"hf"`` sources (``location`` is ``ORG/REPO`` on the Hugging Face Hub): the branch,
        tag or commit asked for.
    """

    handle: str
    kind: str
    location: str
    sha256: str | None = None
    size: int | None = None
    entry: dict | None = field(default=None, hash=False)
    sha256_prefix: str | None = None
    files: tuple = ()
    alternatives: tuple = ()
    revision: str | None = None


def parse_hub_handle(handle: str) -> tuple[str, str | None]:
    """Split ``"hub:NAME[@VERSION]"`` into ``(NAME, VERSION)``.

    Parameters
    ----------
    handle : str
        A handle starting with ``hub:``.

    Returns
    -------
    name : str
    version : str or None
        None when no version is named.

    Raises
    ------
    HandleError
        If the handle does not have the form ``hub:NAME`` or ``hub:NAME@VERSION``.
    """
    if not isinstance(handle, str) or not handle.startswith("hub:"):
        raise HandleError(f"{handle!r} is not a hub handle; {ACCEPTED_FORMS}")
    name, sep, version = handle[len("hub:") :].partition("@")
    if not _NAME_RE.match(name):
        raise HandleError(
            f"malformed hub handle {handle!r}: the model name {name!r} must be letters, digits, "
            f"'_', '.', '+' or '-'; {ACCEPTED_FORMS}"
        )
    if not sep:
        return name, None
    if not _VERSION_RE.match(version):
        raise HandleError(f"malformed hub handle {handle!r}: the version after '@' is {version!r}; {ACCEPTED_FORMS}")
    return name, version


def version_key(version: str) -> tuple:
    """Sort key comparing versions numerically, much like PEP 440.

    ``"1.10" > "1.9"``, ``"1.0" == "1"``, and a pre-release suffix sorts before the
    release (``"2.0rc1" < "2.0"``).

    Parameters
    ----------
    version : str

    Returns
    -------
    tuple
        Comparable key.
    """
    text = version.strip().lower().lstrip("v")
    release = re.match(r"\d+(?:\.\d+)*", text)
    numbers = [int(part) for part in release.group(0).split(".")] if release else []
    while numbers and numbers[-1] == 0:
        numbers.pop()
    rest = text[release.end() :] if release else text
    # Numbers sort above the end marker, which sorts above letters: 1.0 < 1.0.1, 1.0rc1 < 1.0.
    key = [(1, n, "") for n in numbers]
    for token in re.findall(r"\d+|[a-z]+", rest):
        key.append((1, int(token), "") if token.isdigit() else (-1, 0, token))
    key.append((0, 0, ""))
    return tuple(key)


def _is_url(text: str) -> bool:
    return urlparse(text).scheme in ("http", "https")


def _bundled_index_path() -> Path:
    from galsim_hub.hub_models import INDEX_PATH

    return INDEX_PATH


def _index_locations() -> list[str]:
    extra = os.environ.get(INDEX_ENV, "")
    return [str(_bundled_index_path())] + [part.strip() for part in extra.split(",") if part.strip()]


def _remote_index_copy(url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()
    return settings.cache_root() / ".indexes" / f"{digest}.json"


def _read_remote_index(url: str) -> str:
    """Text of a remote index as the server sends it now (the cached copy in offline mode)."""
    from galsim_hub.hub import http

    copy = _remote_index_copy(url)
    if settings.is_offline():
        if copy.is_file():
            return copy.read_text(encoding="utf-8")
        raise DownloadError(
            f"offline mode is on ({settings.OFFLINE_ENV}) and the index {url} was never fetched; "
            f"unset {settings.OFFLINE_ENV} once, or name a local copy of the index in {INDEX_ENV}"
        )
    response = http.request("GET", url, f"could not download the index {url}")
    if response.status_code >= 400:
        raise DownloadError(f"could not download the index {url}: HTTP {response.status_code} {response.reason}")
    return response.text


def _save_remote_copy(url: str, text: str) -> None:
    """Keep a valid remote index for offline mode and for when its server is down."""
    copy = _remote_index_copy(url)
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, copy)
    except OSError as exc:  # a read-only cache still reads the index
        warnings.warn(f"could not keep a copy of the index {url} in {copy.parent}: {exc.strerror}", stacklevel=2)


def _extra_index_entries(location: str) -> tuple[list[dict], str]:
    """The entries of an extra index and its resolved location.

    A remote index that cannot be read now (down, HTTP error, malformed answer) falls back to
    its last good copy, with a warning. Raises what the reading raised when there is none.
    """
    if not _is_url(location):
        path = Path(location).expanduser()
        if not path.is_file():
            raise HandleError(f"the index {location} named in {INDEX_ENV} does not exist")
        resolved = str(path.resolve())
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MetadataError(f"the index {location} cannot be read ({exc})") from exc
        return _parse_index(text, resolved), resolved
    try:
        text = _read_remote_index(location)
        entries = _parse_index(text, location)
    except (DownloadError, MetadataError) as exc:
        copy = _remote_index_copy(location)
        if settings.is_offline() or not copy.is_file():
            raise
        warnings.warn(f"{exc}; using its last good copy from {copy}", stacklevel=2)
        return _parse_index(copy.read_text(encoding="utf-8"), location), location
    if not settings.is_offline():
        _save_remote_copy(location, text)
    return entries, location


#: Extra indexes skipped by the last :func:`load_index`, with the reason (named when a model is not found).
_skipped_indexes: dict[str, str] = {}


def _resolve_reference(reference: str, index_location: str) -> tuple[str, str]:
    """Resolve an entry's ``url``/``path``/``card`` against its index: ("url"|"path", where)."""
    if _is_url(reference):
        return "url", reference
    if _is_url(index_location):
        return "url", urljoin(index_location, reference)
    parsed = urlparse(reference)
    if parsed.scheme == "file":
        return "path", str(Path(unquote(parsed.path)))
    if len(parsed.scheme) > 1:
        raise ValueError(f"unsupported URL scheme {parsed.scheme!r}")
    path = Path(reference).expanduser()
    if not path.is_absolute():
        path = Path(index_location).resolve().parent / path
    return "path", str(path.resolve())


def _check_digests(raw: dict, where: str) -> None:
    sha256 = raw.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256_RE.match(sha256.lower())):
        raise MetadataError(f"{where}: 'sha256' must be 64 hex digits or null, got {sha256!r}")
    prefix = raw.get("sha256_prefix")
    if prefix is not None and not (isinstance(prefix, str) and _HEX_RE.match(prefix.lower())):
        raise MetadataError(f"{where}: 'sha256_prefix' must be 8 to 64 hex digits or null, got {prefix!r}")
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise MetadataError(f"{where}: 'size' must be a non-negative integer or null, got {size!r}")


def _validate_files(files: object, where: str) -> tuple:
    """``files`` of a multi-file source as ``((path, size, git_blob_sha1), ...)``."""
    if not isinstance(files, list) or not files:
        raise MetadataError(f"{where}: 'files' must be a non-empty list")
    checked, seen = [], set()
    for position, item in enumerate(files):
        here = f"{where}, file {position}"
        if not isinstance(item, dict):
            raise MetadataError(f"{here} is not a JSON object")
        path, blob = item.get("path"), item.get("git_blob_sha1")
        parts = path.split("/") if isinstance(path, str) else []
        if not isinstance(path, str) or any(part in ("", ".", "..") for part in parts) or "\\" in path:
            raise MetadataError(
                f"{here}: 'path' must be a relative path without '.', '..' or empty parts, got {path!r}"
            )
        if path in seen:
            raise MetadataError(f"{here}: {path!r} is listed twice")
        seen.add(path)
        if not (isinstance(blob, str) and _SHA1_RE.match(blob)):
            raise MetadataError(f"{here}: 'git_blob_sha1' must be 40 lower-case hex digits, got {blob!r}")
        _check_digests({"size": item.get("size")}, here)
        checked.append((path, item.get("size"), blob))
    return tuple(checked)


def _validate_source(raw: object, where: str, index_location: str) -> dict:
    """One source of an entry, normalised to ``{kind, location, sha256, sha256_prefix, size, files}``."""
    if not isinstance(raw, dict):
        raise MetadataError(f"{where} is not a JSON object")
    keys = [key for key in ("url", "path", "base_url") if key in raw]
    if len(keys) != 1:
        raise MetadataError(f"{where} must have exactly one of 'url' and 'path' (or 'base_url' with 'files')")
    reference = raw[keys[0]]
    if not isinstance(reference, str) or not reference:
        raise MetadataError(f"{where}: {keys[0]!r} must be a non-empty string")
    _check_digests(raw, where)
    try:
        kind, location = _resolve_reference(reference, index_location)
    except ValueError as exc:
        raise MetadataError(f"{where}: {exc}") from exc
    source = {
        "kind": kind,
        "location": location,
        "sha256": raw["sha256"].lower() if raw.get("sha256") else None,
        "sha256_prefix": raw["sha256_prefix"].lower() if raw.get("sha256_prefix") else None,
        "size": raw.get("size"),
        "files": (),
    }
    if keys[0] == "base_url":
        if kind != "url":
            raise MetadataError(f"{where}: 'base_url' must be an http(s) URL (or relative to a remote index)")
        source.update(
            kind="files",
            location=location if location.endswith("/") else location + "/",
            files=_validate_files(raw.get("files"), where),
        )
    elif "files" in raw:
        raise MetadataError(f"{where}: 'files' needs a 'base_url'")
    return source


def _validate_entry(raw: object, position: int, index_location: str) -> dict:
    where = f"entry {position} of the index {index_location}"
    if not isinstance(raw, dict):
        raise MetadataError(f"{where} is not a JSON object")
    for key in ("name", "version"):
        if not isinstance(raw.get(key), str):
            raise MetadataError(f"{where} lacks a string {key!r}")
    name, version = raw["name"], raw["version"]
    where = f"entry {name}@{version} of the index {index_location}"
    if not _NAME_RE.match(name) or not _VERSION_RE.match(version):
        raise MetadataError(f"{where}: name and version must be letters, digits, '_', '.', '+' or '-'")
    extra = raw.get("sources", [])
    if not isinstance(extra, list):
        raise MetadataError(f"{where}: 'sources' must be a list")
    if "url" in raw and "path" in raw or not ("url" in raw or "path" in raw or extra):
        raise MetadataError(f"{where} must have exactly one of 'url' and 'path' (and/or a 'sources' list)")
    for key in ("format", "description", "card"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise MetadataError(f"{where}: {key!r} must be a string")
    if raw.get("metadata") is not None and not isinstance(raw["metadata"], dict):
        raise MetadataError(f"{where}: 'metadata' must be a JSON object")
    sources = []
    if "url" in raw or "path" in raw:
        primary = {key: raw[key] for key in ("url", "path", "sha256", "sha256_prefix", "size") if key in raw}
        sources.append(_validate_source(primary, where, index_location))
    for number, item in enumerate(extra):
        sources.append(_validate_source(item, f"{where}, source {number}", index_location))

    entry = dict(raw)
    if raw.get("sha256") is not None:
        entry["sha256"] = raw["sha256"].lower()
    entry["_index"] = index_location
    entry["_sources"] = sources
    entry["_location"] = sources[0]["location"]
    entry["_location_kind"] = sources[0]["kind"]
    if entry.get("card"):
        try:
            card_kind, card = _resolve_reference(entry["card"], index_location)
        except ValueError as exc:
            raise MetadataError(f"{where}: {exc}") from exc
        entry["_card_url" if card_kind == "url" else "_card_path"] = card
    return entry


def _parse_index(text: str, index_location: str) -> list[dict]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"the index {index_location} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != INDEX_FORMAT:
        raise MetadataError(f'the index {index_location} must be a JSON object with "format": {INDEX_FORMAT}')
    models = document.get("models")
    if not isinstance(models, list):
        raise MetadataError(f"the index {index_location} lacks a 'models' list")
    return [_validate_entry(raw, i, index_location) for i, raw in enumerate(models)]


def load_index() -> list[dict]:
    """All entries of the bundled index and of the indexes named by ``GALSIM_HUB_INDEX``.

    Each returned entry is a copy of the index entry with these keys added: ``_index``
    (where the index was read from), ``_location`` and ``_location_kind`` (the model's
    absolute URL, ``"url"``, or absolute local path, ``"path"``) and, when the entry has a
    card, ``_card_url`` or ``_card_path``. Remote indexes are fetched with requests; the
    last copy is kept in the cache and used in offline mode or when the server is down.

    An extra index cannot add versions to a model of the bundled index: such entries are
    dropped with a warning. An extra index that cannot be read (missing, down, HTTP error,
    malformed) is skipped with a warning (a remote one falls back to its last good copy),
    so bundled and cached models keep resolving; a name it might have served is then reported
    as not found with the reason.

    Returns
    -------
    list of dict
        Entries in search order (bundled index first), duplicates of NAME@VERSION dropped.

    Raises
    ------
    MetadataError
        If the bundled index is malformed.
    """
    entries: list[dict] = []
    seen: set[tuple[str, tuple]] = set()
    bundled: set[str] = set()
    _skipped_indexes.clear()
    for position, location in enumerate(_index_locations()):
        if position == 0:
            index_entries = _parse_index(Path(location).read_text(encoding="utf-8"), location)
        else:
            try:
                index_entries, location = _extra_index_entries(location)
            except (DownloadError, MetadataError, HandleError) as exc:
                _skipped_indexes[location] = str(exc)
                warnings.warn(f"{exc}; this index is skipped (models of the other indexes still resolve)", stacklevel=2)
                continue
        for entry in index_entries:
            if position == 0:
                bundled.add(entry["name"])
            elif entry["name"] in bundled:
                warnings.warn(
                    f"the index {location} lists hub:{entry['name']}@{entry['version']}, a name of the "
                    "bundled index; it is ignored (an extra index cannot shadow a bundled model)",
                    stacklevel=2,
                )
                continue
            identity = (entry["name"], version_key(entry["version"]))
            if identity not in seen:
                seen.add(identity)
                entries.append(entry)
    return entries


def find_entry(name: str, version: str | None = None) -> dict:
    """The index entry of model NAME, the newest version unless VERSION is given.

    Parameters
    ----------
    name : str
        Model name, as in ``hub:NAME``.
    version : str, optional
        Version; compared numerically (``"1"`` matches ``"1.0"``).

    Returns
    -------
    dict
        The entry, as returned by `load_index`.

    Raises
    ------
    HandleError
        If no index lists NAME (close names and the searched indexes are given), or if
        NAME has no such VERSION (the available versions are given).
    """
    entries = load_index()
    candidates = [entry for entry in entries if entry["name"] == name]
    if not candidates:
        names = sorted({entry["name"] for entry in entries})
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        close += [n for n in names if n.lower() == name.lower() and n not in close]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        searched = ", ".join(loc for loc in _index_locations() if loc not in _skipped_indexes)
        skipped = "".join(f" Skipped index {loc}: {why}." for loc, why in _skipped_indexes.items())
        raise HandleError(
            f"no model named {name!r} in the hub.{hint} Known models: {', '.join(names) or 'none'}. "
            f"Indexes searched: {searched} (add more with {INDEX_ENV}=url-or-path[,...]).{skipped}"
        )
    if version is None:
        return max(candidates, key=lambda entry: version_key(entry["version"]))
    wanted = version_key(version)
    for entry in candidates:
        if entry["version"] == version or version_key(entry["version"]) == wanted:
            return entry
    available = sorted((entry["version"] for entry in candidates), key=version_key)
    raise HandleError(f"model {name!r} has no version {version!r}; available versions: {', '.join(available)}")


def _source_from_path(handle: str, path: Path, entry: dict | None = None, digests: dict | None = None) -> ModelSource:
    digests = digests or {}
    if path.is_dir():
        return ModelSource(handle, "directory", str(path), entry=entry)
    if not path.exists():
        raise HandleError(f"{handle!r}: {path} does not exist; {ACCEPTED_FORMS}")
    if not path.is_file() or not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise HandleError(f"{handle!r}: {path} is neither a directory nor a .tar.gz/.tgz archive; {ACCEPTED_FORMS}")
    return ModelSource(
        handle,
        "archive",
        str(path),
        sha256=digests.get("sha256"),
        size=digests.get("size"),
        entry=entry,
        sha256_prefix=digests.get("sha256_prefix"),
    )


def _entry_source(handle: str, entry: dict) -> ModelSource:
    """The first usable source of a hub entry, the others as its ``alternatives``."""
    built: list[ModelSource] = []
    problems: list[str] = []
    for item in entry["_sources"]:
        if item["kind"] == "path":
            try:
                built.append(_source_from_path(handle, Path(item["location"]), entry, item))
            except HandleError as exc:
                problems.append(str(exc))
            continue
        built.append(
            ModelSource(
                handle,
                item["kind"],
                item["location"],
                sha256=item["sha256"],
                size=item["size"],
                entry=entry,
                sha256_prefix=item["sha256_prefix"],
                files=item["files"],
            )
        )
    if not built:
        raise HandleError("; ".join(problems))
    return dataclasses.replace(built[0], alternatives=tuple(built[1:]))


def resolve(handle: str | os.PathLike) -> ModelSource:
    """Turn a handle into a `ModelSource`.

    Parameters
    ----------
    handle : str or os.PathLike
        ``hub:NAME``, ``hub:NAME@VERSION``, ``hf:ORG/REPO[@REVISION]``, an ``http(s)://`` URL of a ``.tar.gz``
        archive, a ``file://`` URL, a local model directory or a local ``.tar.gz``/``.tgz``.

    Returns
    -------
    ModelSource

    Raises
    ------
    HandleError
        If the handle is malformed, names no known model or version, or names a local path
        that does not exist or is not a directory or archive.
    """
    if isinstance(handle, os.PathLike):
        handle = os.fspath(handle)
    if not isinstance(handle, str):
        raise HandleError(f"a handle must be a string or a path, got {type(handle).__name__}")
    text = handle.strip()
    if not text:
        raise HandleError(f"empty handle; {ACCEPTED_FORMS}")
    if text.startswith("hub:"):
        return _entry_source(handle, find_entry(*parse_hub_handle(text)))
    if text.startswith(HF_PREFIX):
        repo_id, revision = parse_hf_handle(text)
        return ModelSource(handle, "hf", repo_id, revision=revision)
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https"):
        if not parsed.netloc:
            raise HandleError(f"malformed URL {handle!r}: no host; {ACCEPTED_FORMS}")
        return ModelSource(handle, "url", text)
    if parsed.scheme == "file":
        return _source_from_path(handle, Path(unquote(parsed.path)).resolve())
    if len(parsed.scheme) > 1:  # one letter is a Windows drive
        raise HandleError(f"unsupported handle {handle!r} (scheme {parsed.scheme!r}); {ACCEPTED_FORMS}")
    return _source_from_path(handle, Path(text).expanduser().resolve())
