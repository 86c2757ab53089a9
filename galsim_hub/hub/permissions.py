"""File modes that follow the user's umask.

`tempfile.mkdtemp` and `tempfile.mkstemp` create private folders (0700) and files (0600)
whatever the umask; a cache entry or a data set written through them stays private once
renamed into place, so a cache shared by a group (common on clusters) is unusable. These
helpers give such paths the modes ``mkdir`` and ``open`` would have given them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["current_umask", "follow_umask"]

_umask: int | None = None


def current_umask() -> int:
    """The process's umask (read once: reading it means setting it for an instant)."""
    global _umask
    if _umask is None:
        _umask = os.umask(0o022)
        os.umask(_umask)
    return _umask


def follow_umask(path: str | os.PathLike) -> None:
    """Give a folder ``0o777 & ~umask`` and a file ``0o666 & ~umask`` (as mkdir and open would)."""
    path = Path(path)
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & ~current_umask())
