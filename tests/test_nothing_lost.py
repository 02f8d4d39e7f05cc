"""Hostile and unusual input through the real commands, second round: earlier outputs are
never re-ingested, odd files (link loops, tiny images, unreadable folders) are skipped items
with a reason, and `predict --localize` never prints NaN or stays silent. Each test checks
the user's files afterwards: nothing outside the output folder changed, every index path
resolves, every skip is reported, and `--json` output is strict JSON."""
import contextlib
import csv
import hashlib
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_hostile import _img, assert_index_resolves, run_cli

from dfcourse.checkpoints import save
from dfcourse.faces import FaceDetector
from dfcourse.index import COLUMNS
from dfcourse.io import OUTPUT_MARKER, BadInputError
from dfcourse.localization import MesoLocalizer

MIN_SIDE = FaceDetector().min_side  # MTCNN's minimum, measured in test_min_side_is_mtcnns_measured_minimum


# --------------------------------------------------------------------------- helpers

def snapshot(root, out=None) -> dict:
    """Every file, link and folder under ``root`` except inside ``out``: {path: content hash,
    link target or "dir"}. Two equal snapshots: nothing of the user's was changed or added."""
    skip = os.path.abspath(out) if out is not None else None
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip and (dirpath == skip or dirpath.startswith(skip + os.sep)):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if p == skip:
                continue
            if os.path.islink(p):
                snap[p] = "link:" + os.readlink(p)
            elif os.path.isdir(p):
                snap[p] = "dir"
            else:
                snap[p] = hashlib.sha1(Path(p).read_bytes()).hexdigest()
    return snap


def skipped_rows(out) -> dict:
    """``{item: reason}`` of ``out/skipped.csv``."""
    with open(Path(out) / "skipped.csv", newline="") as f:
        return {r["item"]: r["reason"] for r in csv.DictReader(f)}


def strict_json(text):
    """``json.loads`` that refuses NaN and Infinity, as strict parsers do."""
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")
    return json.loads(text, parse_constant=refuse)


def twelve_images(ds) -> Path:
    """ROOT/<train|val|test>/<real|fake>/{0,1}.jpg: 12 images, 2 per class and split."""
    for i, (split, cls, k) in enumerate(itertools.product(("train", "val", "test"), ("real", "fake"), range(2))):
        _img(ds / split / cls / f"{k}.jpg", i)
    return ds


def face_photos(folder, astronaut, n=5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.roll(astronaut, 20 * i, axis=1)[::2, ::2]).save(folder / f"p{i}.jpg")
    return folder


@contextlib.contextmanager
def unreadable(folder, monkeypatch):
    """``folder`` cannot be listed. As a normal user it really is (mode 000); root reads
    anything whatever the mode, so there listing it fails the way a folder of another user
    does: ``os.scandir`` raises PermissionError for it (simulated, in this process)."""
    if os.geteuid() != 0:
        folder.chmod(0)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    real = os.scandir

    def scandir(path="."):
        if os.path.abspath(path) == os.path.abspath(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    with monkeypatch.context() as m:
        m.setattr(os, "scandir", scandir)
        yield


def one_photo(folder, astronaut, name="good.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(astronaut[::2, ::2]).save(folder / name)
    return folder / name


@pytest.fixture(scope="module")
def checkpoint(detector_checkpoint):
    return detector_checkpoint


@pytest.fixture(scope="module")
def localizer(tmp_path_factory):
    torch.manual_seed(0)
    return save(tmp_path_factory.mktemp("loc") / "loc.pt", "localizer", MesoLocalizer(), size=32)


# --------------------------------------------------------------------------- earlier outputs

def test_an_index_is_recognised_as_an_output(tmp_path):
    from dfcourse.index import write_index
    from dfcourse.io import INDEX_KEY_COLUMNS, output_sign

    assert INDEX_KEY_COLUMNS <= set(COLUMNS)
    write_index([], tmp_path / "old/index.csv")
    (tmp_path / "other").mkdir()
    (tmp_path / "other/index.csv").write_text("path,label\nx.jpg,1\n")  # somebody else's index
    assert output_sign(tmp_path / "old") == "index.csv" and output_sign(tmp_path / "other") is None


@pytest.mark.parametrize("sign", ["marker and index", "index only", "marker only"])
def test_prepare_skips_an_earlier_output_inside_the_input(sign, tmp_path, capsys):
    ds = twelve_images(tmp_path / "ds2")
    old = ds / "train/real/_out"
    code, _, err = run_cli(["prepare", "--folder", ds, "--out", old, "--size", "16"], capsys)
    assert code == 0, err
    assert len(assert_index_resolves(old / "index.csv")) == 12  # this run's own --out is left out
    if sign == "index only":  # written before output folders were marked
        (old / OUTPUT_MARKER).unlink()
    elif sign == "marker only":  # a run interrupted before its index
        (old / "index.csv").unlink()
    before = snapshot(tmp_path, tmp_path / "o_res")
    code, out, err = run_cli(["prepare", "--folder", ds, "--out", tmp_path / "o_res", "--size", "16"], capsys)
    assert code == 0, err
    rows = assert_index_resolves(tmp_path / "o_res/index.csv")
    assert len(rows) == 12  # not 24: the old crops did not come back in as train/real
    assert sorted((r["split"], r["label"]) for r in rows) == sorted(
        (s, lab) for s in ("train", "val", "test") for lab in (0, 1) for _ in range(2))
    reason = skipped_rows(tmp_path / "o_res")[str(old)]
    assert "earlier dfcourse output" in reason and "Move it out" in reason and str(old) in out
    assert snapshot(tmp_path, tmp_path / "o_res") == before


@pytest.mark.parametrize("command", ["prepare", "demo-data", "predict"])
def test_output_folder_that_is_the_input_is_refused(command, checkpoint, astronaut, tmp_path, capsys):
    """--out (or --heatmap) naming the very folder whose images are read: a clear error, and
    nothing written into the user's folder."""
    ds = twelve_images(tmp_path / "ds")
    face_photos(ds / "train/real", astronaut, n=3)
    inside = ds / "train/real"
    args = {"prepare": ["prepare", "--folder", ds, "--out", inside],
            "demo-data": ["demo-data", "--faces", inside, "--out", inside],
            "predict": ["predict", inside, "--checkpoint", checkpoint, "--heatmap", inside]}[command]
    before = snapshot(tmp_path)
    code, out, err = run_cli(args, capsys)
    assert code == 1 and str(inside) in err and "mix" in err and "outside" in err
    assert snapshot(tmp_path) == before


def test_predict_skips_earlier_outputs_and_its_own_overlays(checkpoint, astronaut, tmp_path, capsys):
    photos = tmp_path / "photos"
    one_photo(photos, astronaut)
    heat = photos / "heat"  # the overlays go inside the folder predicted on
    for _ in range(2):  # the 2nd run must not predict on the 1st run's overlays
        code, out, err = run_cli(["predict", photos, "--checkpoint", checkpoint, "--json", "--heatmap", heat],
                                 capsys)
        results = strict_json(out)
        assert code == 0 and [Path(r["path"]).name for r in results] == ["good.jpg"], results
        assert Path(results[0]["faces"][0]["heatmap_path"]).parent == heat
    old = photos / "old"  # an earlier prepare output, from before outputs were marked
    (old / "crops").mkdir(parents=True)
    Image.fromarray(astronaut[::2, ::2]).save(old / "crops/x.png")
    (old / "index.csv").write_text(",".join(COLUMNS) + "\n")
    before = snapshot(tmp_path)
    code, out, err = run_cli(["predict", photos, "--checkpoint", checkpoint, "--json"], capsys)
    by_path = {r["path"]: r for r in strict_json(out)}
    assert code == 0 and set(by_path) == {str(old), str(heat), str(photos / "good.jpg")}
    for folder in (old, heat):  # reported, with the way to include them
        assert "earlier dfcourse output" in by_path[str(folder)]["error"]
    assert by_path[str(photos / "good.jpg")]["faces"]
    assert snapshot(tmp_path) == before


def test_demo_data_skips_an_earlier_demo_a_link_loop_and_an_unreadable_folder(tmp_path, astronaut, capsys,
                                                                                 monkeypatch):
    faces = face_photos(tmp_path / "faces", astronaut)
    code, _, err = run_cli(["demo-data", "--faces", faces, "--out", faces / "old", "--size", "32",
                            "--frames", "1"], capsys)
    assert code == 0, err
    os.symlink("me.jpg", faces / "me.jpg")  # a link to itself
    locked = faces / "locked"
    one_photo(locked, astronaut, "hidden.jpg")
    before = snapshot(tmp_path, tmp_path / "d")
    with unreadable(locked, monkeypatch):
        code, _, err = run_cli(["demo-data", "--faces", faces, "--out", tmp_path / "d", "--size", "32",
                                "--frames", "1"], capsys)
    assert code == 0, err
    rows = assert_index_resolves(tmp_path / "d/index.csv")
    assert {r["video_id"] for r in rows} == {f"p{i}" for i in range(5)}  # no crop of the old demo became a person
    skipped = skipped_rows(tmp_path / "d")
    assert "earlier dfcourse output" in skipped[str(faces / "old")]
    assert "symbolic link loop" in skipped[str(faces / "me.jpg")]
    assert "cannot read this folder" in skipped[str(locked)] and "chmod" in skipped[str(locked)]
    assert snapshot(tmp_path, tmp_path / "d") == before


# --------------------------------------------------------------------------- link loops

def test_symlink_loop_is_a_skipped_item_in_prepare_and_predict(checkpoint, tmp_path, capsys):
    ds = twelve_images(tmp_path / "ds")
    loop = ds / "train/real/me.jpg"
    os.symlink("me.jpg", loop)
    before = snapshot(tmp_path, tmp_path / "o")
    code, out, err = run_cli(["prepare", "--folder", ds, "--out", tmp_path / "o", "--size", "16"], capsys)
    assert code == 0, err
    assert len(assert_index_resolves(tmp_path / "o/index.csv")) == 12
    assert "symbolic link loop" in skipped_rows(tmp_path / "o")[str(loop)]
    assert snapshot(tmp_path, tmp_path / "o") == before

    for target in (ds / "train/real", loop):  # in a folder, and named directly
        code, out, err = run_cli(["predict", target, "--checkpoint", checkpoint, "--json"], capsys)
        by_path = {r["path"]: r for r in strict_json(out)}
        assert "symbolic link loop" in by_path[str(loop)]["error"] and "me.jpg" in by_path[str(loop)]["error"]
        assert len(by_path) == (3 if target.is_dir() else 1) and code == (0 if target.is_dir() else 1)
    assert snapshot(tmp_path, tmp_path / "o") == before


# --------------------------------------------------------------------------- unreadable folders

def test_unreadable_subfolder_is_reported_by_prepare_and_predict(checkpoint, tmp_path, capsys, monkeypatch):
    ds = twelve_images(tmp_path / "ds")
    locked = ds / "train/real/locked"
    for k in range(3):
        _img(locked / f"{k}.jpg", 50 + k)
    before = snapshot(tmp_path, tmp_path / "o")
    with unreadable(locked, monkeypatch):
        code, out, err = run_cli(["prepare", "--folder", ds, "--out", tmp_path / "o", "--size", "16"], capsys)
        assert code == 0, err
        rows = assert_index_resolves(tmp_path / "o/index.csv")
        assert len(rows) == 12
        assert "cannot read this folder" in skipped_rows(tmp_path / "o")[str(locked)] and str(locked) in out

        code, out, err = run_cli(["predict", ds / "train/real", "--checkpoint", checkpoint, "--json"], capsys)
        by_path = {r["path"]: r for r in strict_json(out)}
        assert code == 0 and "cannot read this folder" in by_path[str(locked)]["error"]
        assert {Path(p).name for p in by_path} == {"0.jpg", "1.jpg", "locked"}
    assert snapshot(tmp_path, tmp_path / "o") == before


@pytest.mark.parametrize("where", ["split folder", "dataset root"])
def test_folder_that_cannot_be_entered(where, tmp_path, capsys, monkeypatch):
    """A folder without search permission: what is inside cannot even be looked at (``stat``
    fails). Root may enter anything, so as root that refusal is simulated, in this process."""
    ds = twelve_images(tmp_path / "ds")
    closed = ds / "train" if where == "split folder" else ds
    if os.geteuid() != 0:
        closed.chmod(0o600)
    else:
        real = os.stat

        def stat(path, *a, **k):
            if os.path.dirname(os.path.abspath(path)) == str(closed):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *a, **k)
        monkeypatch.setattr(os, "stat", stat)
    try:
        code, out, err = run_cli(["prepare", "--folder", ds, "--out", tmp_path / "o", "--size", "16"], capsys)
    finally:
        monkeypatch.undo()
        closed.chmod(0o755)
    if where == "dataset root":
        assert code == 1 and str(ds) in err and "cannot read this folder" in err and "chmod" in err
        assert not (tmp_path / "o/index.csv").exists()
        return
    assert code == 0, err
    assert len(assert_index_resolves(tmp_path / "o/index.csv")) == 8
    skipped = skipped_rows(tmp_path / "o")
    for cls in ("real", "fake"):
        assert "cannot read this folder" in skipped[str(closed / cls)]


def test_unreadable_ffpp_folders_are_reported_not_taken_for_missing(ffpp_mini, tmp_path, capsys, monkeypatch):
    root = tmp_path / "ff"
    shutil.copytree(ffpp_mini, root)
    (root / OUTPUT_MARKER).unlink()  # the copy is an input here
    videos = root / "manipulated_sequences/FaceSwap/c23/videos"
    masks = root / "manipulated_sequences/NeuralTextures/masks/videos"
    before = snapshot(tmp_path, tmp_path / "o")
    with unreadable(videos, monkeypatch), unreadable(masks, monkeypatch):
        code, out, err = run_cli(["prepare", "--ffpp", root, "--out", tmp_path / "o", "--methods",
                                  "FaceSwap,NeuralTextures", "--frames", "1", "--size", "32"], capsys)
    assert code == 0, err
    rows = assert_index_resolves(tmp_path / "o/index.csv")
    assert {r["method"] for r in rows} == {"original", "NeuralTextures"} and not any(r["mask_path"] for r in rows)
    skipped = skipped_rows(tmp_path / "o")
    for folder in (videos, masks):
        assert "cannot read this folder" in skipped[str(folder)] and "chmod" in skipped[str(folder)]
    assert "FaceSwap: no videos" not in out and "NeuralTextures: no mask videos" not in out  # not "download"
    assert snapshot(tmp_path, tmp_path / "o") == before


# --------------------------------------------------------------------------- tiny images

@pytest.mark.parametrize("min_face_size", [12, 20])
def test_min_side_is_mtcnns_measured_minimum(min_face_size):
    """The smallest side facenet-pytorch's MTCNN runs on, found by running it, is the one
    FaceDetector checks against; below it the detector says so instead of failing inside."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, post_process=False)

    def runs(side, long=50):
        try:
            mtcnn.detect(np.full((1, side, long, 3), 128, np.uint8), landmarks=True)
            return True
        except Exception:
            return False
    measured = next(s for s in range(1, 100) if runs(s))
    assert all(runs(s) for s in range(measured, measured + 8)) and not runs(measured - 1, long=200)
    det = FaceDetector(min_face_size=min_face_size)
    assert det.min_side == measured
    assert det.detect([np.zeros((measured, 60, 3), np.uint8)]) == [[]]
    with pytest.raises(BadInputError, match=f"too small to find a face \\(needs >= {measured} px"):
        det.detect([np.zeros((measured - 1, 60, 3), np.uint8)])


def test_tiny_images_are_too_small_to_find_a_face(checkpoint, tmp_path, capsys):
    d = tmp_path / "tiny"
    sides = [(8, 8), (12, 12), (MIN_SIDE - 1, MIN_SIDE - 1), (MIN_SIDE - 1, 60), (MIN_SIDE, MIN_SIDE)]
    for k, (h, w) in enumerate(sides):
        _img(d / f"face{h}x{w}.png", k, size=(w, h))
    before = snapshot(tmp_path)
    code, out, err = run_cli(["predict", d, "--checkpoint", checkpoint, "--json"], capsys)
    by_name = {Path(r["path"]).name: r for r in strict_json(out)}
    assert code == 0 and len(by_name) == len(sides)
    for h, w in sides:
        r = by_name[f"face{h}x{w}.png"]
        if min(h, w) < MIN_SIDE:
            assert f"too small to find a face (needs >= {MIN_SIDE} px" in r["error"], r
            assert f"face{h}x{w}.png" in r["error"] and "torch.cat" not in r["error"]
        else:
            assert "error" not in r and r["faces"] == []  # searched: a plain colour has no face
    assert snapshot(tmp_path) == before


def test_demo_data_faces_with_a_thumbnail_finishes(tmp_path, astronaut, capsys):
    faces = face_photos(tmp_path / "faces", astronaut)
    Image.fromarray(astronaut[::40, ::40][:12, :12]).save(faces / "thumb.png")  # a 12x12 thumbnail
    before = snapshot(tmp_path, tmp_path / "d")
    code, out, err = run_cli(["demo-data", "--faces", faces, "--out", tmp_path / "d", "--size", "32",
                              "--frames", "1"], capsys)
    assert code == 0, err
    rows = assert_index_resolves(tmp_path / "d/index.csv")
    assert len({r["video_id"] for r in rows}) == 5
    reason = skipped_rows(tmp_path / "d")[str(faces / "thumb.png")]
    assert "12x12" in reason and f"too small to find a face (needs >= {MIN_SIDE} px" in reason
    assert snapshot(tmp_path, tmp_path / "d") == before


# --------------------------------------------------------------------------- predict --localize

def test_nan_localizer_is_refused(checkpoint, astronaut, tmp_path, capsys):
    net = MesoLocalizer()
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    bad = save(tmp_path / "nan_loc.pt", "localizer", net, size=32)
    photo = one_photo(tmp_path / "in", astronaut)
    before = snapshot(tmp_path)
    for extra in (["--json"], []):
        code, out, err = run_cli(["predict", photo, "--checkpoint", checkpoint, "--localize", "--localizer", bad,
                                  "--heatmap", tmp_path / "heat", *extra], capsys)
        assert code == 1 and str(bad) in err and "NaN" in err and "--localizer" in err
        assert "nan" not in out.lower()
    assert snapshot(tmp_path) == before  # refused before anything was written


@pytest.mark.parametrize("kind", ["localizer", "detector"])
def test_checkpoint_with_input_size_0_blames_the_checkpoint(kind, checkpoint, localizer, astronaut, tmp_path,
                                                            capsys):
    photo = one_photo(tmp_path / "in", astronaut)
    if kind == "localizer":
        bad = save(tmp_path / "loc0.pt", "localizer", MesoLocalizer(), size=0)
        args = ["--checkpoint", checkpoint, "--localize", "--localizer", bad]
    else:
        from dfcourse.models import build_detector

        bad = save(tmp_path / "det0.pt", "detector", build_detector("resnet18", pretrained=False, verbose=False),
                   size=0)
        args = ["--checkpoint", bad]
    code, out, err = run_cli(["predict", photo, *args], capsys)
    assert code == 1 and str(bad) in err and "input size is 0" in err
    assert "good.jpg" not in out + err  # the photo is not blamed


def test_localize_heatmap_on_a_video_writes_its_maps(checkpoint, localizer, ffpp_mini, astronaut, tmp_path,
                                                      capsys):
    video = ffpp_mini / "original_sequences/youtube/c23/videos/000.mp4"
    photo = one_photo(tmp_path / "in", astronaut)
    heat = tmp_path / "heat"
    before = snapshot(tmp_path, heat), hashlib.sha1(video.read_bytes()).hexdigest()
    code, out, err = run_cli(["predict", video, photo, "--checkpoint", checkpoint, "--localize", "--localizer",
                              localizer, "--heatmap", heat, "--frames", "3", "--json"], capsys)
    vid, img = strict_json(out)
    assert code == 0 and "error" not in vid and "error" not in img
    assert len(vid["frames"]) == 3 and all(0 <= f["loc_prob_fake"] <= 1 for f in vid["frames"])
    assert 0 <= vid["video_loc_prob_fake"] <= 1
    assert vid["overlay_frame_idx"] in [f["frame_idx"] for f in vid["frames"]]
    assert max(vid["frames"], key=lambda f: f["prob_fake"])["frame_idx"] == vid["overlay_frame_idx"]
    for key in ("heatmap_path", "map_path"):
        assert Path(vid[key]).parent == heat and Image.open(vid[key]).size == Image.open(img["faces"][0][key]).size
    assert {p.name for p in heat.glob("000_*")} == {Path(vid["heatmap_path"]).name, Path(vid["map_path"]).name}
    code, out, err = run_cli(["predict", video, "--checkpoint", checkpoint, "--localize", "--localizer", localizer,
                              "--heatmap", heat, "--frames", "3"], capsys)
    assert code == 0 and "localizer p(fake)=" in out and vid["map_path"] in out  # said in plain text too
    assert (snapshot(tmp_path, heat), hashlib.sha1(video.read_bytes()).hexdigest()) == before


def test_localizer_without_localize_is_used_and_checked(checkpoint, localizer, astronaut, tmp_path, capsys):
    photo = one_photo(tmp_path / "in", astronaut)
    code, out, err = run_cli(["predict", photo, "--checkpoint", checkpoint, "--localizer", localizer, "--json"],
                             capsys)
    assert code == 0 and str(localizer) in err and "without --localize" in err
    assert all(0 <= f["loc_prob_fake"] <= 1 for f in strict_json(out)[0]["faces"])
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    for bad in (tmp_path / "missing.pt", tmp_path / "broken.pt"):  # the file is checked, not ignored
        code, out, err = run_cli(["predict", photo, "--checkpoint", checkpoint, "--localizer", bad], capsys)
        assert code == 1 and str(bad) in err and out == ""
