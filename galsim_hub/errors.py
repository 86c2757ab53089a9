"""Exceptions raised by galsim-hub.

Every error names the problem (the handle, the column, the file) so that a user can fix
the input without reading the source.
"""

import errno

#: errno values of a local disk that cannot take a write (full, quota, read-only, too large, not
#: ours): reported as such, never as a broken download or an unreadable archive.
LOCAL_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES)


def is_local_write_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an OS error of the local disk (see :data:`LOCAL_WRITE_ERRNOS`)."""
    return isinstance(exc, OSError) and exc.errno in LOCAL_WRITE_ERRNOS


class GalSimHubError(Exception):
    """Base class of all galsim-hub errors."""


class HandleError(GalSimHubError, ValueError):
    """A model handle is malformed or names no known model."""


class DownloadError(GalSimHubError, OSError):
    """A model archive could not be downloaded (network, HTTP status, truncation, offline)."""


class ChecksumError(DownloadError):
    """A downloaded or local archive does not match its expected sha256."""


class ConcurrentPublishError(DownloadError):
    """An HTTP hub's index changed between reading and writing it (HTTP 412): publish again."""


class UnsafeArchiveError(GalSimHubError, ValueError):
    """An archive holds links, devices, absolute paths, ``..`` components, or expands too much."""


class MetadataError(GalSimHubError, ValueError):
    """A model directory has missing, malformed or inconsistent metadata."""


class CatalogError(GalSimHubError, ValueError):
    """A catalog lacks a condition column or holds values the model cannot take."""


class ModelOutputWarning(UserWarning):
    """A model returned images that break the format's promise (e.g. negative pixels)."""
