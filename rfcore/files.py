"""Writing files without ever losing a user's data.

Two rules hold for every file rfcore writes:

1. **An output is never an input.** Before a command reads or writes
   anything, :func:`check_not_inputs` compares its output paths with its
   input paths as the file system sees them: relative paths, symbolic links
   and hard links (same device and inode) all count, and a clash stops the
   command with a message naming both.
2. **A file appears whole or not at all.** :func:`atomic_path` hands out a
   temporary name in the target's folder; only when the block that writes
   it ends without error is the file flushed to disk (``fsync``), renamed
   over the target and the folder flushed too, so a crash, a kill or a full
   disk leaves the old file or nothing, never a partial one.
   :func:`write_bytes` and :func:`write_text` are the common cases; images,
   videos, ONNX models and safetensors files go through the same helper.

A full disk (``ENOSPC``) becomes :class:`DiskFull`, whose message names the
file and the space that was needed.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class DiskFull(OSError):
    """No space left on the device while writing ``path``; the old file (if any) is untouched.

    Attributes:
        path: The file being written.
        needed: Bytes it needed, or ``None`` when unknown.
    """

    def __init__(self, path, needed: int | None = None) -> None:
        self.path, self.needed = Path(path), needed
        size = "" if needed is None else f" (needed {format_bytes(needed)})"
        super().__init__(errno.ENOSPC, f"no space left on the device while writing {self.path}{size}; "
                         "the file was not changed: free some space and run again")

    def __str__(self) -> str:
        return self.strerror


def format_bytes(count: int) -> str:
    """``"512 B"``, ``"3.2 MB"``, ``"1.4 GB"`` (powers of 1000)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def is_disk_full(err: BaseException) -> bool:
    """True for an ``OSError`` with ``errno.ENOSPC`` (or ``EDQUOT``, a full quota)."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def fsync_dir(folder) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path) -> None:
    """Flush a file's contents to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path, needed: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` that becomes ``path`` when the block ends without error.

    The temporary file is hidden (``.NAME.XXXX.SUFFIX``) and keeps the
    suffix, so writers that choose the format from it (OpenCV) still work.
    On success it is fsync'd, given mode 0644, renamed over ``path`` and the
    folder fsync'd; on any error it is removed and ``path`` is untouched.

    Args:
        path: The destination; parent folders are created.
        needed: Bytes the write needs, for the :class:`DiskFull` message.

    Yields:
        The temporary path to write.

    Raises:
        DiskFull: If the device fills up while writing or flushing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_file(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        if is_disk_full(err) and not isinstance(err, DiskFull):
            raise DiskFull(path, needed) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`); returns ``path`` as a Path."""
    with atomic_path(path, len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path`` as a Path."""
    return write_bytes(path, text.encode("utf-8"))


def append_line(path, line: str) -> None:
    """Append one line (a newline is added) and flush it, so a crash loses at most that line.

    Raises:
        DiskFull: If the device is full; the line may then be torn, which
            readers of the file detect (see :func:`rfcore.train.log.parse_log`).
    """
    data = line + "\n"
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(data)
            f.flush()
    except OSError as err:
        if is_disk_full(err):
            raise DiskFull(path, len(data.encode())) from None
        raise


# ---------------------------------------------------------------- outputs that are inputs


def same_file(a, b) -> bool:
    """True if two paths name one file: same real path (symlinks, ``..``), or same device and inode (hard links)."""
    a, b = Path(a), Path(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_not_inputs(inputs: Iterable, outputs: Iterable) -> None:
    """Refuse to run when an output path names an input file.

    Args:
        inputs: Paths the command reads (``None`` entries are skipped).
        outputs: Paths it would write (``None`` entries are skipped).

    Raises:
        ValueError: Naming the output, the input it would overwrite and what to do.
    """
    inputs = [Path(p) for p in inputs if p is not None]
    for output in (Path(p) for p in outputs if p is not None):
        clash = next((p for p in inputs if same_file(p, output)), None)
        if clash is not None:
            same = "" if str(clash) == str(output) else f" (the same file as input {clash})"
            raise ValueError(f"output {output} is an input{same}: rfcore never writes over a file it reads; "
                             "choose another output path. Nothing was read or written.")


def check_file(path, what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it names an existing file.

    Args:
        path: The file.
        what: What it should be, for the message ("an image", "a video").

    Raises:
        IsADirectoryError: If it is a directory.
        FileNotFoundError: If it does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return path
