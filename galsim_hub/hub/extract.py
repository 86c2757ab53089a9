"""Safe extraction of model archives (``.tar.gz``).

A model archive needs regular files and folders only, so nothing else is extracted:
symbolic and hard links, devices, fifos and every other member type are refused, as are
absolute names, ``..`` components and names given twice. Files are written by this module
(``tarfile``'s own extraction and its filters are not used, so the behaviour is the same on
every Python from 3.10.0 on), each with ``O_EXCL | O_NOFOLLOW`` after checking that its
resolved folder lies inside the destination. The total size and the number of members are
capped (`galsim_hub.hub.settings.max_extract_bytes`, ``MAX_EXTRACT_MEMBERS``) before anything
exceeding them is written, and the bytes actually written are counted too.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath

from galsim_hub.errors import UnsafeArchiveError
from galsim_hub.hub import settings

__all__ = ["safe_extract"]

_CHUNK = 1 << 20
_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
}


def _check_name(member: tarfile.TarInfo, label: str) -> PurePosixPath | None:
    """The member's relative path, None for the archive root; refuse unsafe names."""
    name = member.name
    if "\\" in name or "\x00" in name:
        raise UnsafeArchiveError(f"{label}: member {name!r} has a backslash or NUL in its name")
    path = PurePosixPath(name)
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{label}: member {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{label}: member {name!r} contains '..'")
    parts = [part for part in path.parts if part not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _check_kind(member: tarfile.TarInfo, label: str) -> None:
    if member.isreg() or member.isdir():
        return
    kind = _KINDS.get(member.type, f"of tar type {member.type!r}")
    target = f" to {member.linkname!r}" if member.issym() or member.islnk() else ""
    raise UnsafeArchiveError(
        f"{label}: member {member.name!r} is {kind}{target}; model archives may hold only "
        "regular files and folders (links, devices and fifos are refused)"
    )


def _inside(path: Path, root: Path, label: str, name: str) -> None:
    resolved = Path(os.path.realpath(path))
    if resolved != root and root not in resolved.parents:
        raise UnsafeArchiveError(f"{label}: member {name!r} would be written outside the extraction folder")


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, budget: int, label: str) -> int:
    """Write one regular member with O_EXCL|O_NOFOLLOW; return the bytes written."""
    source = tar.extractfile(member)
    mode = 0o755 if member.mode & 0o111 else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(target, flags, mode)
    except FileExistsError:
        raise UnsafeArchiveError(f"{label}: member {member.name!r} appears twice in the archive") from None
    written = 0
    with os.fdopen(descriptor, "wb") as out:
        while True:
            chunk = source.read(_CHUNK)  # type: ignore[union-attr]  # a regular file's member
            if not chunk:
                break
            written += len(chunk)
            if written > budget:
                raise UnsafeArchiveError(
                    f"{label}: the archive expands beyond the limit of {settings.max_extract_bytes()} bytes "
                    f"(set {settings.MAX_EXTRACT_ENV} to allow more)"
                )
            out.write(chunk)
    return written


def safe_extract(tar: tarfile.TarFile, destination: Path, label: str) -> int:
    """Extract the regular files and folders of ``tar`` into the empty folder ``destination``.

    Parameters
    ----------
    tar : tarfile.TarFile
        An archive opened for reading.
    destination : pathlib.Path
        An existing, empty folder (the caller removes it when an error is raised).
    label : str
        How to name the archive in error messages.

    Returns
    -------
    int
        Total bytes written.

    Raises
    ------
    UnsafeArchiveError
        For a link, device, fifo or other special member, an absolute name, a ``..``
        component, a name given twice, a path leaving ``destination``, more members than
        ``settings.MAX_EXTRACT_MEMBERS`` or more bytes than `settings.max_extract_bytes`.
    """
    root = Path(os.path.realpath(destination))
    limit = settings.max_extract_bytes()
    total = count = 0
    for member in tar:
        count += 1
        if count > settings.MAX_EXTRACT_MEMBERS:
            raise UnsafeArchiveError(f"{label}: the archive has more than {settings.MAX_EXTRACT_MEMBERS} members")
        relative = _check_name(member, label)
        _check_kind(member, label)
        if relative is None:
            continue
        if member.isreg() and total + member.size > limit:
            raise UnsafeArchiveError(
                f"{label}: the archive expands beyond the limit of {limit} bytes "
                f"(set {settings.MAX_EXTRACT_ENV} to allow more)"
            )
        target = root.joinpath(*relative.parts)
        _inside(target.parent, root, label, member.name)
        if member.isdir():
            if target.exists() and not target.is_dir():
                raise UnsafeArchiveError(f"{label}: member {member.name!r} appears twice in the archive")
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
            _inside(target, root, label, member.name)
            continue
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _inside(target.parent, root, label, member.name)
        total += _write_file(tar, member, target, limit - total, label)
    _check_read_to_end(tar, count, label)
    return total


def _check_read_to_end(tar: tarfile.TarFile, members: int, label: str) -> None:
    """Read what follows the last member to the end of the stream: only zero padding may.

    ``tarfile`` ends its iteration silently at the first header it cannot parse, so a
    corrupted byte in the middle of an archive would otherwise pass for its end, with the
    members after it missing; reading the (decompressed) stream to its end also makes gzip
    check its CRC and length.
    """
    stream = tar.fileobj
    stream.seek(tar.offset)
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return
        if chunk.count(0) != len(chunk):
            raise UnsafeArchiveError(
                f"{label}: the archive is corrupt: an unreadable tar header follows its {members} "
                "readable member(s) (a damaged or incomplete download?)"
            )
