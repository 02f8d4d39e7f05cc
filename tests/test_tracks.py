"""Face tracks reused by fakes (tracks.py) and the worker pool of prepare (workers.py)."""
import json
import shutil

import numpy as np
import pytest

from dfcourse.faces import Face, box_iou
from dfcourse.ffpp import prepare_ffpp
from dfcourse.index import read_index
from dfcourse.tracks import FaceCheck, Track, load_track, onet_input, save_track
from dfcourse.video import read_frames

BOX_IOU_TOL = 0.7  # the original's box vs MTCNN's box on the fake (a swapped-in face moves it)
FRAMES, SIZE = 3, 64


def _boxes(rows):
    return {(r["video_id"], r["frame_idx"]): [float(v) for v in r["box"].split()] for r in rows}


def _stats(out):
    return json.loads((out / "prepare_stats.json").read_text())


@pytest.fixture(scope="module")
def tree(ffpp_mini, tmp_path_factory):
    """The mini tree cut to 4 originals and their 4 FaceSwap fakes, plus a corrupt fake."""
    root = tmp_path_factory.mktemp("tracks") / "ffpp"
    shutil.copytree(ffpp_mini, root)
    shutil.rmtree(root / "manipulated_sequences" / "NeuralTextures")
    for p in [*root.rglob("004*.mp4"), *root.rglob("005*.mp4")]:
        p.unlink()
    (root / "manipulated_sequences/FaceSwap/c23/videos/000_002.mp4").write_bytes(b"not a video")
    return root


@pytest.fixture(scope="module")
def fresh(tree):
    """Today's way: every video detected, no workers."""
    out = tree.parent / "fresh"
    return out, read_index(prepare_ffpp(tree, out, num_frames=FRAMES, size=SIZE, workers=0, reuse_tracks=False))


@pytest.fixture(scope="module")
def reused(tree):
    out = tree.parent / "reused"
    return out, read_index(prepare_ffpp(tree, out, num_frames=FRAMES, size=SIZE, workers=0))


def test_reused_track_crops_match_fresh_detection(fresh, reused):
    (fresh_out, a), (out, b) = fresh, reused
    strip = lambda rows, root: [{k: (v.replace(str(root), "") if isinstance(v, str) else v)  # noqa: E731
                                 for k, v in r.items() if k != "box"} for r in rows]
    assert strip(a, fresh_out) == strip(b, out)  # same rows, paths and all
    ba, bb = _boxes(a), _boxes(b)
    ious = [box_iou(ba[k], bb[k]) for k in ba]
    assert min(ious) >= BOX_IOU_TOL, sorted(ious)[:5]
    assert all(ba[k] == bb[k] for k in ba if "_" not in k[0])  # originals: the same detection
    fakes = [r for r in b if r["label"] == 1]
    s = _stats(out)
    assert s["reused"] == len(fakes) and s["check_failed"] == 0
    assert s["mtcnn_frames"] == 4 * FRAMES < _stats(fresh_out)["mtcnn_frames"] == 8 * FRAMES
    for r in fakes:  # the aligned source of a reused crop is the original's crop, same box
        orig = next(o for o in b if o["video_id"] == r["video_id"][:3] and o["frame_idx"] == r["frame_idx"])
        assert orig["box"] == r["box"]
        assert open(orig["path"], "rb").read() == open(r["source_path"], "rb").read()
    assert "000_002.mp4" in (out / "skipped.csv").read_text()


def test_fake_whose_original_is_missing_is_detected(tree, tmp_path):
    root = tmp_path / "ffpp"
    shutil.copytree(tree, root)
    (root / "original_sequences/youtube/c23/videos/001.mp4").unlink()
    out = tmp_path / "out"
    rows = read_index(prepare_ffpp(root, out, num_frames=FRAMES, size=SIZE, workers=0))
    orphan = [r for r in rows if r["video_id"] == "001_000"]
    assert len(orphan) == FRAMES and all(r["source_path"] == "" for r in orphan)
    assert {r["video_id"] for r in rows if r["label"] == 1} == {"000_001", "001_000", "002_003", "003_002"}
    s = _stats(out)
    assert s["mtcnn_frames"] == 4 * FRAMES  # 3 originals + the orphan
    assert s["reused"] == 3 * FRAMES


def test_crops_failing_the_check_fall_back_to_detection(tree, fresh, tmp_path):
    out = tmp_path / "out"
    prepare_ffpp(tree, out, num_frames=FRAMES, size=SIZE, workers=0)
    track_file = out / "tracks" / "000.json"
    data = json.loads(track_file.read_text())
    for f in data["frames"]:  # corrupt: the face moved to the top-left corner
        f["box"] = [0.0, 0.0, 40.0, 40.0]
    track_file.write_text(json.dumps(data))
    (out / "crops/FaceSwap/000_001/done.json").unlink()  # redo this fake only
    rows = read_index(prepare_ffpp(tree, out, num_frames=FRAMES, size=SIZE, workers=0))
    s = _stats(out)
    assert s["resumed"] == 7 and s["check_failed"] == FRAMES and s["reused"] == 0
    assert s["mtcnn_frames"] == FRAMES  # the fallback detected exactly the failed frames
    got, want = _boxes(rows), _boxes(fresh[1])
    for k in [k for k in got if k[0] == "000_001"]:
        assert box_iou(got[k], want[k]) >= BOX_IOU_TOL
    src = [r["source_path"] for r in rows if r["video_id"] == "000_001"]
    assert len(src) == FRAMES and all(src)  # cut afresh from the original with the new box


def test_face_check_accepts_the_face_and_rejects_off_boxes(ffpp_mini, detector):
    frame = read_frames(ffpp_mini / "manipulated_sequences/FaceSwap/c23/videos/000_001.mp4", 1)[0][1]
    orig = read_frames(ffpp_mini / "original_sequences/youtube/c23/videos/000.mp4", 1)[0][1]
    box = detector.detect_one(orig)[0].box
    side = box[2] - box[0]
    off = [box + np.array([1, 0, 1, 0]) * 0.5 * side,  # half a face to the right
           np.array([0, 0, 40, 40], np.float32),      # background
           box + np.array([-1, -1, 1, 1]) * side]     # three times too big
    boxes = [box, *off]
    x = np.stack([onet_input(frame, b) for b in boxes])
    assert x.shape == (4, 48, 48, 3) and x.dtype == np.uint8
    assert FaceCheck()(x, boxes).tolist() == [True, False, False, False]


def test_track_file_round_trip(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "0003.png").write_bytes(b"png")
    face = Face(np.array([1, 2, 30, 40], np.float32), np.arange(10, dtype=np.float32).reshape(5, 2), 0.99)
    track = Track({0: None, 3: face}, {3: tmp_path / "c" / "0003.png"}, 64)
    back = load_track(save_track(tmp_path / "tracks" / "000.json", track))
    assert back.size == 64 and back.faces[0] is None
    assert np.allclose(back.faces[3].box, face.box) and np.allclose(back.faces[3].landmarks, face.landmarks)
    assert back.crops[3].resolve() == (tmp_path / "c" / "0003.png").resolve()
    assert np.allclose(back.reference(0), face.box)  # nearest frame with a face


def test_one_and_two_workers_give_the_same_index(tree, reused, tmp_path):
    outs = []
    for n in (1, 2):
        out = tmp_path / f"w{n}"
        prepare_ffpp(tree, out, num_frames=FRAMES, size=SIZE, workers=n)
        assert _stats(out)["workers"] == n
        outs.append(out)
    for name in ("index.csv", "skipped.csv"):  # index paths are relative to its folder
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes() == (reused[0] / name).read_bytes()
