"""Per-entry locks that say who holds them, and work folders that say who owns them.

File locks serialise processes that build the same cache entry, but they are unreliable on
some network file systems (NFS, Lustre), so cache correctness does not rest on them: a work
folder records its owner (host, pid, start time) and is swept only when that owner is gone
(same host, dead pid) or when it is older than `settings.STALE_WORK_SECONDS`.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import filelock

from galsim_hub.hub import settings
from galsim_hub.hub.permissions import follow_umask

__all__ = ["EntryLock", "new_work_folder", "sweep_stale_work"]

OWNER_FILE = ".owner.json"
logger = logging.getLogger("galsim_hub")


def _owner_record(what: str = "") -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "what": what,
    }


def _describe(owner_file: Path) -> str:
    try:
        owner = json.loads(owner_file.read_text(encoding="utf-8"))
        return f"process {owner['pid']} on {owner['host']} holds it since {owner['started']}" + (
            f" ({owner['what']})" if owner.get("what") else ""
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "its holder did not say who it is"


class EntryLock:
    """The lock of one cache entry; while waiting it reports who holds it.

    Parameters
    ----------
    root : pathlib.Path
        The cache root (locks live in ``root/.locks``).
    key : str
        The entry's key.
    what : str
        What the holder is doing (e.g. the URL it downloads), told to waiting processes.
    """

    def __init__(self, root: Path, key: str, what: str = ""):
        folder = root / ".locks"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unwritable(root, exc) from exc
        self.path = folder / f"{key}.lock"
        self.owner_file = folder / f"{key}.owner.json"
        self.key = key
        self.what = what
        self._lock = filelock.FileLock(str(self.path))

    def __enter__(self) -> EntryLock:
        waited, interval = 0.0, settings.LOCK_REPORT_AFTER
        while True:
            try:
                self._lock.acquire(timeout=interval)
                break
            except PermissionError as exc:
                raise _unwritable(self.path.parent.parent, exc) from exc
            except filelock.Timeout:
                waited += interval
                interval *= 2  # report after 10 s, 30 s, 70 s...: not a line every few seconds
                logger.warning(
                    "galsim-hub: waiting %.0f s for the cache entry %s: %s (lock %s)",
                    waited,
                    self.key[:12],
                    _describe(self.owner_file),
                    self.path,
                )
        tmp = self.owner_file.with_name(f".{self.owner_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_owner_record(self.what)), encoding="utf-8")
        os.replace(tmp, self.owner_file)
        return self

    def __exit__(self, *exc_info) -> None:
        self.owner_file.unlink(missing_ok=True)
        self._lock.release()


def _unwritable(root: Path, exc: OSError):
    """The error of a cache folder that cannot be written (read-only, not ours, disk full)."""
    from galsim_hub.errors import HandleError

    return HandleError(
        f"the galsim-hub cache {root} cannot be written ({exc.strerror}); point "
        f"{settings.CACHE_ENV} to a folder you can write, or fetch into one and "
        "copy the entry"
    )


def new_work_folder(root: Path, key: str) -> Path:
    """A fresh ``.tmp-KEY-XXXX`` folder in ``root`` that records its owner."""
    folder = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
    follow_umask(folder)  # the entry it becomes is shared like the cache folder itself
    (folder / OWNER_FILE).write_text(json.dumps(_owner_record()), encoding="utf-8")
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(folder: Path) -> bool:
    """Whether a work folder's owner is gone: a dead pid on this host, or older than the limit.

    The age limit applies to every folder, also to one whose pid was reused by another process.
    """
    try:
        age = time.time() - folder.stat().st_mtime
        owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return time.time() - folder.stat().st_mtime > settings.STALE_WORK_SECONDS
        except OSError:
            return False
    if age > settings.STALE_WORK_SECONDS:
        return True
    return host == socket.gethostname() and not _alive(pid)


def sweep_stale_work(root: Path, key: str | None = None) -> int:
    """Remove the stale work folders of ``key`` (of every key when None); return how many."""
    removed = 0
    for folder in root.glob(f".tmp-{key}-*" if key else ".tmp-*"):
        if folder.is_dir() and is_stale(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
