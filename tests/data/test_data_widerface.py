"""``rfcore data widerface`` against a local HTTP server serving miniature archives in the official layout.

Nothing here touches the network: the server listens on 127.0.0.1, the
archives hold the bundled pictures, and the published MD5s are replaced by the
miniatures' own (the real ones are checked against torchvision's table).
"""

import errno
import hashlib
import http.server
import io
import re
import threading
import zipfile
from pathlib import Path

import pytest
from builders import write_wider_mat

import rfcore.download
import rfcore.widerface_archives as wa
from rfcore.assets import IMAGES, load_annotation
from rfcore.cli import main
from rfcore.cli.common import EXIT_BAD_INPUT, EXIT_DISK_FULL
from rfcore.cli.data import EXIT_NETWORK

TRAIN = {"0--Parade/0_Parade_grace_hopper_1.jpg": "grace_hopper", "1--Group/1_Group_group_2.jpg": "group"}
VAL = {"0--Parade/0_Parade_astronaut_1.jpg": "astronaut", "1--Group/1_Group_group_1.jpg": "group"}
"""Image path in the miniature set -> bundled picture."""


def face_lines(picture: str, landmarks: bool) -> list[str]:
    annotation = load_annotation(IMAGES / f"{picture}.json")
    lines = []
    for box, points in zip(annotation.boxes.tolist(), annotation.landmarks.tolist()):
        x1, y1, x2, y2 = box
        values = [x1, y1, x2 - x1, y2 - y1]
        if landmarks:
            values += [v for x, y in points for v in (x, y, 0.0)] + [0.9]
        lines.append(" ".join(f"{v:.1f}" for v in values))
    return lines


def label_file(images: dict, landmarks: bool) -> str:
    return "".join(f"# {key}\n" + "".join(f"{line}\n" for line in face_lines(picture, landmarks))
                   for key, picture in images.items())


def zip_bytes(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict:
    """``{official name: bytes}`` of the five miniature archives."""
    def images(top, chosen):
        return {f"{top}/images/{key}": (IMAGES / f"{picture}.jpg").read_bytes() for key, picture in chosen.items()}

    gt = tmp_path_factory.mktemp("gt")
    faces = {key[:-4]: [[float(v) for v in line.split()] for line in face_lines(picture, False)]
             for key, picture in VAL.items()}
    write_wider_mat(gt, faces, {"hard": {key: list(range(1, len(rows) + 1)) for key, rows in faces.items()}})
    return {
        "WIDER_train.zip": zip_bytes(images("WIDER_train", TRAIN)),
        "WIDER_val.zip": zip_bytes(images("WIDER_val", VAL)),
        "wider_face_split.zip": zip_bytes({"wider_face_split/readme.txt": "boxes\n",
                                           "wider_face_split/wider_face_val_bbx_gt.txt": "0--Parade/a.jpg\n0\n"}),
        "retinaface_gt_v1.1.zip": zip_bytes({"train/label.txt": label_file(TRAIN, True),
                                             "val/label.txt": label_file(VAL, False), "test/label.txt": ""}),
        "eval_tools.zip": zip_bytes({"eval_tools/wider_eval.m": "% toolbox\n", "__MACOSX/eval_tools/._x": "",
                                     **{f"eval_tools/ground_truth/{p.name}": p.read_bytes() for p in gt.iterdir()}}),
    }


@pytest.fixture
def published(archives, monkeypatch):
    """Make the miniatures' MD5s the published ones, as torchvision's table would give them."""
    table = {name: ("drive-id", hashlib.md5(archives[name]).hexdigest())
             for name in ("WIDER_train.zip", "WIDER_val.zip", "wider_face_split.zip")}
    monkeypatch.setattr(wa, "torchvision_table", lambda: table)
    monkeypatch.delenv(wa.MIRROR_ENV, raising=False)
    return table


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` with HTTP Range support; ``server.cut[name] = n`` closes after n bytes, once."""

    timeout = 10

    def do_GET(self):
        name, asked = self.path.lstrip("/"), self.headers.get("Range")
        self.server.requests.append((name, asked))
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1)) if asked else 0
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = self.server.cut.pop(name, None)
        self.wfile.write(data[start:] if cut is None else data[start:start + cut])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(archives):
    """A threaded HTTP server on 127.0.0.1 serving the miniature archives; stopped after the test."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.cut, httpd.requests = dict(archives), {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its contents' digest."""
    return {p.relative_to(folder): hashlib.md5(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def fetch(folder, *options) -> int:
    return main(["data", "widerface", str(folder), "--quiet", *map(str, options)])


def one_line(err: str) -> str:
    """The error output, checked to be one line."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_published_checksums_and_sources_are_torchvision_s():
    from torchvision.datasets import WIDERFace

    for drive_id, md5, name in WIDERFace.FILE_LIST[:2]:
        part = next(p for p in wa.PARTS.values() if p.archive == name)
        assert part.checksum() == rfcore.download.Checksum("md5", md5)
        assert any(drive_id in url for url in part.sources(None))
    url, md5, _ = WIDERFace.ANNOTATIONS_FILE
    assert wa.PARTS["boxes"].checksum().value == md5 and wa.PARTS["boxes"].sources(None)[0] == url
    assert wa.PARTS["val"].sources("http://m/") == ["http://m/WIDER_val.zip"]


def test_download_arranges_every_part_read_by_eval_and_train(published, server, tmp_path, capsys):
    root = tmp_path / "widerface"
    assert fetch(root, "--mirror", server.url) == 0
    out = capsys.readouterr().out
    assert f"rfcore eval --widerface {root}" in out and f"rfcore train --data widerface --widerface {root}" in out
    assert sorted(p.name for p in (root / "val" / "images").rglob("*.jpg")) == sorted(Path(k).name for k in VAL)
    assert (root / "train" / "label.txt").read_text() == label_file(TRAIN, True)
    assert sorted(p.name for p in (root / "ground_truth").iterdir()) == sorted(
        ["wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat"])
    assert not list(root.rglob(".*"))  # no temporary file or folder left
    assert wa.find_widerface(root).present == tuple(wa.PARTS)
    assert wa.find_widerface(root).describe(wa.EVAL_PARTS) == f"WIDER FACE in {root}: val, ground-truth found"

    requests = len(server.requests)
    assert fetch(root, "--mirror", server.url) == 0  # all there: nothing fetched again
    assert len(server.requests) == requests and "already in" in capsys.readouterr().out

    assert main(["eval", "--widerface", str(root), "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    assert "2 images" in capsys.readouterr().out
    assert main(["train", "--data", "widerface", "--widerface", str(root), "--out", str(tmp_path / "run"),
                 "--size", "64", "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--threads", "1",
                 "--workers", "0", "--quiet"]) == 0
    assert (tmp_path / "run" / "weights.safetensors").is_file()


def test_from_a_folder_of_archives_needs_no_server(published, archives, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for name, data in archives.items():
        (downloads / name).write_bytes(data)
    before = snapshot(downloads)
    assert fetch(tmp_path / "wider", "--from", downloads, "--parts", "val", "ground-truth") == 0
    assert wa.find_widerface(tmp_path / "wider").can_evaluate and snapshot(downloads) == before


def test_a_cut_connection_is_resumed_with_a_range_request(published, archives, server, tmp_path):
    server.cut["WIDER_val.zip"] = 5000
    assert fetch(tmp_path / "w", "--mirror", server.url, "--parts", "val") == 0
    assert [r for n, r in server.requests if n == "WIDER_val.zip"] == [None, "bytes=5000-"]
    assert (tmp_path / "w" / "archives" / "WIDER_val.zip").read_bytes() == archives["WIDER_val.zip"]


def test_a_part_file_left_by_an_earlier_run_is_resumed(published, archives, server, tmp_path):
    part = tmp_path / "w" / "archives" / "WIDER_val.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(archives["WIDER_val.zip"][:3000])
    assert fetch(tmp_path / "w", "--mirror", server.url, "--parts", "val") == 0
    assert server.requests == [("WIDER_val.zip", "bytes=3000-")] and not part.exists()


def test_a_connection_that_keeps_failing_keeps_what_arrived(published, server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(wa, "download", _no_retries(rfcore.download.download))
    server.cut["WIDER_val.zip"] = 4000
    assert fetch(tmp_path / "w", "--mirror", server.url, "--parts", "val") == EXIT_NETWORK
    message = one_line(capsys.readouterr().err)
    assert "WIDER_val.zip" in message and "run the command again to resume" in message
    assert (tmp_path / "w" / "archives" / "WIDER_val.zip.part").stat().st_size == 4000


def _no_retries(download):
    return lambda *args, **kwargs: download(*args, **{**kwargs, "retries": 0})


def test_a_wrong_checksum_is_refused_and_nothing_is_kept(published, server, tmp_path, capsys):
    server.files["WIDER_val.zip"] = server.files["WIDER_train.zip"]
    root = tmp_path / "w"
    assert fetch(root, "--mirror", server.url, "--parts", "val") == EXIT_BAD_INPUT
    message = one_line(capsys.readouterr().err)
    assert "WIDER_val.zip" in message and "md5" in message and published["WIDER_val.zip"][1] in message
    assert not (root / "val").exists() and not list((root / "archives").iterdir())


@pytest.mark.parametrize("name", ["WIDER_val.zip", "eval_tools.zip"])
def test_a_truncated_archive_is_refused_by_name(published, archives, tmp_path, capsys, name):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for archive, data in archives.items():
        (downloads / archive).write_bytes(data[: len(data) // 2] if archive == name else data)
    root = tmp_path / "w"
    (root / "val").mkdir(parents=True)
    (root / "val" / "notes.txt").write_text("mine")
    before = snapshot(root)
    assert fetch(root, "--from", downloads, "--parts", "val", "ground-truth") == EXIT_BAD_INPUT
    message = one_line(capsys.readouterr().err)
    assert str(downloads / name) in message and ("checksum" in message or "truncated" in message)
    after = snapshot(root)
    assert all(after[path] == digest for path, digest in before.items())
    assert not (root / "ground_truth").exists()
    assert not list(root.rglob(".*"))


def test_a_truncated_download_without_a_checksum_is_refused_and_deleted(published, server, tmp_path, capsys):
    server.files["eval_tools.zip"] = server.files["eval_tools.zip"][:-100]
    root = tmp_path / "w"
    assert fetch(root, "--mirror", server.url, "--parts", "ground-truth") == EXIT_BAD_INPUT
    assert "eval_tools.zip is damaged or truncated" in one_line(capsys.readouterr().err)
    assert not list((root / "archives").iterdir()) and not (root / "ground_truth").exists()


def test_another_archive_under_the_official_name_is_refused(published, archives, tmp_path, capsys):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "retinaface_gt_v1.1.zip").write_bytes(archives["wider_face_split.zip"])
    assert fetch(tmp_path / "w", "--from", downloads, "--parts", "landmarks") == EXIT_BAD_INPUT
    assert "is not retinaface_gt_v1.1.zip as published: it has no train/label.txt" in one_line(capsys.readouterr().err)


def test_a_full_disk_during_a_download_keeps_every_file(published, server, tmp_path, capsys, monkeypatch):
    root = tmp_path / "w"
    assert fetch(root, "--mirror", server.url, "--parts", "ground-truth") == 0
    before = snapshot(root)
    real_open = open

    class FullDisk:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            if self.written + len(data) > 2000:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(rfcore.download, "open", lambda *a, **k: FullDisk(real_open(*a, **k)), raising=False)
    assert fetch(root, "--mirror", server.url, "--parts", "val") == EXIT_DISK_FULL
    message = one_line(capsys.readouterr().err)
    assert "no space left" in message and "WIDER_val.zip.part" in message and "resume" in message
    assert {k: v for k, v in snapshot(root).items() if k.suffix != ".part"} == before
    assert not (root / "val").exists()


def test_a_full_disk_while_unpacking_leaves_no_half_folder(published, archives, tmp_path, capsys, monkeypatch):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "WIDER_val.zip").write_bytes(archives["WIDER_val.zip"])
    real_open, opened = open, []

    def open_until_full(path, mode="r", *args, **kwargs):
        opened.append(path)
        if "w" in mode and len(opened) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(wa, "open", open_until_full, raising=False)
    root = tmp_path / "w"
    assert fetch(root, "--from", downloads, "--parts", "val") == EXIT_DISK_FULL
    assert "no space left on the device while writing" in one_line(capsys.readouterr().err)
    assert len(opened) == 2 and list(root.rglob("*")) == [root / "val"]  # the staging folder is gone


def test_an_output_folder_holding_an_input_archive_is_refused(published, archives, tmp_path, capsys):
    root = tmp_path / "w"
    inside = root / "val" / "images"
    inside.mkdir(parents=True)
    (inside / "WIDER_val.zip").write_bytes(archives["WIDER_val.zip"])
    before = snapshot(root)
    assert fetch(root, "--from", inside, "--parts", "val") == EXIT_BAD_INPUT
    message = one_line(capsys.readouterr().err)
    assert f"output {inside} holds the input archive" in message and "Nothing was written" in message
    assert snapshot(root) == before


def test_an_unknown_part_is_named_before_anything_happens(server, tmp_path, capsys):
    root = tmp_path / "w"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    assert fetch(root, "--mirror", server.url, "--parts", "val", "vall") == EXIT_BAD_INPUT
    assert "unknown WIDER FACE part 'vall': choose from train, val, boxes, landmarks, ground-truth" in one_line(
        capsys.readouterr().err)
    assert snapshot(root) == {Path("keep.txt"): hashlib.md5(b"mine").hexdigest()} and not server.requests


def test_a_folder_without_the_data_says_what_to_run(tmp_path, capsys):
    folder = wa.find_widerface(tmp_path)
    assert not folder.can_evaluate and not folder.can_train
    assert str(folder) == (f"WIDER FACE in {tmp_path}: train, val, boxes, landmarks, ground-truth not found; run "
                           f"`rfcore data widerface {tmp_path} --parts train val boxes landmarks ground-truth`")
    assert folder.describe(wa.EVAL_PARTS) == (f"WIDER FACE in {tmp_path}: val, ground-truth not found; run "
                                              f"`rfcore data widerface {tmp_path} --parts val ground-truth`")
    assert main(["eval", "--widerface", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert f"`rfcore data widerface {tmp_path} --parts val ground-truth`" in one_line(capsys.readouterr().err)
    assert main(["train", "--data", "widerface", "--out", str(tmp_path / "r")]) == 2
    assert "--data widerface needs --widerface DIR" in capsys.readouterr().err
