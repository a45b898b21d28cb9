"""Resumable HTTP reading: `HttpStream`, a read-once byte stream that survives dropped connections.

`HttpStream` reads an HTTP resource once, front to back, hashing every byte once (MD5). A
dropped connection is resumed at the byte already read (HTTP ``Range``), so whoever reads the
stream (a file, or the gzip and tar decoders of `heldout.release.tar`) sees each byte once; a server
that ignores ``Range`` is read again from byte 0 and the bytes already read are skipped.

Every response is checked before its bytes are used: a ``206`` must carry a ``Content-Range``
that starts at or before the requested byte (earlier bytes are skipped), a ``200`` to a ranged
request means the server ignored ``Range``, a ``416`` means the file is complete only when its
``Content-Range: bytes */N`` equals what was read, and a change of size or ``ETag`` between
requests means the file changed on the server. A connection cut mid-body (the body ends before
its ``Content-Length``) is retried with backoff, up to `HttpOptions.max_retries` attempts in a
row without progress; then `DownloadError`. Comparing the MD5 with the expected one is the
caller's part (`heldout.release.download`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import io
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from heldout import __version__
from heldout.errors import DownloadError, InputError
from heldout.release.archives import BASE_URL, GCS_URL
from heldout.release.progress import byte_bar

#: HTTP statuses worth retrying (the server or a proxy is busy or failing for now).
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class HttpOptions:
    """How to talk to the server.

    Attributes:
      chunk_size: bytes per read from the connection and per copy into a file; the memory used
        by streaming extraction is a small multiple of it.
      max_retries: attempts in a row that may fail without reading a new byte before giving up.
      retry_wait: seconds before the first retry, doubled each time (at most 60 s).
      timeout: socket timeout in seconds.
    """

    chunk_size: int = 1 << 20
    max_retries: int = 5
    retry_wait: float = 2.0
    timeout: float = 60.0


class HttpStream(io.RawIOBase):
    """A read-once byte stream of an HTTP resource that survives dropped connections.

    `pos` counts the bytes delivered (the archive offset); `md5` hashes exactly those bytes, each
    once. A lost connection is resumed with ``Range: bytes=<pos>-``; the response is checked
    (see the module docstring) and bytes before `pos` are skipped. `on_restart`, when given,
    lets the caller drop what it has (a partial file) when the remote file changed, and the
    stream starts over from byte 0; without it, a change is an error.
    """

    def __init__(
        self,
        url: str,
        options: HttpOptions,
        *,
        start: int = 0,
        hasher=None,
        on_restart: Callable[[], None] | None = None,
        desc: str = "",
        progress: bool = True,
    ):
        super().__init__()
        self.url = url
        self.options = options
        self.pos = start
        self.md5 = hasher if hasher is not None else hashlib.md5()
        self.total: int | None = None
        self.events: list[str] = []
        self.bar = byte_bar(None, desc, progress, initial=start)
        self._on_restart = on_restart
        self._use_range = True
        self._resp: http.client.HTTPResponse | None = None
        self._resp_end: int | None = None
        self._complete = False
        self._etag: str | None = None
        self._failures = 0
        self._pos_at_failure = start

    # io.RawIOBase interface.
    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        self._close_response()
        self.bar.close()
        super().close()

    def open(self) -> None:
        """Makes the first request now (to learn the size) instead of on the first read."""
        while self._resp is None and not self._complete:
            self._connect()

    # Reading.
    def _read(self, n: int) -> bytes:
        while True:
            if self._complete:
                return b""
            if self._resp is None:
                self._connect()
                continue
            try:
                data = self._resp.read(min(n, self.options.chunk_size))
            except (OSError, http.client.HTTPException) as e:
                self._fail(f"connection lost at byte {self.pos:,} ({type(e).__name__}: {e})")
                continue
            if data:
                self.pos += len(data)
                self.md5.update(data)
                self.bar.update(len(data))
                return data
            if self._resp_end is not None and self.pos < self._resp_end:
                self._fail(
                    f"connection closed at byte {self.pos:,} of {self._resp_end:,}; resuming"
                )
                continue
            if self.total is not None and self.pos < self.total:
                # A 206 may cover less than the range asked for (RFC 7233): ask for the rest.
                self._close_response()
                continue
            self._close_response()
            self._complete = True
            if self.total is None:
                self.total = self.pos
            return b""

    def _connect(self) -> None:
        ranged = self.pos > 0 and self._use_range
        headers = {"User-Agent": f"heldout/{__version__}", "Accept-Encoding": "identity"}
        if ranged:
            headers["Range"] = f"bytes={self.pos}-"
        try:
            resp = urllib.request.urlopen(
                urllib.request.Request(self.url, headers=headers), timeout=self.options.timeout
            )
        except urllib.error.HTTPError as e:
            status, reason, response_headers = e.code, e.reason, e.headers
            e.close()
            if status == 416 and ranged:
                self._unsatisfiable(response_headers)
            elif status in RETRYABLE_STATUS:
                self._fail(f"HTTP {status} {reason} at byte {self.pos:,}")
            else:
                raise DownloadError(f"{self.url}: HTTP {status} {reason}") from None
            return
        except (OSError, http.client.HTTPException) as e:
            self._fail(f"request failed at byte {self.pos:,} ({type(e).__name__}: {e})")
            return

        status, headers_in = resp.status, resp.headers
        length = _int_header(headers_in.get("Content-Length"))
        if status == 206:
            content_range = headers_in.get("Content-Range")
            match = _CONTENT_RANGE.match(content_range or "")
            if not match:
                self._reject(resp, f"HTTP 206 with Content-Range {content_range!r}")
                return
            start, last = int(match.group(1)), int(match.group(2))
            total = None if match.group(3) == "*" else int(match.group(3))
            end = last + 1
            if (
                last < start
                or (total is not None and end > total)
                or (length is not None and length != end - start)
            ):
                self._reject(
                    resp, f"HTTP 206 with Content-Range {content_range!r}, Content-Length {length}"
                )
                return
        elif status == 200:
            start, total, end = 0, length, length
            if ranged:
                self._event(
                    f"server ignored Range (HTTP 200 for bytes={self.pos}-): reading from "
                    f"byte 0 again and skipping the {self.pos:,} bytes already read"
                )
        else:
            resp.close()
            raise DownloadError(f"{self.url}: unexpected HTTP {status} {resp.reason}")

        if not self._same_file(resp, headers_in.get("ETag"), total):
            return
        if start > self.pos:
            self._reject(
                resp, f"HTTP 206 starting at byte {start:,} when bytes={self.pos}- was asked"
            )
            return
        if start < self.pos and status == 206:
            self._event(
                f"HTTP 206 starting at byte {start:,} when bytes={self.pos}- was asked: "
                f"skipping {self.pos - start:,} bytes"
            )
        if self.total is not None and self.pos == self.total:
            resp.close()
            self._complete = True
            self._event(f"server reports {self.total:,} bytes: all already read")
            return
        skip = self.pos - start
        while skip:
            try:
                data = resp.read(min(skip, self.options.chunk_size))
            except (OSError, http.client.HTTPException) as e:
                data, reason = b"", f"{type(e).__name__}: {e}"
            else:
                reason = "connection closed"
            if not data:
                resp.close()
                self._fail(f"{reason} while skipping to byte {self.pos:,}")
                return
            skip -= len(data)
        self._resp, self._resp_end = resp, end

    def _same_file(self, resp, etag: str | None, total: int | None) -> bool:
        """Checks a response describes the file read so far; records its size and ETag."""
        changes = []
        if self._etag is not None and etag is not None and etag != self._etag:
            changes.append(f"ETag {self._etag} became {etag}")
        if self.total is not None and total is not None and total != self.total:
            changes.append(f"size {self.total:,} became {total:,} bytes")
        if total is not None and total < self.pos:
            changes.append(f"it has {total:,} bytes, fewer than the {self.pos:,} already read")
        if changes:
            resp.close()
            self._changed("; ".join(changes))
            return False
        if etag is not None:
            self._etag = etag
        if total is not None and self.total is None:
            self.total = total
            self.bar.total = total
            self.bar.refresh()
        return True

    def _unsatisfiable(self, headers) -> None:
        """HTTP 416 to ``Range: bytes=<pos>-``: complete when the server's size equals `pos`."""
        match = _UNSATISFIED_RANGE.match(headers.get("Content-Range") or "")
        total = int(match.group(1)) if match else self.total
        if total is not None and total == self.pos:
            self.total = total
            self.bar.total = total
            self.bar.refresh()
            self._complete = True
            self._event(f"HTTP 416: the server has {total:,} bytes, all already read")
        elif total is not None and total < self.pos:
            self._changed(f"HTTP 416: it has {total:,} bytes, fewer than the {self.pos:,} read")
        else:
            self._reject(None, f"HTTP 416 for bytes={self.pos}- without a usable size")

    def _reject(self, resp, reason: str) -> None:
        """A response that cannot be trusted: stop using ``Range`` and try again."""
        if resp is not None:
            resp.close()
        self._use_range = False
        self._fail(f"{reason}; asking for the whole file instead and skipping what was read")

    def _changed(self, reason: str) -> None:
        if self._on_restart is None:
            raise DownloadError(
                f"{self.url}: the file changed on the server during the download ({reason})"
            )
        self._on_restart()
        self.pos = 0
        self.md5 = hashlib.md5()
        self.total = None
        self._etag = None
        self.bar.reset(total=None)
        self._fail(f"the remote file changed ({reason}): starting over from byte 0")

    def _fail(self, reason: str) -> None:
        """Records a failed attempt; gives up after too many in a row, else waits."""
        self._close_response()
        if self.pos > self._pos_at_failure:
            self._failures = 0
        self._pos_at_failure = self.pos
        self._failures += 1
        if self._failures > self.options.max_retries:
            self.events.append(reason)
            of = f" of {self.total:,}" if self.total is not None else ""
            raise DownloadError(
                f"{self.url}: giving up after {self._failures} attempts in a row without "
                f"progress at byte {self.pos:,}{of}: {reason}"
            )
        wait = min(self.options.retry_wait * 2 ** (self._failures - 1), 60.0)
        retry = f"retry {self._failures} of {self.options.max_retries} in {wait:g} s"
        self._event(f"{reason} ({retry})")
        if wait > 0:
            time.sleep(wait)

    def _event(self, message: str) -> None:
        """Records a resume, restart or misbehaviour; shown above the progress bar."""
        self.events.append(message)
        if not self.bar.disable:
            self.bar.write(f"{self.bar.desc or self.url}: {message}", file=sys.stderr)

    def _close_response(self) -> None:
        if self._resp is not None:
            with contextlib.suppress(Exception):
                self._resp.close()
            self._resp = None
            self._resp_end = None


def _int_header(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def check_url(url: str) -> None:
    """Raises InputError (a ValueError) unless `url` is an ``http://`` or ``https://`` address
    (``gs://`` too)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if url.startswith(GCS_URL) or scheme == "gs":
        raise InputError(
            f"{url}: gs:// addresses need gsutil; use the HTTP address instead ({BASE_URL}<file>)"
        )
    if scheme not in ("http", "https"):
        raise InputError(f"{url}: not an http:// or https:// address")
