"""Video inputs named by URL: checked before planning, and opened for PyAV without a full download.

``http(s)://`` URLs go to FFmpeg's own HTTP client (it streams, and seeks with range requests
where the server allows them). Every other scheme fsspec knows (``s3://``, ``gs://``, ``az://``,
...) is opened as an fsspec file object with a read-ahead cache, which PyAV reads and seeks in
like a local file: only the bytes the decoder asks for are fetched. Only video files are read
from URLs; labels files, HDF5 and image folders must be local.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from sleapflow.errors import ConfigError, InputNotFoundError, VideoDecodeError
from sleapflow.outputs.remote import HTTP_SCHEMES, is_url, remote_fs, url_scheme

__all__ = ("BLOCK_SIZE", "HTTP_TIMEOUT_S", "check_remote_input", "is_url", "open_remote", "remote_suffix")


#: Seconds to wait for a server to answer (connecting, or a read that stalls): a hung server
#: fails the run with a message instead of blocking it forever.
HTTP_TIMEOUT_S = 60.0
#: Bytes fetched per request from an object store: large enough that sequential decoding makes
#: few requests, small enough that a seek wastes little.
BLOCK_SIZE = 4 << 20


def remote_suffix(url: str) -> str:
    """The lower-case suffix of a URL's path (``.mp4``), its query left out."""
    return PurePosixPath(urlsplit(url).path).suffix.lower()


def _check_http(url: str) -> None:
    # A one-byte GET rather than HEAD: presigned URLs are signed for GET only.
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S):
            pass
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response's socket
        if exc.code in (404, 410):
            raise InputNotFoundError(f"input not found: {url!r} (HTTP {exc.code})") from None
        if exc.code in (401, 403):
            raise InputNotFoundError(f"input {url!r} cannot be read: HTTP {exc.code} "
                                     f"{exc.reason}; check the URL's credentials") from None
        raise VideoDecodeError(f"input {url!r} cannot be read: HTTP {exc.code} "
                               f"{exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise InputNotFoundError(f"input {url!r} cannot be reached: {reason}") from None


def check_remote_input(url: str) -> None:
    """Refuse a URL input that does not exist, cannot be reached or is a folder (blocking)."""
    if url_scheme(url) in HTTP_SCHEMES:
        _check_http(url)
        return
    fs, path = remote_fs(url)
    try:
        info = fs.info(path)
    except FileNotFoundError as exc:
        detail = str(exc) if "bucket" in str(exc).lower() else "no such object"
        raise InputNotFoundError(f"input not found: {url!r} ({detail})") from None
    except PermissionError as exc:
        raise InputNotFoundError(f"input {url!r} cannot be read: access denied ({exc}); check "
                                 "the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...)") from None
    except Exception as exc:  # botocore/aiohttp errors: no credentials, no connection
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputNotFoundError(f"input {url!r} cannot be reached: {first[:200]}") from None
    if info.get("type") == "directory":
        raise ConfigError(f"-i {url!r} is a folder; remote inputs are single video files "
                          "(list them with several -i, or copy the folder locally)")


def open_remote(url: str) -> tuple[Any, Any]:
    """What to hand ``av.open`` for ``url`` (the URL itself, or a file object) and the file
    object to close after the container (None for http(s))."""
    if url_scheme(url) in HTTP_SCHEMES:
        return url, None
    fs, path = remote_fs(url)
    try:
        handle = fs.open(path, "rb", block_size=BLOCK_SIZE, cache_type="readahead")
    except FileNotFoundError:
        raise InputNotFoundError(f"input not found: {url!r}") from None
    except OSError as exc:
        raise VideoDecodeError(f"cannot open {url!r}: {exc}") from exc
    return handle, handle
