"""The one HTTP layer of galsim-hub: cache downloads, remote indexes, publish, model cards.

One `requests.Session` per process with urllib3 ``Retry`` (refused connections and HTTP
429/500/502/503/504 answers to GET/HEAD are retried with exponential back-off), one
timeout policy (`galsim_hub.hub.settings.HTTP_TIMEOUT`) and a ``galsim-hub/VERSION``
User-Agent. `download` streams a file with a minimum rate and an optional total deadline,
and resumes a broken transfer with an HTTP ``Range`` request when the server accepts ranges.
Built on `galsim_hub.hub.settings` only (like huggingface_hub's ``utils/_http.py``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path, PurePosixPath

from galsim_hub._version import __version__
from galsim_hub.errors import DownloadError, is_local_write_error
from galsim_hub.hub import settings

__all__ = ["USER_AGENT", "session", "request", "download"]

USER_AGENT = f"galsim-hub/{__version__}"
_READ_SIZE = 1 << 16
_sessions: dict = {}


def session():
    """The process's `requests.Session` (a new one after a fork or a change of retry settings)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    key = (os.getpid(), settings.HTTP_RETRIES, settings.HTTP_BACKOFF)
    if key not in _sessions:
        retry = Retry(
            total=settings.HTTP_RETRIES,
            connect=settings.HTTP_RETRIES,
            read=0,
            status=settings.HTTP_RETRIES,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD"}),  # a PUT body may be a consumed stream
            backoff_factor=settings.HTTP_BACKOFF,
            raise_on_status=False,  # the last answer is returned and reported with its status
        )
        new = requests.Session()
        adapter = HTTPAdapter(max_retries=retry)
        new.mount("http://", adapter)
        new.mount("https://", adapter)
        new.headers["User-Agent"] = USER_AGENT
        _sessions.clear()
        _sessions[key] = new
    return _sessions[key]


def request(method: str, url: str, what: str, **kwargs):
    """Send one request through `session` with the timeout policy.

    Parameters
    ----------
    method, url : str
    what : str
        Start of error messages, naming the URL ("could not download the index URL").
    **kwargs
        Passed to `requests.Session.request` (``headers``, ``data``, ``stream``...).

    Returns
    -------
    requests.Response
        Whatever its status: callers decide what a 404 means.

    Raises
    ------
    DownloadError
        If the connection fails or times out (after the retries).
    """
    import requests

    kwargs.setdefault("timeout", settings.HTTP_TIMEOUT)
    try:
        return session().request(method, url, **kwargs)
    except requests.RequestException as exc:
        problem = "timed out" if _timed_out(exc) else "connection failed"
        raise DownloadError(f"{what}: {problem} ({exc})") from exc


def _timed_out(exc: BaseException) -> bool:
    """Whether a requests error is a time-out (urllib3 reports retried ones as connection errors)."""
    import requests
    import urllib3.exceptions

    if isinstance(exc, requests.Timeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    refused = isinstance(reason, urllib3.exceptions.NewConnectionError)  # a TimeoutError subclass
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not refused


class _Pace:
    """Enforce the total deadline and the minimum rate over a sliding window."""

    def __init__(self, url: str):
        self.url = url
        self.start = time.monotonic()
        self.deadline = settings.download_deadline()
        self.min_rate = settings.min_download_rate()
        self.window = settings.RATE_WINDOW
        self.samples: list[tuple[float, int]] = [(self.start, 0)]

    def timeout(self):
        """The request time-out: the policy's, with the read time-out cut to the time left
        before the deadline (so a stalled read cannot outlast it)."""
        timeout = settings.HTTP_TIMEOUT
        if self.deadline is None:
            return timeout
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        left = max(self.deadline - (time.monotonic() - self.start), 0.05)
        return (min(connect, left), min(read, left))

    def stalled(self, exc: BaseException) -> str:
        """What to say of a time-out: the deadline when it was reached, else the error."""
        if self.deadline is not None and time.monotonic() - self.start >= self.deadline - 0.05:
            return f"not finished after {self.deadline:g} s, the limit of {settings.DEADLINE_ENV}"
        return str(exc)

    def check(self, received: int) -> None:
        now = time.monotonic()
        if self.deadline is not None and now - self.start > self.deadline:
            raise DownloadError(
                f"could not download {self.url}: not finished after {self.deadline:g} s "
                f"({received} bytes received; the limit is {settings.DEADLINE_ENV})"
            )
        self.samples.append((now, received))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.pop(0)
        then, before = self.samples[0]
        if now - then >= self.window:
            rate = (received - before) / (now - then)
            if rate < self.min_rate:
                raise DownloadError(
                    f"could not download {self.url}: too slow, {rate:.0f} bytes/s over the last "
                    f"{now - then:.0f} s, below the minimum {self.min_rate:.0f} bytes/s "
                    f"(set {settings.MIN_RATE_ENV} to accept slower servers)"
                )


def _chunks(response):
    raw = response.raw
    if hasattr(raw, "read1"):  # urllib3 >= 2: returns as soon as some bytes arrived
        while True:
            chunk = raw.read1(_READ_SIZE, decode_content=False)
            if not chunk:
                return
            yield chunk
    else:
        yield from raw.stream(_READ_SIZE, decode_content=False)


class _Broken(Exception):
    """The transfer stopped early; ``resumable`` says whether a Range request may continue it."""

    def __init__(self, message: str, resumable: bool):
        super().__init__(message)
        self.resumable = resumable


class _Transfer:
    """What one download knows across its requests: the limit, the first answer's validators."""

    def __init__(self, url: str, limit: int, limit_source: str):
        self.url = url
        self.limit = limit
        self.limit_source = limit_source
        self.validator: str | None = None  # ETag (strong) or Last-Modified of the first answer
        self.total: int | None = None  # the full length, as first announced

    def check_size(self, size: int, what: str) -> None:
        if size > self.limit:
            raise DownloadError(
                f"could not download {self.url}: {what} {size} bytes, more than "
                f"{self.limit_source} ({self.limit} bytes)"
            )


def _range_start(response, received: int, transfer: _Transfer) -> bool:
    """Whether a 206 answer continues the file at ``received`` (Content-Range, same total)."""
    header = response.headers.get("Content-Range", "")
    try:
        unit, _, spec = header.partition(" ")
        span, _, total = spec.partition("/")
        start = int(span.split("-")[0])
        total_size = None if total.strip() == "*" else int(total)
    except ValueError:
        return False
    if unit.lower() != "bytes" or start != received:
        return False
    return transfer.total is None or total_size is None or total_size == transfer.total


def _receive(url: str, out, received: int, bar, pace: _Pace, advice: str, transfer: _Transfer) -> int:
    """One GET (a Range GET from ``received`` when > 0); append to ``out``; return the new count.

    A resumed request carries ``If-Range`` with the first answer's ETag or Last-Modified, so a
    file changed meanwhile is sent whole (200) and the download starts again; a 206 answer is
    used only when its ``Content-Range`` starts at the bytes already received.
    """
    import requests
    import urllib3.exceptions

    # Bytes as stored: no transfer compression (it would break ranges, and a server that labels
    # a .tar.gz "Content-Encoding: gzip" must not have it unpacked), read without decoding.
    headers = {"Accept-Encoding": "identity"}
    if received:
        headers["Range"] = f"bytes={received}-"
        if transfer.validator:
            headers["If-Range"] = transfer.validator
    what = f"could not download {url}"
    try:
        response = request("GET", url, what, stream=True, headers=headers, timeout=pace.timeout())
    except DownloadError as exc:
        raise DownloadError(f"{exc}.{advice}") from exc
    with response:
        if response.status_code >= 400:
            raise DownloadError(f"{what}: HTTP {response.status_code} {response.reason}.{advice}")
        if received and (response.status_code != 206 or not _range_start(response, received, transfer)):
            # The server ignored the range, the file changed, or the range is not the one asked
            # for: start again from the first byte.
            out.seek(0)
            out.truncate()
            bar.reset()
            received = 0
            if response.status_code == 206:
                response.close()
                transfer.validator = None
                return _receive(url, out, 0, bar, pace, advice, transfer)
        if not received:
            etag = response.headers.get("ETag", "")
            transfer.validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
        resumable = response.headers.get("Accept-Ranges", "").lower() == "bytes" or response.status_code == 206
        header = response.headers.get("Content-Length")
        announced = received + int(header) if header and header.isdigit() else None
        if announced is not None:
            transfer.check_size(announced, "the server announces")
            if not received:
                transfer.total = announced
            bar.total = announced
        try:
            for chunk in _chunks(response):
                out.write(chunk)
                received += len(chunk)
                transfer.check_size(received, "it sent")
                bar.update(len(chunk))
                pace.check(received)
        except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as exc:
            raise DownloadError(f"{what}: timed out after {received} bytes ({pace.stalled(exc)}).{advice}") from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise _Broken(f"the transfer broke off after {received} bytes ({exc})", resumable) from exc
        except OSError as exc:
            if is_local_write_error(exc):
                raise DownloadError(f"could not write the download of {url} to {out.name}: {exc.strerror}") from exc
            raise _Broken(f"the transfer broke off after {received} bytes ({exc})", resumable) from exc
        if announced is not None and received != announced:
            raise _Broken(f"got {received} bytes, the server announced {announced}", resumable)
    return received


def download(url: str, target: Path, *, progress: bool = False, size: int | None = None, advice: str = "") -> int:
    """Stream ``url`` into ``target``, resuming a broken transfer when the server accepts ranges.

    Parameters
    ----------
    url : str
    target : pathlib.Path
        File to write (replaced).
    progress : bool
        Show a tqdm progress bar on stderr.
    size : int, optional
        Expected size, for the progress bar when the server announces none.
    advice : str
        Appended to error messages (e.g. how to proceed without network).

    Returns
    -------
    int
        Bytes received.

    Raises
    ------
    DownloadError
        HTTP error status, refused connection, time-out, a transfer slower than
        `settings.min_download_rate` or longer than `settings.download_deadline`, or a
        truncated body that could not be resumed.
    """
    from tqdm.auto import tqdm

    pace = _Pace(url)
    received = 0
    resumes = 0
    name = PurePosixPath(url.split("?")[0]).name
    if size is not None:
        transfer = _Transfer(url, int(size), "the size the index gives")
    else:
        transfer = _Transfer(
            url, settings.max_extract_bytes(), f"the largest download allowed ({settings.MAX_EXTRACT_ENV})"
        )
    try:
        out = open(target, "wb")
    except OSError as exc:
        raise DownloadError(f"could not write the download of {url} to {target}: {exc.strerror}") from exc
    with out, tqdm(total=size, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
        while True:
            try:
                return _receive(url, out, received, bar, pace, advice, transfer)
            except _Broken as broken:
                out.flush()
                received = out.tell()
                if not broken.resumable or resumes >= settings.DOWNLOAD_RESUMES:
                    raise DownloadError(f"truncated download of {url}: {broken}.{advice}") from None
                resumes += 1
