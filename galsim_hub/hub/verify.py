"""Digests that identify downloaded files: sha256 of archives, git blob ids of plain files.

A git blob id is ``sha1(b"blob <size>\\0" + content)``: the id git itself gives a file, so a
file committed to a git repository (and served by its raw-file URLs) can be verified
against the id listed at a fixed commit. A Git LFS pointer (what a repository serves once
its LFS bandwidth is used up) is recognised and named as such.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from galsim_hub.errors import ChecksumError, DownloadError

__all__ = ["file_sha256", "git_blob_sha1", "check_not_lfs_pointer", "check_not_html", "check_archive", "check_blob"]

_CHUNK = 1 << 20
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """Hex git blob id of a file: ``sha1(b"blob %d\\0" % size + content)``."""
    digest = hashlib.sha1(b"blob %d\0" % Path(path).stat().st_size)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_not_lfs_pointer(path: Path, origin: str) -> None:
    """Raise `DownloadError` when ``path`` holds a Git LFS pointer instead of the real file."""
    if path.stat().st_size < 1024:
        with open(path, "rb") as stream:
            if stream.read(len(_LFS_POINTER)) == _LFS_POINTER:
                raise DownloadError(
                    f"{origin} served a Git LFS pointer, not the file (the repository's LFS bandwidth "
                    "may be used up); another source of the model may still work"
                )


def check_not_html(path: Path, origin: str) -> None:
    """Raise `DownloadError` when ``path`` holds a web page (an error or login page), not a file."""
    with open(path, "rb") as stream:
        start = stream.read(512).lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        raise DownloadError(
            f"{origin} sent a web page, not a model archive (an error, login or redirect page of the server?)"
        )


def check_archive(path: Path, origin: str, sha256: str | None, prefix: str | None, size: int | None) -> tuple[str, int]:
    """Check an archive's size, sha256 (or its known prefix); return ``(sha256, size)``.

    Raises
    ------
    DownloadError
        If the size differs (named "truncated" when smaller) or the file is an LFS pointer.
    ChecksumError
        If the sha256 differs from ``sha256`` or does not start with ``prefix``.
    """
    actual_size = path.stat().st_size
    check_not_html(path, origin)
    if size is not None and actual_size != size:
        check_not_lfs_pointer(path, origin)
        problem = "truncated" if actual_size < size else "wrong size of"
        raise DownloadError(f"{problem} archive {origin}: {actual_size} bytes, the index says {size}")
    actual = file_sha256(path)
    if sha256 and actual != sha256.lower():
        check_not_lfs_pointer(path, origin)
        raise ChecksumError(f"sha256 mismatch for {origin}: expected {sha256.lower()}, got {actual}")
    if prefix and not actual.startswith(prefix.lower()):
        check_not_lfs_pointer(path, origin)
        raise ChecksumError(f"sha256 mismatch for {origin}: expected a digest starting {prefix.lower()}, got {actual}")
    return actual, actual_size


def check_blob(path: Path, origin: str, blob: str, size: int | None) -> int:
    """Check one file of a multi-file source by size (when known) and git blob id; return its size."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        check_not_lfs_pointer(path, origin)
        raise DownloadError(f"wrong size of {origin}: {actual_size} bytes, the index says {size}")
    actual = git_blob_sha1(path)
    if actual != blob:
        check_not_lfs_pointer(path, origin)
        raise ChecksumError(f"git blob id mismatch for {origin}: expected {blob}, got {actual}")
    return actual_size
