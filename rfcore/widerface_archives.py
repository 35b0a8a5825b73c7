"""The WIDER FACE archives: where each comes from, how it is checked, and the folder rfcore arranges them in.

Five parts make up what training and evaluation need (:data:`PARTS`). Each
is one published zip archive, fetched with :func:`rfcore.download.download`
(or taken from a folder of archives already on disk) and unpacked into one
folder, laid out as biubug6/Pytorch_Retinaface's ``data/widerface``::

    DIR/train/images/   WIDER_train.zip       DIR/train/label.txt   retinaface_gt_v1.1.zip
    DIR/val/images/     WIDER_val.zip         DIR/val/label.txt     retinaface_gt_v1.1.zip
    DIR/ground_truth/   eval_tools.zip        DIR/wider_face_split/ wider_face_split.zip

The MD5s and Google Drive ids of the images and the official boxes are
torchvision's (``torchvision.datasets.WIDERFace``); the landmark annotations
and the toolbox have no published checksum and are checked by content: every
member's CRC-32 and the expected files. :func:`fetch_widerface` does the work;
:func:`find_widerface` says what a folder holds and what to run for the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rfcore.download import Checksum, DownloadStopped, download, part_path
from rfcore.files import DiskFull, fsync_dir, is_disk_full, write_text
from rfcore.progress import progress_bar

MIRROR_ENV = "RFCORE_WIDERFACE_MIRROR"
"""Environment variable naming a mirror URL that holds every archive under its official name (as ``--mirror``)."""

MANIFEST = "widerface.json"
"""File in the arranged folder listing the parts put there, their archives and files."""

HF_DATA = "https://huggingface.co/datasets/CUHK-CSE/wider_face/resolve/main/data/"
"""The Hugging Face copy of the official archives (same names and sizes as the Google Drive originals)."""

GOOGLE_DRIVE = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"

TRAIN_IMAGES = "train/images"
"""The training images in DIR, one folder per event."""
TRAIN_LABELS = "train/label.txt"
"""RetinaFace's training labels in DIR: boxes and five landmarks (:mod:`rfcore.data.widerface`)."""
VAL_IMAGES = "val/images"
"""The validation images in DIR, one folder per event."""
VAL_LABELS = "val/label.txt"
"""RetinaFace's validation labels in DIR: boxes only."""
GROUND_TRUTH = "ground_truth"
"""The toolbox's ``.mat`` ground truth in DIR (:data:`rfcore.evaluation.truth.MAT_FILES`)."""
BOXES = "wider_face_split"
"""The official box annotations in DIR."""

WIDER_LICENCE = "WIDER FACE terms: non-commercial research only (CC BY-NC-ND 4.0 on its Hugging Face copy)"


@dataclass(frozen=True)
class Part:
    """One archive and where its contents go.

    Attributes:
        name: The name a user asks for (``rfcore data widerface DIR --parts NAME``).
        archive: The official file name.
        what: What it holds, in a few words.
        contents: ``(path in the archive, path in DIR)`` pairs; a path ending
            in ``/`` is a folder.
        urls: Where it is fetched from, tried in order; ``{gdrive}`` stands
            for torchvision's Google Drive copy.
        source: Who publishes it, for ``--help``.
        licence: Its terms, for ``--help``.
        torchvision_md5: The MD5 comes from ``torchvision.datasets.WIDERFace``;
            otherwise the contents are checked.
        markers: Glob patterns in DIR that each match a file once the part is there.
    """

    name: str
    archive: str
    what: str
    contents: tuple[tuple[str, str], ...]
    urls: tuple[str, ...]
    source: str
    licence: str
    torchvision_md5: bool
    markers: tuple[str, ...]

    @property
    def outputs(self) -> tuple[str, ...]:
        """The paths in DIR it fills."""
        return tuple(dest.rstrip("/") for _, dest in self.contents)

    def checksum(self) -> Checksum | None:
        """The published checksum of :attr:`archive`, or ``None`` when there is none."""
        return Checksum("md5", torchvision_table()[self.archive][1]) if self.torchvision_md5 else None

    def sources(self, mirror: str | None) -> list[str]:
        """The URLs to try: ``mirror/archive`` alone when a mirror is given."""
        if mirror:
            return [mirror.rstrip("/") + "/" + self.archive]
        drive_id = torchvision_table().get(self.archive, (None,))[0]
        return [url.format(gdrive=GOOGLE_DRIVE.format(id=drive_id)) if "{gdrive}" in url else url
                for url in self.urls]


PARTS = {part.name: part for part in (
    Part("train", "WIDER_train.zip", "training images, 12,880 photographs (1.5 GB)",
         (("WIDER_train/images/", TRAIN_IMAGES + "/"),), (HF_DATA + "WIDER_train.zip", "{gdrive}"),
         "WIDER FACE (Yang et al. 2016), shuoyang1213.me/WIDERFACE", WIDER_LICENCE, True, (TRAIN_IMAGES + "/*/*.jpg",)),
    Part("val", "WIDER_val.zip", "validation images, 3,226 photographs (363 MB)",
         (("WIDER_val/images/", VAL_IMAGES + "/"),), (HF_DATA + "WIDER_val.zip", "{gdrive}"),
         "WIDER FACE (Yang et al. 2016), shuoyang1213.me/WIDERFACE", WIDER_LICENCE, True, (VAL_IMAGES + "/*/*.jpg",)),
    Part("boxes", "wider_face_split.zip", "the official box annotations and attributes (4 MB)",
         (("wider_face_split/", BOXES + "/"),),
         ("http://shuoyang1213.me/WIDERFACE/support/bbx_annotation/wider_face_split.zip",
          HF_DATA + "wider_face_split.zip"),
         "WIDER FACE (Yang et al. 2016)", WIDER_LICENCE, True, (BOXES + "/*",)),
    Part("landmarks", "retinaface_gt_v1.1.zip", "RetinaFace's label.txt files: boxes and five landmarks (train), "
         "boxes (val)", (("train/label.txt", TRAIN_LABELS), ("val/label.txt", VAL_LABELS)),
         ("https://www.dropbox.com/s/7j70r3eeepe4r2g/retinaface_gt_v1.1.zip?dl=1",),
         "the RetinaFace authors (deepinsight/insightface, detection/retinaface)",
         "annotations of WIDER FACE images, for non-commercial research as the images", False,
         (TRAIN_LABELS, VAL_LABELS)),
    Part("ground-truth", "eval_tools.zip", "the evaluation toolbox's ground truth: wider_face_val.mat and the "
         "easy / medium / hard lists (8 MB)", (("eval_tools/ground_truth/", GROUND_TRUTH + "/"),),
         ("http://shuoyang1213.me/WIDERFACE/support/eval_script/eval_tools.zip",),
         "the WIDER FACE evaluation toolbox (shuoyang1213.me/WIDERFACE)", WIDER_LICENCE, False,
         tuple(f"{GROUND_TRUTH}/wider_{name}_val.mat" for name in ("face", "easy", "medium", "hard"))),
)}
"""Every part, by the name a user asks for."""

EVAL_PARTS = ("val", "ground-truth")
"""What ``rfcore eval --widerface DIR`` reads."""

TRAIN_PARTS = ("train", "landmarks")
"""What ``rfcore train --data widerface --widerface DIR`` reads."""


def torchvision_table() -> dict[str, tuple[str | None, str]]:
    """``{archive: (Google Drive id or None, MD5)}`` as ``torchvision.datasets.WIDERFace`` publishes them."""
    from torchvision.datasets import WIDERFace

    table = {name: (drive_id, md5) for drive_id, md5, name in WIDERFace.FILE_LIST}
    _, md5, name = WIDERFace.ANNOTATIONS_FILE
    table[name] = (None, md5)
    return table


def check_part_names(names) -> list[Part]:
    """The parts named, in :data:`PARTS` order.

    Raises:
        ValueError: For a name that is not a part, listing the names there are.
    """
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        raise ValueError(f"unknown WIDER FACE part {unknown[0]!r}: choose from {', '.join(PARTS)}")
    return [part for name, part in PARTS.items() if name in names]


# ---------------------------------------------------------------- what a folder holds


@dataclass(frozen=True)
class WiderFaceFolder:
    """The WIDER FACE parts found in a folder arranged as the module docstring shows.

    Attributes:
        root: The folder.
        present: Names of the parts whose files are all there.
    """

    root: Path
    present: tuple[str, ...]

    def missing(self, parts=tuple(PARTS)) -> list[str]:
        """The names among ``parts`` that are not there."""
        return [name for name in parts if name not in self.present]

    def command(self, parts=tuple(PARTS)) -> str:
        """The command that fetches the missing ones among ``parts``."""
        return f"rfcore data widerface {self.root} --parts {' '.join(self.missing(parts))}"

    @property
    def can_evaluate(self) -> bool:
        """``rfcore eval --widerface`` has what it reads."""
        return not self.missing(EVAL_PARTS)

    @property
    def can_train(self) -> bool:
        """``rfcore train --data widerface`` has what it reads."""
        return not self.missing(TRAIN_PARTS)

    def path(self, relative: str) -> Path:
        """A path of the layout (:data:`VAL_IMAGES`, :data:`GROUND_TRUTH` ...) in :attr:`root`."""
        return self.root / relative

    def require(self, parts, option: str) -> None:
        """Raise ``FileNotFoundError`` naming the missing parts' files and the command that fetches them."""
        missing = self.missing(parts)
        if missing:
            files = ", ".join(str(self.root / out) for name in missing for out in PARTS[name].outputs)
            raise FileNotFoundError(f"WIDER FACE in {self.root} ({option}) lacks {files}: fetch them with "
                                    f"`{self.command(parts)}`")

    def describe(self, parts=tuple(PARTS)) -> str:
        """One sentence: whether ``parts`` are all there, or which are missing and the command that fetches them."""
        missing = self.missing(parts)
        if not missing:
            return f"WIDER FACE in {self.root}: {', '.join(parts)} found"
        return f"WIDER FACE in {self.root}: {', '.join(missing)} not found; run `{self.command(parts)}`"

    def __str__(self) -> str:
        return self.describe()


def find_widerface(folder) -> WiderFaceFolder:
    """Which parts of WIDER FACE ``folder`` holds (each of a part's :attr:`Part.markers` matches a file)."""
    root = Path(folder)
    present = tuple(name for name, part in PARTS.items()
                    if all(any(path.is_file() for path in root.glob(marker)) for marker in part.markers))
    return WiderFaceFolder(root, present)


# ---------------------------------------------------------------- fetching and arranging


def fetch_widerface(root, names=tuple(PARTS), *, archives=None, mirror: str | None = None, progress: bool = True,
                    log: Callable[[str], None] = print) -> WiderFaceFolder:
    """Fetch (or take from ``archives``), check and unpack the parts named into ``root``.

    Everything is checked before anything is written: the names, that no
    part's folder exists half-filled, and that no input archive lies where
    an output goes. Downloads go to ``root/archives`` and are kept, so a run
    that stopped resumes them.

    Args:
        root: The folder to arrange (created).
        names: Part names (:data:`PARTS`).
        archives: A folder holding the official archives already; nothing
            is downloaded then.
        mirror: A URL holding every archive under its official name, used
            instead of the usual sources (default: ``$RFCORE_WIDERFACE_MIRROR``).
        progress: Show progress bars on stderr.
        log: Where to say what is done, a line at a time.

    Returns:
        What ``root`` holds afterwards.

    Raises:
        ValueError: For an unknown part, a folder in the way, an archive that
            is damaged, fails its checksum or is not the one expected.
        FileNotFoundError: For an archive missing from ``archives``.
        DownloadStopped: When no source of an archive could be downloaded.
        DiskFull: When the device fills up; files already there are untouched.
    """
    root = Path(root)
    parts = check_part_names(names)
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    todo = [part for part in parts if part.name not in find_widerface(root).present]
    for part in parts:
        if part not in todo:
            log(f"{part.name}: already in {root} ({', '.join(part.outputs)})")
    inputs = _archive_paths(todo, root, archives)
    _check_outputs_free(todo, root, inputs)
    for part in todo:
        archive = inputs[part.name] if archives is not None else _downloaded(part, root, mirror, progress, log)
        try:
            unpack(archive, part, root, progress)
        except ValueError:
            if archives is None:  # a download of ours that is not the archive: fetch it afresh next time
                archive.unlink(missing_ok=True)
            raise
        _record(root, part, archive)
        log(f"{part.name}: {part.what} -> {', '.join(str(root / out) for out in part.outputs)}")
    return find_widerface(root)


def _archive_paths(parts: list[Part], root: Path, archives) -> dict[str, Path]:
    """Each part's archive: in ``archives`` (which must hold it) or ``root/archives``."""
    folder = Path(archives) if archives is not None else root / "archives"
    paths = {part.name: folder / part.archive for part in parts}
    if archives is not None:
        missing = [path for path in paths.values() if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"{missing[0].name} not found in {folder} (--from): the folder should hold the "
                                    f"official archives, {', '.join(p.archive for p in parts)}")
    return paths


def _check_outputs_free(parts: list[Part], root: Path, inputs: dict[str, Path]) -> None:
    """Refuse an output that holds an input archive, and one that exists already (half a part, or the user's)."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is a file, not a folder to arrange WIDER FACE in")
    for part in parts:
        for out in (root / out for out in part.outputs):
            for archive in inputs.values():
                if os.path.realpath(out) in (os.path.realpath(archive), *map(str, Path(archive).resolve().parents)):
                    raise ValueError(f"output {out} holds the input archive {archive}: rfcore never writes over a "
                                     "file it reads; choose another folder. Nothing was written.")
            if out.exists():
                raise ValueError(f"{out} exists but the {part.name} part is not complete there: rfcore does not "
                                 "write over files it did not finish; move it away and run again. Nothing was "
                                 "written.")


def _downloaded(part: Part, root: Path, mirror: str | None, progress: bool, log) -> Path:
    """``root/archives/<archive>``, downloaded (resuming a ``.part``) unless a checked copy is there."""
    target = root / "archives" / part.archive
    checksum = part.checksum()
    if target.is_file() and (checksum is None or checksum.matches(target)):
        return target
    if target.is_file():
        raise ValueError(f"{target} fails its {checksum.kind} checksum (damaged or another file): delete it and "
                         "run again")
    failures = []
    for url in part.sources(mirror):
        if part_path(target).exists():
            log(f"{part.name}: resuming {part.archive} at {part_path(target).stat().st_size:,} bytes")
        try:
            return download(url, target, checksum, progress=progress)
        except DownloadStopped as err:
            failures.append(str(err))
    raise DownloadStopped(f"{part.archive} could not be downloaded: {'; '.join(failures)}")


def unpack(archive: Path, part: Part, root: Path, progress: bool = True) -> None:
    """Check ``archive`` (checksum, or contents and CRCs) and unpack its :attr:`Part.contents` into ``root``.

    Each folder is unpacked into a hidden folder beside its destination and
    renamed into place when whole; each file goes through a temporary file.

    Raises:
        ValueError: Naming the archive when it is damaged, fails its checksum
            or lacks an expected file.
        DiskFull: When the device fills up; nothing of this part is left.
    """
    checksum = part.checksum()
    if checksum is not None and not checksum.matches(archive):
        raise ValueError(f"{archive} fails its {checksum.kind} checksum: it is not the published {part.archive} "
                         "(damaged, truncated or another file); download it again")
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _members(zf, part, archive)
            total = sum(m.file_size for chosen in members.values() for m in chosen)
            with progress_bar(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                              desc=f"unpacking {part.archive}", disable=not progress) as bar:
                for (source, dest) in part.contents:
                    _unpack_one(zf, members[source], source, root / dest, bar)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ValueError(f"{archive} is damaged or truncated ({err}): it is not a complete {part.archive}; "
                         "download it again") from None


def _members(zf: zipfile.ZipFile, part: Part, archive: Path) -> dict[str, list[zipfile.ZipInfo]]:
    """The archive's entries under each source path of ``part``; raise if one has none."""
    entries = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
    found = {}
    for source, _ in part.contents:
        found[source] = [m for m in entries if m.filename == source
                         or (source.endswith("/") and m.filename.startswith(source))]
        if not found[source]:
            raise ValueError(f"{archive} is not {part.archive} as published: it has no {source}")
    return found


def _unpack_one(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], source: str, dest: Path, bar) -> None:
    """Unpack the members under ``source`` to ``dest`` (a folder or a file), renaming into place when whole."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        for member in members:
            relative = member.filename[len(source):] if source.endswith("/") else "file"
            _copy_member(zf, member, _inside(staging, relative))
            bar.update(member.file_size)
        os.replace(staging if source.endswith("/") else staging / "file", dest)
        fsync_dir(dest.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _inside(folder: Path, relative: str) -> Path:
    """``folder / relative``, refusing a member path that climbs out of it (``..``, absolute)."""
    path = (folder / relative).resolve()
    if folder.resolve() not in path.parents:
        raise ValueError(f"archive member path {relative!r} points outside the folder it unpacks to")
    return path


def _copy_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, out: Path) -> None:
    """Write one member (its CRC-32 checked by :mod:`zipfile` as it is read) and flush it to disk."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
    except OSError as err:
        if is_disk_full(err):
            raise DiskFull(out, member.file_size) from None
        raise


def _record(root: Path, part: Part, archive: Path) -> None:
    """Add ``part`` to the folder's :data:`MANIFEST`."""
    path = root / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {"parts": {}}
    manifest["parts"][part.name] = {"archive": part.archive, "from": str(archive), "outputs": list(part.outputs)}
    write_text(path, json.dumps(manifest, indent=2) + "\n")
