"""Reading and writing files without ever losing a user's data.

Every command follows four rules, all enforced here:

1. **An output is never an input.** :func:`check_not_inputs` compares the
   outputs with every path the command reads, named by the user or resolved
   by itself (default weights, mesh files, calibration pictures), as the file
   system sees them (relative paths, symbolic and hard links); no input may
   lie inside a folder the command prunes.
2. **Outputs are regular files inside the folder the user named**: a device
   node, FIFO, socket or folder is refused (:func:`check_output`), and a name
   read from a file must stay inside its folder (:func:`confined`).
3. **A file appears whole or not at all** (:func:`atomic_path`): written
   under a temporary name beside it, fsync'd and renamed into place; a full
   disk becomes :class:`DiskFull`, naming the file and the space needed.
4. **One writer per run folder** (:func:`folder_lock`), and inputs are read
   only from regular files (:func:`check_file`), so a FIFO cannot hang a batch.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath

try:
    import fcntl
except ImportError:  # Windows: the lock falls back to creating its file exclusively
    fcntl = None


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
    check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    except OSError as err:
        if is_disk_full(err):
            raise DiskFull(path, needed) from None
        raise OSError(err.errno, f"cannot write {path}: no file can be created in {path.parent} "
                                 f"({err.strerror})") from None
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


def check_not_inputs(inputs: Iterable, outputs: Iterable, folders: Iterable = ()) -> None:
    """Refuse to run when an output path names an input file, or cannot be written as a regular file.

    Args:
        inputs: Paths the command reads, named or resolved by itself (``None`` entries are skipped).
        outputs: Paths it would write (``None`` entries are skipped); each is checked by :func:`check_output`.
        folders: Folders whose contents the command replaces or removes (old checkpoints): no input may lie inside.

    Raises:
        ValueError: Naming the output, the input it would overwrite and what to do.
    """
    inputs = [Path(p) for p in inputs if p is not None]
    index = {key: path for path in reversed(inputs) for key in _identities(path)}  # the first input wins
    for output in (Path(p) for p in outputs if p is not None):
        check_output(output)
        clash = next((index[key] for key in _identities(output) if key in index), None)
        if clash is not None:
            same = "" if str(clash) == str(output) else f" (the same file as input {clash})"
            raise ValueError(f"output {output} is an input{same}: rfcore never writes over a file it reads; "
                             "choose another output path. Nothing was read or written.")
    for folder in (Path(p) for p in folders if p is not None):
        inside = next((p for p in inputs if is_inside(p, folder)), None)
        if inside is not None:
            raise ValueError(f"input {inside} lies inside {folder}, which this command prunes: copy it elsewhere "
                             "first. Nothing was read or written.")


def _identities(path) -> list:
    """What makes two paths one file (:func:`same_file`): the real path, and device and inode if it exists."""
    try:
        info = os.stat(path)
    except OSError:
        return [os.path.realpath(path)]
    return [os.path.realpath(path), (info.st_dev, info.st_ino)]


def is_inside(path, folder) -> bool:
    """True if ``path`` lies inside ``folder`` (after resolving links and ``..``)."""
    return Path(os.path.realpath(folder)) in Path(os.path.realpath(path)).parents


FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
              (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))
"""What a path that is not a regular file may be, for messages."""


def file_kind(path) -> str | None:
    """``None`` for a regular file or a missing path, else what it is (``"a FIFO (named pipe)"``); never blocks."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return next((name for test, name in FILE_KINDS if test(mode)), None if stat.S_ISREG(mode) else "not a file")


def check_output(path) -> None:
    """Refuse an output path that exists as anything but a regular file, or whose folder cannot be written.

    Raises:
        ValueError: Naming the path and what it is (a device node, FIFO, socket or folder), or the folder in
            its way or without write permission.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind is not None:
        raise ValueError(f"output {path} is {kind}, not a regular file: rfcore writes outputs only as regular "
                         "files; choose another path")
    folder = next((p for p in path.parents if os.path.lexists(p)), Path("."))
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: no permission to write into {folder}")


def name_problem(name: str) -> str | None:
    """Why a relative name read from a file (an image path of a label file) would leave its folder, or ``None``."""
    pure = PurePath(name)
    if pure.is_absolute() or pure.drive or name.startswith(("/", "\\")):
        return f"the image path {name!r} is absolute; it must be relative to the images folder"
    if ".." in pure.parts or ".." in name.split("\\"):
        return f"the image path {name!r} climbs out of the images folder ('..')"
    return None


def confined(folder, name: str, where: str = "") -> Path:
    """``folder / name`` for a relative ``name`` that stays inside ``folder`` (no absolute path, no ``..``).

    Args:
        folder: The folder the user named.
        name: A relative name, e.g. an image path read from a label file.
        where: Where the name was read (``"label.txt:12"``), for the message.

    Raises:
        ValueError: Naming ``where`` and the name.
    """
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"{where + ': ' if where else ''}{problem}; nothing is written outside {folder}")
    return Path(folder) / name


def check_file(path, what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it names an existing regular file (checked without opening it).

    Args:
        path: The file.
        what: What it should be, for the message ("an image", "a video").

    Raises:
        IsADirectoryError: If it is a directory.
        FileNotFoundError: If it does not exist.
        ValueError: If it is a device node, FIFO or socket, which could block or never end.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    kind = file_kind(path)
    if kind is not None:
        raise ValueError(f"{path} is {kind}, not {what}: rfcore reads only regular files")
    return path


def load_plain_tensors(path):
    """``torch.load`` of a PyTorch checkpoint that may hold only tensors and plain containers (``weights_only``).

    Raises:
        ValueError: For a file holding other Python objects (loading them could run code from the file: the
            message says so and never suggests loading it another way), or one that is not a checkpoint.
        OSError: If the file cannot be read.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path} holds Python objects besides tensors, and loading them could run code hidden in "
                         "the file: rfcore refused it; never load checkpoint files from sources you do not trust "
                         "(ask for safetensors instead)") from None
    except OSError:
        raise
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a PyTorch checkpoint ({first_line})") from None


# ---------------------------------------------------------------- one writer per folder


LOCK_FILE = ".rfcore.lock"
"""The lock file :func:`folder_lock` keeps in a folder while a command writes there; it holds the writer's PID."""


class FolderBusy(RuntimeError):
    """Another process holds the lock of a folder; the message names it and its PID."""


@contextmanager
def folder_lock(folder, command: str) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing, removed if left empty) for the block; another holder stops us at once.

    The lock is an advisory ``flock`` on :data:`LOCK_FILE` (released by the kernel when its process dies,
    so a killed run leaves no stale lock); where ``fcntl`` is missing the file is created exclusively.

    Args:
        folder: The folder the command writes to.
        command: The command, for the message (``"rfcore train"``).

    Raises:
        FolderBusy: Naming the folder and the PID of the other process.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = _acquire(path, folder, command)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
        if created and not any(folder.iterdir()):
            folder.rmdir()  # a command refused before writing leaves no empty folder behind


def _acquire(path: Path, folder: Path, command: str) -> int:
    """An open descriptor of the lock file, locked by this process."""
    while True:
        if fcntl is None:
            try:
                return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise _busy(path, folder, command) from None
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return fd  # a file system without locks (some network mounts): go on unlocked
            os.close(fd)
            raise _busy(path, folder, command) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file between our open and our lock: lock the new one


def _busy(path: Path, folder: Path, command: str) -> FolderBusy:
    try:
        pid = path.read_text().strip() or "unknown"
    except OSError:
        pid = "unknown"
    return FolderBusy(f"{folder} is in use by another {command} (PID {pid}): wait for it to finish or stop it, "
                      "or choose another --out")
