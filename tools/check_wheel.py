"""Build rfcore's wheel, install it into a fresh virtual environment outside the clone, and detect faces there.

What ``pip install .``, a wheel or ``pip install git+URL`` gives a user must work with no clone around. This
script builds the sdist and the wheel from a copy of what a build reads (``pyproject.toml``, ``README.md``,
``rfcore/``), checks that both hold every bundled asset as a regular file (not a link) and the wheel none of the
recorded runs' weights, installs the wheel with ``--no-deps`` into a virtual environment that sees this Python's
packages (so torch is not installed again), checks that the environment imports rfcore from the wheel, and runs,
from a folder outside the clone, ``rfcore detect`` and ``rfcore detect --mesh --out`` on the bundled group
picture and a few calls of the Python API. ``.ci/run`` runs it; it exits with status 1 and one sentence on the
first failure. Usage: ``python tools/check_wheel.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "rfcore" / "assets"
GROUP_FACES = 10
"""Faces in the bundled group picture (``assets/images/group.json``)."""

API_CHECK = f"""
import torch
from torchvision.ops import box_iou

import rfcore
from rfcore.assets import ASSETS, FROM_SCRATCH_RUN, IMAGES, load_annotation
from rfcore.detector import Detector
from rfcore.train.log import parse_log
from rfcore.weights import DEFAULT_WEIGHTS

faces = rfcore.detect(IMAGES / "group.jpg")
truth = load_annotation(IMAGES / "group.json")
best_iou = box_iou(truth.boxes, torch.tensor([face.box for face in faces])).max(dim=1).values  # (10,) per face
found = int((best_iou >= 0.5).sum())
assert len(faces) == {GROUP_FACES} and found == {GROUP_FACES}, (len(faces), found)
print(f"rfcore.detect(IMAGES / 'group.jpg'): {{len(faces)}} faces, {{found}} of {{len(truth.boxes)}} annotated faces "
      "found (IoU >= 0.5)")
(face,) = Detector(mesh=True).detect(IMAGES / "grace_hopper.jpg")
assert len(face.mesh) == 289
print(f"Detector(mesh=True) on grace_hopper.jpg: 1 face, {{len(face.mesh)}} mesh vertices")
records, note = parse_log(FROM_SCRATCH_RUN / "log.jsonl")
assert records and note is None
assert (ASSETS / "README.md").is_file()
print(f"recorded run's log: {{len(records)}} records; default weights {{DEFAULT_WEIGHTS.name}} "
      f"({{DEFAULT_WEIGHTS.stat().st_size / 1e6:.2f}} MB); the assets' README.md with their sources and licences")
"""
"""Run by the environment's Python: the API on the bundled files, with the answers the clone gives."""


class CheckFailed(Exception):
    """One sentence: what the wheel or its environment got wrong."""


def run(args: list, cwd: Path, env: dict) -> str:
    """Run a command to the end; its stdout, or :class:`CheckFailed` with its stderr."""
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise CheckFailed(f"{' '.join(map(str, args))} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def expected_assets() -> tuple[set[str], set[str]]:
    """Bundled files (package-relative) the wheel must hold, and the recorded runs' weights it must leave out."""
    files = {p.relative_to(REPO).as_posix() for p in ASSETS.rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc")}
    left_out = {name for name in files if name.startswith("rfcore/assets/runs/") and name.endswith(".safetensors")}
    return files - left_out, left_out


def build(work: Path, env: dict) -> tuple[Path, Path]:
    """The sdist and the wheel, built from a copy of ``pyproject.toml``, ``README.md`` and ``rfcore/``."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "rfcore", source / "rfcore", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = work / "dist"
    run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "-q", "-w", dist],
        work, env)
    build_sdist = f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"
    run([sys.executable, "-c", build_sdist], source, env)
    return next(dist.glob("*.tar.gz")), next(dist.glob("*.whl"))


def check_archives(sdist: Path, wheel: Path) -> str:
    """Every bundled file in both archives as a regular file, the runs' weights not in the wheel; a summary."""
    wanted, left_out = expected_assets()
    with zipfile.ZipFile(wheel) as archive:
        entries = {info.filename: info for info in archive.infolist()}
    links = [name for name, info in entries.items() if stat.S_ISLNK(info.external_attr >> 16)]
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1]: m for m in archive.getmembers() if "/" in m.name}
    for what, names in (("wheel", set(entries)), ("sdist", set(members))):
        if missing := sorted(wanted - names):
            raise CheckFailed(f"the {what} lacks {len(missing)} bundled files, e.g. {missing[:3]}")
    not_files = sorted(name for name in wanted if not members[name].isfile()) + links
    if not_files:
        raise CheckFailed(f"links instead of files in the archives: {not_files[:3]}")
    if heavy := sorted(left_out & set(entries)):
        raise CheckFailed(f"the wheel carries the recorded runs' weights, e.g. {heavy[:2]}")
    return (f"wheel {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB, {len(wanted)} bundled files as regular "
            f"files (also in the {sdist.stat().st_size / 1e6:.1f} MB sdist), the recorded runs' weights left out")


def install(work: Path, wheel: Path, env: dict) -> Path:
    """A virtual environment seeing this Python's packages, with the wheel installed; its ``bin`` folder."""
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv], work, env)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    # --force-reinstall: an rfcore outside the environment (an editable clone) must not count as installed
    run([bin_dir / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", "-q", wheel],
        work, env)
    return bin_dir


def check_environment(bin_dir: Path, here: Path, env: dict) -> list[str]:
    """Import, command line and API in the environment, from ``here``; the lines to print."""
    where = run([bin_dir / "python", "-c", "import rfcore.assets; print(rfcore.__file__); print(rfcore.assets.IMAGES)"],
                here, env).split()
    if not Path(where[0]).is_relative_to(bin_dir.parent):
        raise CheckFailed(f"the environment imports rfcore from {where[0]}, not from the installed wheel")
    group = Path(where[1]) / "group.jpg"
    detected = run([bin_dir / "rfcore", "detect", group, "--out", "drawn"], here, env).splitlines()[0]
    if f": {GROUP_FACES} faces; wrote" not in detected or not (here / "drawn" / "group_faces.png").is_file():
        raise CheckFailed(f"rfcore detect did not find and draw {GROUP_FACES} faces: {detected}")
    meshed = run([bin_dir / "rfcore", "detect", group, "--mesh", "--json", "--out", "meshes"], here, env)
    faces = json.loads(meshed.splitlines()[0])["faces"]
    if len(faces) != GROUP_FACES or any(len(face["mesh"]) != 289 for face in faces):
        raise CheckFailed(f"rfcore detect --mesh gave {len(faces)} faces, not {GROUP_FACES} with 289 vertices each")
    if not (here / "meshes" / "group_faces.png").is_file():
        raise CheckFailed("rfcore detect --mesh --out meshes wrote no meshes/group_faces.png")
    api = run([bin_dir / "python", "-c", API_CHECK], here, env).splitlines()
    return [f"rfcore imported from {where[0]}",
            f"rfcore detect {group.name} --out drawn: {detected.split(': ', 1)[1]}",
            f"rfcore detect {group.name} --mesh --out meshes: {len(faces)} faces with 289 mesh vertices each, drawn",
            *api]


def main() -> int:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    with tempfile.TemporaryDirectory(prefix="rfcore-wheel-") as folder:
        work = Path(folder)
        here = work / "elsewhere"  # outside the clone: no assets/ or rfcore/ beside the commands
        here.mkdir()
        try:
            sdist, wheel = build(work, env)
            print(check_archives(sdist, wheel))
            lines = check_environment(install(work, wheel, env), here, env)
        except (CheckFailed, StopIteration) as err:
            print(f"check_wheel: {err or 'the build wrote no wheel or sdist'}", file=sys.stderr)
            return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
