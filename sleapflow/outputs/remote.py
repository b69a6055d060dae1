"""URLs as paths: telling them apart, fsspec file systems, and outputs staged locally then uploaded.

An output named by a URL (``-o s3://bucket/prefix/out.slp``) is written the usual way (checked,
locked, journaled, saved atomically) to a local staging folder, then uploaded when the run has
succeeded: an object store replaces an existing object only once an upload completes (a single
PUT, or a multipart upload's final commit), so a failed or interrupted run leaves it unchanged.
There is no lock on the remote side: two machines writing the same URL race, the last upload
wins. fsspec (and s3fs for ``s3://``) come with the ``remote`` extra and are imported only here,
inside functions.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from sleapflow.errors import ConfigError, OutputWriteError

__all__ = (
    "HTTP_SCHEMES", "RemoteOutput", "is_url", "remote_fs", "remote_join", "remote_name",
    "stage_remote_output", "upload_outputs", "url_scheme",
)


_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://")
HTTP_SCHEMES = ("http", "https")
_INSTALL = 'install the remote extra: python -m pip install "sleapflow[remote]"'


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return isinstance(path, str) and _URL_RE.match(path) is not None


def url_scheme(url: str) -> str:
    match = _URL_RE.match(url)
    return match["scheme"].lower() if match else ""


def remote_name(url: str) -> str:
    """The last path component of a URL (its query and fragment left out)."""
    return PurePosixPath(urlsplit(url).path).name


def remote_join(folder_url: str, name: str) -> str:
    """``name`` inside the URL folder ``folder_url`` (``Path`` would fold ``s3://`` to ``s3:/``)."""
    return folder_url.rstrip("/") + "/" + name


def remote_fs(url: str) -> tuple[Any, str]:
    """The fsspec file system for ``url`` and the path within it; credentials come from the
    environment as each file system reads them (for S3: ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ...)."""
    try:
        import fsspec
    except ImportError:
        raise ConfigError(f"{url!r} is a URL; reading and writing URLs needs fsspec: "
                          f"{_INSTALL}") from None
    try:
        # A fresh instance: fsspec caches instances and their listings, and a listing cached
        # before an object was written would hide it from a later check in this process.
        return fsspec.core.url_to_fs(url, skip_instance_cache=True)
    except ImportError as exc:
        raise ConfigError(f"{url!r}: the {url_scheme(url)}:// file system is not installed "
                          f"({exc}); {_INSTALL}") from None
    except ValueError as exc:
        raise ConfigError(f"{url!r}: unknown URL scheme {url_scheme(url)!r} ({exc})") from None


@dataclass(frozen=True)
class RemoteOutput:
    """An output URL and the local file the run writes first."""

    #: The ``.slp`` URL the user gave (the other formats go beside it).
    url: str
    #: Where the run writes it before the upload.
    local: Path

    def url_of(self, local_file: Path) -> str:
        """The URL a file written beside :attr:`local` is uploaded to."""
        return remote_join(self.url.rsplit("/", 1)[0], local_file.name)


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def stage_remote_output(url: str) -> RemoteOutput:
    """Check that ``url`` can take an output (a writable scheme, an existing bucket, not a
    folder) and name its local staging file.

    The staging folder is named after the URL, so an interrupted run's journal is found again
    by ``--resume`` on the same machine (and the usual lock keeps two runs on this machine
    apart).
    """
    if url_scheme(url) in HTTP_SCHEMES:
        raise ConfigError(f"-o {url!r}: outputs cannot be written to http(s) URLs; give a "
                          "local path or an s3:// URL (with an http(s) input, pass -o)")
    name = remote_name(url)
    if not name or url.endswith("/"):
        raise ConfigError(f"-o {url!r} names no file; end it with the output's name, e.g. "
                          f"{remote_join(url, 'out.slp')!r}")
    fs, path = remote_fs(url)
    root = path.split("/", 1)[0]
    try:
        if root and "/" in path and not fs.exists(root):
            raise ConfigError(f"-o {url!r}: the bucket {root!r} does not exist (or these "
                              "credentials cannot see it); create it or fix the URL")
        if fs.isdir(path):
            raise ConfigError(f"-o {url!r} is a folder; give a file name inside it")
    except ConfigError:
        raise
    except PermissionError as exc:
        raise ConfigError(f"-o {url!r}: access denied ({_reason(exc)}); check the credentials "
                          "(AWS_ACCESS_KEY_ID, AWS_PROFILE, ...)") from None
    except Exception as exc:  # botocore/aiohttp errors: no credentials, no connection
        raise ConfigError(f"-o {url!r} cannot be checked: {_reason(exc)}") from None
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"sleapflow-remote-{os.getuid()}" / digest
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create the staging folder {str(folder)!r} for "
                               f"{url!r}: {exc.strerror or exc}") from None
    return RemoteOutput(url=url, local=folder / name)


def upload_outputs(files: Sequence[Path], remote: RemoteOutput) -> list[str]:
    """Upload a finished run's files (blocking: call from a worker thread), the ``.slp`` last
    so that its presence means the other formats are there too; each local copy is removed
    once uploaded. Returns the URLs written."""
    ordered = sorted(files, key=lambda p: p.suffix == ".slp")
    fs, _ = remote_fs(remote.url)
    written = []
    for local in ordered:
        url = remote.url_of(local)
        try:
            fs.put_file(local.as_posix(), remote_fs(url)[1])
        except Exception as exc:  # any transport or service error: the object is unchanged
            raise OutputWriteError(f"cannot upload {url!r}: {_reason(exc)}; the existing object "
                                   f"(if any) is unchanged, the output is kept in "
                                   f"{str(local)!r}") from None
        local.unlink(missing_ok=True)
        written.append(url)
    return written
