"""Run-time settings: environment variable names, the cache root, offline mode, limits.

The bottom layer of the runtime (like huggingface_hub's ``constants.py``): it imports
nothing from galsim-hub, so `galsim_hub.hub.http`, `galsim_hub.hub.handle` and `galsim_hub.hub.cache`
can all read it without importing one another. Values read from the environment are read
on each call, so a test or a long-lived process may change them; the module-level numbers
are defaults that tests may monkeypatch.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = [
    "CACHE_ENV",
    "OFFLINE_ENV",
    "INDEX_ENV",
    "TOKEN_ENV",
    "MAX_EXTRACT_ENV",
    "MIN_RATE_ENV",
    "DEADLINE_ENV",
    "cache_root",
    "is_offline",
    "max_extract_bytes",
    "min_download_rate",
    "download_deadline",
]

CACHE_ENV = "GALSIM_HUB_CACHE"
OFFLINE_ENV = "GALSIM_HUB_OFFLINE"
INDEX_ENV = "GALSIM_HUB_INDEX"
TOKEN_ENV = "GALSIM_HUB_TOKEN"
MAX_EXTRACT_ENV = "GALSIM_HUB_MAX_EXTRACT_BYTES"
MIN_RATE_ENV = "GALSIM_HUB_MIN_RATE"
DEADLINE_ENV = "GALSIM_HUB_DOWNLOAD_DEADLINE"

#: HTTP (connect, read) timeouts in seconds, for every request galsim-hub makes.
HTTP_TIMEOUT = (10.0, 60.0)
#: Retries of refused connections and of HTTP 429/500/502/503/504 answers (urllib3 ``Retry``).
HTTP_RETRIES = 3
#: urllib3 back-off factor: waits of 0, 2x, 4x this many seconds between retries.
HTTP_BACKOFF = 0.5
#: Times a broken download is resumed (HTTP ``Range``) when the server supports it.
DOWNLOAD_RESUMES = 3
#: Default total uncompressed size an archive may expand to (bytes), and member count.
MAX_EXTRACT_BYTES = 16 * 1024**3
MAX_EXTRACT_MEMBERS = 100_000
#: Default minimum transfer rate (bytes/s), averaged over `RATE_WINDOW` seconds.
MIN_RATE = 10_000.0
RATE_WINDOW = 60.0
#: Seconds of waiting for another process's lock before saying who holds it (and again).
LOCK_REPORT_AFTER = 10.0
#: A work folder whose owner cannot be checked is stale after this many seconds.
STALE_WORK_SECONDS = 24 * 3600.0


def cache_root() -> Path:
    """The cache folder: ``$GALSIM_HUB_CACHE``, else the platform's user cache folder.

    Returns
    -------
    pathlib.Path
        Absolute path; it is created on first use by `galsim_hub.hub.cache.fetch`.
    """
    configured = os.environ.get(CACHE_ENV)
    root = Path(configured).expanduser().resolve() if configured else Path(platformdirs.user_cache_dir("galsim_hub"))
    if root.exists() and not root.is_dir():
        from galsim_hub.errors import HandleError

        where = f"{CACHE_ENV}={configured}" if configured else "the platform cache folder"
        raise HandleError(
            f"the galsim-hub cache {root} ({where}) is a file, not a folder: point {CACHE_ENV} to a folder"
        )
    return root


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to ``1``, ``true`` or ``yes`` (any case)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def is_offline() -> bool:
    """Whether ``GALSIM_HUB_OFFLINE`` is set to ``1``, ``true`` or ``yes`` (any case)."""
    return env_flag(OFFLINE_ENV)


def _number_from_env(name: str, default: float | None) -> float | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}={text!r} must be a positive finite number")
    return value


def max_extract_bytes() -> int:
    """Largest total size (bytes) an archive may expand to: ``$GALSIM_HUB_MAX_EXTRACT_BYTES`` or 16 GiB."""
    return int(_number_from_env(MAX_EXTRACT_ENV, MAX_EXTRACT_BYTES) or MAX_EXTRACT_BYTES)


def min_download_rate() -> float:
    """Minimum download rate in bytes/s over `RATE_WINDOW`: ``$GALSIM_HUB_MIN_RATE`` or 10 kB/s."""
    return float(_number_from_env(MIN_RATE_ENV, MIN_RATE) or MIN_RATE)


def download_deadline() -> float | None:
    """Total seconds one download may take: ``$GALSIM_HUB_DOWNLOAD_DEADLINE``, or None (no limit)."""
    return _number_from_env(DEADLINE_ENV, None)
