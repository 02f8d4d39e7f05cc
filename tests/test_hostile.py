"""Careless and hostile input through the real commands (issue 14): no traceback for any
user input, messages that name the file or argument and the fix, good items in a batch
always processed, and an index.csv whose every path resolves after every run."""
import json
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dfcourse.cli import main
from dfcourse.index import missing_files, read_index
from dfcourse.io import TMP_MARK, BadInputError, read_image
from dfcourse.checkpoints import save
from dfcourse.models import build_detector


def run_cli(args, capsys):
    """``python -m dfcourse ARGS`` in-process: (exit code, stdout, stderr). An exception
    escaping ``main`` (a traceback for the user) fails the test."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def assert_index_resolves(index) -> list[dict]:
    rows = read_index(index)
    assert rows, f"{index} is empty"
    assert missing_files(index) == [], "index.csv lists files that do not exist"
    assert not list(Path(index).parent.rglob(f"*{TMP_MARK}*")), "temporary files left behind"
    return rows


def skipped_items(out) -> str:
    return (Path(out) / "skipped.csv").read_text()


def png_header_only(path, width, height):
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's calling card)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------- prepare --folder

def _img(path, seed, size=(40, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = tuple(int(c) for c in np.random.default_rng(seed).integers(0, 255, 3))
    Image.new("RGB", size, colour).convert(mode).save(path)
    return path


@pytest.fixture
def folder_ds(tmp_path):
    """A folder dataset with same-stem files, odd modes, a very long name, and broken entries."""
    ds = tmp_path / "ds"
    good = [ds / "train/real/a.jpg", ds / "train/real/a.png", ds / "train/real/s1/x.jpg",
            ds / "train/real/s2/x.jpg", ds / "train/fake/face.bmp", ds / "train/fake/face.webp",
            ds / "val/real/with spaces.jpg", ds / "val/fake" / ("n" * 242 + ".jpg"),
            ds / "test/real/grey.png", ds / "test/fake/cmyk.jpg"]
    for i, p in enumerate(good):
        _img(p, i, mode="CMYK" if p.name == "cmyk.jpg" else "L" if p.name == "grey.png" else "RGB")
    bad = {"empty.jpg": b"", "text.jpg": b"this is not a picture", "trunc.png": b"\x89PNG\r\n\x1a\n\x00"}
    for name, data in bad.items():
        (ds / "train/fake" / name).write_bytes(data)
    png_header_only(ds / "test/real/bomb.png", 30000, 30000)
    (ds / "test/real/dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (ds / "test/real/loop").symlink_to(ds / "test/real")
    return ds, good, [*bad, "bomb.png", "dangling.jpg"]


def test_folder_relative_out_inside_input_same_stems_and_broken_files(folder_ds, capsys, monkeypatch):
    ds, good, bad = folder_ds
    monkeypatch.chdir(ds / "train")
    for k in range(2):  # --out relative, and inside a class folder: the 2nd run must not read its crops
        if k:  # a temporary file left by a killed writer (no such process) is cleaned up
            (ds / f"train/real/o_rel/crops/.a{TMP_MARK}999999999.png").write_bytes(b"half")
        code, out, err = run_cli(["prepare", "--folder", "..", "--out", "real/o_rel", "--size", "24"], capsys)
        assert code == 0, err
        rows = assert_index_resolves(ds / "train/real/o_rel/index.csv")
        assert len(rows) == len(good) and len({r["path"] for r in rows}) == len(good)
        assert {Path(r["path"]).parent.name for r in rows if r["label"] == 1} == {"fake"}
    skipped = skipped_items(ds / "train/real/o_rel")
    for name in bad:
        assert name in skipped
    assert "dangling symbolic link" in skipped and "too large to decode safely" in skipped
    assert all(read_image(r["path"]).shape == (24, 24, 3) for r in rows)


def test_folder_moved_output_and_new_size(folder_ds, tmp_path, capsys):
    ds, good, _ = folder_ds
    assert run_cli(["prepare", "--folder", ds, "--out", tmp_path / "o", "--size", "16"], capsys)[0] == 0
    shutil.move(tmp_path / "o", tmp_path / "moved")
    assert_index_resolves(tmp_path / "moved/index.csv")
    assert run_cli(["prepare", "--folder", ds, "--out", tmp_path / "moved", "--size", "20"], capsys)[0] == 0
    rows = assert_index_resolves(tmp_path / "moved/index.csv")
    assert len(rows) == len(good)
    assert all(read_image(r["path"]).shape == (20, 20, 3) for r in rows)  # not the old 16 px crops


def test_large_legal_photo_is_downscaled_not_refused(tmp_path):
    p = tmp_path / "big.jpg"
    Image.new("RGB", (10000, 9000), (90, 60, 30)).save(p, quality=50)
    assert max(read_image(p).shape[:2]) <= 4096
    with pytest.raises(BadInputError, match="too large to decode safely"):
        read_image(png_header_only(tmp_path / "absurd.png", 30000, 30000))


@pytest.mark.parametrize("flag", ["--out-is-file", "--out-under-file"])
@pytest.mark.parametrize("command", ["folder", "ffpp", "demo-data"])
def test_out_that_is_or_is_under_a_file(command, flag, tmp_path, ffpp_mini, folder_ds, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("I am a file")
    out = blocker if flag == "--out-is-file" else blocker / "sub"
    args = {"folder": ["prepare", "--folder", folder_ds[0]], "ffpp": ["prepare", "--ffpp", ffpp_mini],
            "demo-data": ["demo-data", "--faces", folder_ds[0]]}[command]
    code, _, err = run_cli(args + ["--out", out], capsys)
    assert code == 1 and str(out) in err and ("not a folder" in err or "cannot create" in err)


@pytest.mark.parametrize("args, words", [
    (["--frames", "-1"], ["--frames", ">= 1"]), (["--frames", "0"], ["--frames", ">= 1"]),
    (["--size", "0"], ["--size", ">= 8"]), (["--size", "-5"], ["--size", ">= 8"]),
    (["--frames", "two"], ["--frames", "whole number"]),
    (["--methods", "deepfakes,Nope"], ["Nope", "Deepfakes, Face2Face, FaceSwap", "any case"]),
    (["--methods", ","], ["--methods", "choose from"]),
])
def test_prepare_argument_errors_name_the_argument(args, words, ffpp_mini, tmp_path, capsys):
    code, _, err = run_cli(["prepare", "--ffpp", ffpp_mini, "--out", tmp_path / "o", *args], capsys)
    assert code in (1, 2)
    for w in words:
        assert w in err
    assert not (tmp_path / "o" / "index.csv").exists()


@pytest.mark.parametrize("content", ['[["000", "001", "002"]]', '{"000": "001"}', '[["000"]]', "not json"])
def test_malformed_splits_json(content, ffpp_mini, tmp_path, capsys):
    splits = tmp_path / "splits"
    splits.mkdir()
    for name in ("train", "val", "test"):
        (splits / f"{name}.json").write_text('[["000", "001"]]')
    (splits / "val.json").write_text(content)
    code, _, err = run_cli(["prepare", "--ffpp", ffpp_mini, "--out", tmp_path / "o", "--splits", splits], capsys)
    assert code == 1 and "val.json" in err and ("pairs" in err or "not valid JSON" in err)


# --------------------------------------------------------------------------- prepare --ffpp

def test_ffpp_relative_out_resume_stale_state_and_moved_folder(ffpp_mini, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["prepare", "--ffpp", ffpp_mini, "--out", "o_rel", "--methods", "faceswap", "--size", "32"]
    code, out, err = run_cli(base + ["--frames", "2"], capsys)  # case-insensitive method name
    assert code == 0, err
    rows = assert_index_resolves(tmp_path / "o_rel/index.csv")
    assert {r["method"] for r in rows} == {"original", "FaceSwap"}
    state = (tmp_path / "o_rel/crops/original/000/done.json").read_text()
    assert str(tmp_path) not in state  # no absolute paths in the resume state

    gone = Path(rows[0]["path"])
    gone.unlink()  # a crop deleted by hand: its row is dropped and reported
    assert run_cli(base + ["--frames", "2"], capsys)[0] == 0
    rows2 = assert_index_resolves(tmp_path / "o_rel/index.csv")
    assert len(rows2) == len(rows) - 1 and gone.name in skipped_items(tmp_path / "o_rel")

    assert run_cli(base + ["--frames", "3"], capsys)[0] == 0  # other settings: redone, not reused
    rows3 = assert_index_resolves(tmp_path / "o_rel/index.csv")
    assert len({r["frame_idx"] for r in rows3}) == 3 and len(rows3) > len(rows)
    assert len(list((tmp_path / "o_rel/crops/original/000").glob("[0-9][0-9][0-9][0-9].png"))) == 3

    shutil.move(tmp_path / "o_rel", tmp_path / "moved")  # a moved output folder resumes
    code, _, err = run_cli(["prepare", "--ffpp", ffpp_mini, "--out", "moved", "--methods", "FaceSwap",
                            "--size", "32", "--frames", "3"], capsys)
    assert code == 0, err
    assert len(assert_index_resolves(tmp_path / "moved/index.csv")) == len(rows3)


def test_ffpp_missing_and_dangling_videos_are_reported(ffpp_mini, tmp_path, capsys):
    root = tmp_path / "ff"
    shutil.copytree(ffpp_mini, root)
    vids = root / "manipulated_sequences/FaceSwap/c23/videos"
    (vids / "000_001.mp4").unlink()
    (vids / "000_001.mp4").symlink_to(tmp_path / "nowhere.mp4")  # dangling
    (vids / "002_003.mp4").write_bytes(b"")  # empty
    shutil.rmtree(root / "manipulated_sequences/FaceSwap/masks")  # masks not downloaded
    code, out, err = run_cli(["prepare", "--ffpp", root, "--out", tmp_path / "o", "--methods",
                              "FaceSwap,DEEPFAKES", "--frames", "1", "--size", "32"], capsys)
    assert code == 0, err
    rows = assert_index_resolves(tmp_path / "o/index.csv")
    assert "Deepfakes: no videos" in out and "-d Deepfakes" in out  # says what to download
    assert "FaceSwap: no mask videos" in out and "-t masks" in out
    assert all(not r["mask_path"] for r in rows)
    skipped = skipped_items(tmp_path / "o")
    assert "000_001.mp4" in skipped and "002_003.mp4" in skipped


# --------------------------------------------------------------------------- demo-data

def test_demo_data_relative_out_inside_faces_and_same_names(tmp_path, astronaut, capsys, monkeypatch):
    faces = tmp_path / "faces"
    faces.mkdir()
    for i, name in enumerate(["with spaces.jpg", "withspaces.jpg", "p3.jpg"]):
        Image.fromarray(np.roll(astronaut, 20 * i, axis=1)[::2, ::2]).save(faces / name)
    monkeypatch.chdir(faces)
    for _ in range(2):  # the 2nd run must not take the first run's faces for new people
        code, _, err = run_cli(["demo-data", "--faces", ".", "--out", "d_rel", "--size", "32", "--frames", "1"],
                               capsys)
        assert code == 0, err
        rows = assert_index_resolves(faces / "d_rel/index.csv")
        assert len({r["video_id"] for r in rows}) == 3


# --------------------------------------------------------------------------- predict

@pytest.fixture(scope="module")
def checkpoint(detector_checkpoint):
    return detector_checkpoint


@pytest.fixture(scope="module")
def same_stem_faces(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("pred")
    small = astronaut[::2, ::2]
    Image.fromarray(small).save(d / "face.jpg")
    Image.fromarray(small).save(d / "face.png")
    Image.fromarray(small).save(d / ("n" * 246 + ".jpg"))
    return d / "face.jpg", d / "face.png", d / ("n" * 246 + ".jpg")


def test_predict_same_stem_and_long_names_heatmaps(checkpoint, same_stem_faces, tmp_path, capsys):
    code, out, err = run_cli(["predict", *same_stem_faces, "--checkpoint", checkpoint, "--json",
                              "--heatmap", tmp_path / "heat"], capsys)
    assert code == 0, err
    results = json.loads(out)
    assert all("error" not in r for r in results)
    paths = {f["heatmap_path"] for r in results for f in r["faces"]}
    assert len(paths) == 3 and all(Path(p).is_file() for p in paths)  # none overwritten


@pytest.mark.parametrize("where", ["file", "under_file", "read_only"])
def test_predict_unwritable_heatmap_dir_reports_per_item(where, checkpoint, same_stem_faces, ffpp_mini,
                                                         tmp_path, capsys, monkeypatch):
    heat = tmp_path / "heat"
    if where == "file":
        heat.write_text("x")
    elif where == "under_file":
        heat.write_text("x")
        heat = heat / "sub"
    elif os.geteuid() != 0:
        heat.mkdir()
        heat.chmod(0o500)
    else:  # root ignores file modes: fail the write the way a read-only folder does
        import dfcourse.predict

        def refuse(path, *a, **k):
            raise PermissionError(13, "Permission denied", str(path))
        monkeypatch.setattr(dfcourse.predict, "save_image", refuse)
    video = ffpp_mini / "original_sequences/youtube/c23/videos/000.mp4"
    code, out, err = run_cli(["predict", same_stem_faces[0], video, tmp_path / "missing.jpg", "--checkpoint",
                              checkpoint, "--json", "--heatmap", heat, "--frames", "2"], capsys)
    results = json.loads(out)  # --json still prints every input
    assert code == 0 and len(results) == 3
    img, vid, missing = results
    assert "--heatmap" in img["error"] and img["faces"] and 0 <= img["faces"][0]["prob_fake"] <= 1
    assert "--heatmap" in vid["error"] and len(vid["frames"]) == 2  # its overlays now fail the same way
    assert "missing.jpg" in missing["error"] and "no such file" in missing["error"]


def test_predict_big_photo_and_a_folder_with_a_dangling_link(checkpoint, astronaut, tmp_path, capsys):
    import cv2

    d = tmp_path / "in"
    d.mkdir()
    big = np.full((9000, 10000, 3), 90, np.uint8)  # a legal 90-megapixel photo with a face in it
    big[2000:6000, 3000:7000] = cv2.resize(astronaut, (4000, 4000))
    Image.fromarray(big).save(d / "big.jpg", quality=80)
    del big
    (d / "gone.png").symlink_to(tmp_path / "nowhere.png")
    code, out, err = run_cli(["predict", d, "--checkpoint", checkpoint, "--json"], capsys)
    by_name = {Path(r["path"]).name: r for r in json.loads(out)}
    assert code == 0 and set(by_name) == {"big.jpg", "gone.png"}
    assert len(by_name["big.jpg"]["faces"]) >= 1 and by_name["big.jpg"]["faces"][0]["box"][2] > 5000
    assert "gone.png" in by_name["gone.png"]["error"] and "no such file" in by_name["gone.png"]["error"]


def test_predict_nan_checkpoint_is_refused(tmp_path, same_stem_faces, capsys):
    net = build_detector("resnet18", pretrained=False, verbose=False)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    ckpt = save(tmp_path / "nan.pt", "detector", net, size=32)
    code, out, err = run_cli(["predict", same_stem_faces[0], "--checkpoint", ckpt], capsys)
    assert code == 1 and str(ckpt) in err and "NaN" in err and "nan" not in out


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_predict_malicious_pickle_is_not_run(tmp_path, same_stem_faces, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil()))
    code, _, err = run_cli(["predict", same_stem_faces[0], "--checkpoint", tmp_path / "evil.pt"], capsys)
    assert code == 1 and "evil.pt" in err and not marker.exists()


# --------------------------------------------------------------------------- videos

def live_video(path, num_frames=40):
    """A Matroska video whose header has no duration (as live WebM/MKV recordings have):
    OpenCV then reports a huge negative frame count although every frame decodes."""
    import cv2

    mkv = path.with_suffix(".tmp.mkv")
    w = cv2.VideoWriter(str(mkv), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(num_frames):
        w.write(np.full((48, 64, 3), 5 * i, np.uint8))
    w.release()
    data = bytearray(mkv.read_bytes())
    mkv.unlink()
    i = data.find(b"\x44\x89")  # the Segment Info's Duration element ...
    n = data[i + 2] - 0x80
    data[i:i + 3 + n] = bytes([0xEC, 0x80 + n + 1]) + bytes(n + 1)  # ... overwritten by a Void one
    path.write_bytes(bytes(data))
    return path


def test_video_without_credible_frame_count_is_read(tmp_path):
    import cv2

    from dfcourse.video import frame_count, read_frames

    p = live_video(tmp_path / "live.mkv")
    assert cv2.VideoCapture(str(p)).get(cv2.CAP_PROP_FRAME_COUNT) < 0  # the header really says nothing
    assert frame_count(p) == 40
    assert [i for i, _ in read_frames(p, 4)] == [0, 13, 26, 39]


# --------------------------------------------------------------------------- interrupts

@pytest.mark.slow
def test_interrupted_prepare_resumes_to_the_same_index(tmp_path, capsys):
    """SIGINT and SIGKILL at random points of `prepare --ffpp`, then a re-run: the same
    index.csv, skipped.csv and crop files as one uninterrupted run, and no temporary files."""
    import signal
    import subprocess
    import sys
    import time

    from dfcourse.demo import build_ffpp_mini

    # both methods (18 videos) of a tree with 24-frame clips (the shared fixture's have 5), so
    # that on a quiet machine too each interrupt lands mid-run
    tree = build_ffpp_mini(tmp_path / "tree", num_frames=24)
    args = ["prepare", "--ffpp", str(tree), "--methods", "FaceSwap,NeuralTextures", "--frames", "24",
            "--size", "32"]
    assert run_cli(args + ["--out", tmp_path / "ref"], capsys)[0] == 0  # the uninterrupted run
    out = tmp_path / "o"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    rng = np.random.default_rng(14)
    interrupted, seen = 0, []  # (signal, return code, videos done before, at the signal, finished)
    for sig in [signal.SIGINT, signal.SIGKILL, signal.SIGINT, signal.SIGKILL]:
        # a parent started in the background without job control (`cmd &` in a script, as CI
        # runners may do) passes SIGINT on *ignored*; give the child the default back, as a terminal would
        proc = subprocess.Popen([sys.executable, "-m", "dfcourse", *args, "--out", str(out)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        before = len(list(out.glob("crops/*/*/done.json")))
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and \
                len(list(out.glob("crops/*/*/done.json"))) <= before:  # wait until it is working
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.05))  # then interrupt soon, at a random point (a video takes ~0.1-0.3 s)
        at = len(list(out.glob("crops/*/*/done.json")))
        proc.send_signal(sig)
        stdout, err = proc.communicate(timeout=60)
        seen.append((sig.name, proc.returncode, before, at, "index written" in stdout))
        if "index written" in stdout:  # the signal came after the work, while Python was exiting
            continue
        interrupted += proc.returncode != 0
        if sig == signal.SIGINT and proc.returncode != 0:
            assert proc.returncode == 130 and "Traceback" not in err and "Re-run" in err, err
    assert interrupted >= 3, f"the interrupts came too late to test anything: {seen}"
    assert run_cli(args + ["--out", out], capsys)[0] == 0  # the re-run finishes the job
    for name in ("index.csv", "skipped.csv"):
        assert (out / name).read_text() == (tmp_path / "ref" / name).read_text()
    files = lambda d: sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(out) == files(tmp_path / "ref")
    assert_index_resolves(out / "index.csv")


def test_video_with_an_absurd_header_count_is_read(tmp_path, monkeypatch):
    import cv2

    from dfcourse import video

    path = video.write_video(tmp_path / "v.mp4", [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(12)])
    real_open = video._open

    class LyingHeader:  # what a damaged header looks like to OpenCV
        def __init__(self, cap):
            self.cap = cap

        def get(self, prop):
            return 1e12 if prop == cv2.CAP_PROP_FRAME_COUNT else self.cap.get(prop)

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(video, "_open", lambda p: LyingHeader(real_open(p)))
    assert video.frame_count(path) == 12
    assert [i for i, _ in video.read_frames(path, 4)] == [0, 4, 7, 11]
