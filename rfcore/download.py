"""Downloading a file over HTTP: resumed where it stopped, checked, and never seen half-written.

:func:`download` streams a URL into ``NAME.part`` beside the target. When
``NAME.part`` is already there (an earlier run was cut off), it asks the
server for the rest only (an HTTP ``Range`` request) and appends it; a
connection cut mid-way is resumed the same way, a few times. Only a file
whose checksum (:class:`Checksum`) matches is flushed to disk and renamed to
``NAME``; one that does not is removed and refused. A full disk keeps
``NAME.part`` for the next run and raises :class:`rfcore.files.DiskFull`.

Only the standard library speaks HTTP here; the command that calls this is
the only one in rfcore that touches the network, and only when asked to.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from rfcore.files import DiskFull, format_bytes, fsync_dir, fsync_file, is_disk_full
from rfcore.progress import progress_bar

CHUNK = 1 << 20
"""Bytes read from the connection at a time."""

USER_AGENT = "rfcore-download/1"
"""Sent with every request; some hosts refuse the default of urllib."""


@dataclass(frozen=True)
class Checksum:
    """A published digest of a file.

    Attributes:
        kind: A :mod:`hashlib` name, ``"md5"`` or ``"sha256"``.
        value: Its hexadecimal digest.
    """

    kind: str
    value: str

    def matches(self, path) -> bool:
        """True if the file's digest is :attr:`value`."""
        return file_digest(path, self.kind) == self.value.lower()


def file_digest(path, kind: str = "sha256") -> str:
    """Hexadecimal ``kind`` digest of a file, read in chunks."""
    digest = hashlib.new(kind)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class DownloadStopped(ConnectionError):
    """The connection failed before the whole file arrived; what arrived is kept in ``NAME.part``."""


class DownloadDiskFull(DiskFull):
    """The device filled up during a download; the bytes received are kept in ``NAME.part`` to resume from."""

    def __init__(self, part, needed: int | None = None) -> None:
        super().__init__(part, needed)
        size = "" if needed is None else f" ({format_bytes(needed)} more were needed)"
        self.strerror = (f"no space left on the device while downloading into {self.path}{size}; the bytes "
                         "received are kept there: free some space and run the command again to resume")


def part_path(target) -> Path:
    """Where :func:`download` keeps the bytes of ``target`` received so far."""
    target = Path(target)
    return target.with_name(target.name + ".part")


def download(url: str, target, checksum: Checksum | None = None, *, retries: int = 3, timeout: float = 30.0,
             progress: bool = True) -> Path:
    """Fetch ``url`` into ``target``, resuming ``target.part`` if an earlier run left one.

    Args:
        url: An ``http://`` or ``https://`` address.
        target: The file to create; its folder is created.
        checksum: Checked before ``target`` appears; ``None``: the caller
            checks the contents itself.
        retries: Times a cut connection is resumed before giving up.
        timeout: Seconds without data before a connection counts as cut.
        progress: Show a progress bar (bytes, rate) on stderr.

    Returns:
        ``target``.

    Raises:
        DownloadStopped: The server could not be reached or the connection
            kept failing; the bytes received stay in ``target.part``.
        ValueError: The server sent a web page, or a file whose checksum
            differs (then ``target.part`` is removed).
        DownloadDiskFull: The device filled up; ``target.part`` is kept.
    """
    target = Path(target)
    part = part_path(target)
    part.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, target.name, timeout, progress)
            break
        except DownloadStopped:
            if attempt == retries:
                raise
    fsync_file(part)
    if checksum is not None and not checksum.matches(part):
        found = file_digest(part, checksum.kind)
        part.unlink()
        raise ValueError(f"{target.name} from {url} has {checksum.kind} {found}, not the published "
                         f"{checksum.value}: it is damaged or another file, and was deleted; run the command again "
                         "to download it afresh")
    os.replace(part, target)
    fsync_dir(target.parent)
    return target


def _fetch(url: str, part: Path, name: str, timeout: float, progress: bool) -> None:
    """Append the missing bytes of ``url`` to ``part`` (one connection)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the part is complete
            return
        raise DownloadStopped(f"{url} answered HTTP {err.code} {err.reason} for {name}") from None
    except (urllib.error.URLError, OSError, HTTPException) as err:
        raise DownloadStopped(f"could not reach {url} for {name}: {getattr(err, 'reason', err)}") from None
    with response:
        if response.headers.get_content_type() == "text/html":
            raise ValueError(f"{url} sent a web page instead of {name} (a host's quota or sign-in page, or a moved "
                             "file): try again later, or download it by hand and pass its folder to --from")
        start = _resume_offset(response, have)
        total = _total_size(response, start)
        _stream(response, part, start, total, name, url, progress)


def _resume_offset(response, have: int) -> int:
    """Where the body of ``response`` starts in the file: ``have`` for a partial answer, 0 for a whole one."""
    if response.status != 206:
        return 0
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    if match is None or int(match.group(1)) != have:
        raise DownloadStopped(f"the server resumed at an unexpected place ({response.headers.get('Content-Range')}"
                              f", wanted byte {have})")
    return have


def _total_size(response, start: int) -> int | None:
    """The whole file's size in bytes, when the server says it."""
    length = response.headers.get("Content-Length")
    return None if length is None else start + int(length)


def _stream(response, part: Path, start: int, total: int | None, name: str, url: str, progress: bool) -> None:
    """Write the body of ``response`` to ``part`` from byte ``start`` on."""
    received = start
    bar = progress_bar(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=name, disable=not progress)
    try:
        with open(part, "r+b" if part.exists() else "wb") as out:
            out.seek(start)
            out.truncate()
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, HTTPException) as err:
                    raise _stopped(name, url, received, total, err) from None
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            out.flush()
    except OSError as err:
        if is_disk_full(err):
            raise DownloadDiskFull(part, None if total is None else total - received) from None
        raise
    finally:
        bar.close()
    if total is not None and received < total:
        raise _stopped(name, url, received, total, "the connection closed early")


def _stopped(name: str, url: str, received: int, total: int | None, reason) -> DownloadStopped:
    of = "" if total is None else f" of {format_bytes(total)}"
    return DownloadStopped(f"the download of {name} from {url} stopped at {format_bytes(received)}{of} ({reason}); "
                           "run the command again to resume it")
