import re
from pathlib import Path

import numpy as np

from dfcourse.index import COLUMNS, leakage, read_index
from dfcourse.io import read_image


def test_demo_index_contract(demo_index):
    rows = read_index(demo_index)
    assert set(rows[0]) == set(COLUMNS)
    assert {r["method"] for r in rows} == {"original", "selfblend", "swap", "rerender"}
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    for r in rows:
        assert Path(r["path"]).is_file()
        assert (r["label"] == 1) == bool(r["mask_path"]) == bool(r["source_path"])


def test_demo_masks_match_changed_pixels(demo_index):
    """A fake and its real frame share their noise field and codec settings, so they differ
    where the mask is; outside it (more than a codec block away) only by compression."""
    import cv2

    fakes = [r for r in read_index(demo_index) if r["label"] == 1]
    for r in fakes[:: max(1, len(fakes) // 25)]:
        fake, src = read_image(r["path"]).astype(int), read_image(r["source_path"]).astype(int)
        mask = read_image(r["mask_path"])[..., 0]
        far = cv2.dilate((mask > 0).astype(np.uint8), np.ones((17, 17), np.uint8)) == 0
        diff = np.abs(fake - src).mean(-1)
        if far.any():
            # compression noise only: on the 128 px demo its mean was at most 1.9 grey levels (99 % under 1.2)
            assert diff[far].mean() < 2.5, f"{r['path']}: changed far from its mask ({diff[far].mean():.2f})"
        assert diff[mask > 127].mean() > diff[far].mean() if far.any() else diff[mask > 127].mean() > 0, r["path"]
        residual = read_image(r["mask_path"].replace("_mask.png", "_residual.png"))[..., 0]
        assert np.array_equal(residual, np.abs(fake - src).mean(-1).round().astype(np.uint8))


def test_demo_split_by_identity_and_swap_donors_stay_in_split(demo_index):
    rows = read_index(demo_index)
    assert leakage(rows) == {}
    split_of = {r["video_id"]: r["split"] for r in rows}
    swaps = [r for r in rows if r["method"] == "swap"]
    assert swaps
    for r in swaps:
        donor = re.search(r"swap-([A-Za-z0-9]+)\.png$", r["path"]).group(1)
        assert donor != r["video_id"] and split_of[donor] == r["split"]


def test_demo_from_a_folder_of_faces(tmp_path, astronaut):
    from PIL import Image

    from dfcourse.demo import build_demo

    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(astronaut, 20 * i, axis=1)).save(faces / f"person_{i}.jpg")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(faces / "blank.png")
    (faces / "corrupt.jpg").write_bytes(b"junk")
    index = build_demo(tmp_path / "out", size=48, frames_per_id=1, faces_dir=faces)
    rows = read_index(index)
    assert {r["video_id"] for r in rows} == {"person0", "person1", "person2"}
    skipped = (tmp_path / "out" / "skipped.csv").read_text()
    assert "blank.png,no face found" in skipped and "corrupt.jpg" in skipped


def test_demo_records_its_engine_version_and_identities(demo_index):
    from dfcourse.demo import DEMO_VERSION, IDENTITIES_FILE, built_version, demo_identities

    folder = Path(demo_index).parent
    assert built_version(folder) == DEMO_VERSION
    names = {i.name for i in demo_identities("train", num_lfw=12, cache=folder / IDENTITIES_FILE)}
    assert names == {r["video_id"] for r in read_index(demo_index, split="train")}
    assert built_version(folder / "nowhere") == 0


def test_a_demo_of_another_engine_version_is_rebuilt(tmp_path, monkeypatch, capsys):
    """A student's data/demo built by an older course (other forgeries) must not be reused:
    its runs would be of other data than the notebook's text describes."""
    from dfcourse import course as dc
    from dfcourse.demo import DEMO_VERSION, VERSION_FILE

    built = []

    def fake_build(out, seed=0):
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.csv").write_text("path\n")
        (out / VERSION_FILE).write_text(f"{DEMO_VERSION}\n")
        built.append(out)

    monkeypatch.setattr(dc, "build_demo", fake_build)
    course = dc.Course("t", True, "test", "cpu", 0, "", True, tmp_path)
    old = tmp_path / "data" / "demo"
    old.mkdir(parents=True)
    (old / "index.csv").write_text("path\n")
    (old / "stale.png").write_bytes(b"old")
    assert dc.ensure_demo(course) == old / "index.csv" and len(built) == 1
    assert "version 0" in capsys.readouterr().out and not (old / "stale.png").exists()
    dc.ensure_demo(course)
    assert len(built) == 1, "a demo of this version is reused"


def test_demo_crops_exact_landmarks_reach_the_cache_without_a_detector(demo_index, tmp_path, monkeypatch):
    """build_demo writes each real crop's exact landmarks; ensure_demo's cache then serves them,
    so self-blending the demo's reals runs no face detector."""
    import json

    from dfcourse import selfblend
    from dfcourse.course import share_crop_landmarks
    from dfcourse.demo import CROP_LANDMARKS_FILE
    from dfcourse.index import read_index

    reals = [r for r in read_index(demo_index) if r["label"] == 0]
    exact = json.loads((demo_index.parent / CROP_LANDMARKS_FILE).read_text())
    assert set(exact) == {str(r["path"]) for r in reals}
    lm = np.array(list(exact.values()))
    assert lm.shape == (len(reals), 5, 2) and (lm > 0).all() and (lm < 1).all()
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all()  # left eye left of the right eye, in every crop
    cache = tmp_path / "landmarks.json"
    cache.write_text(json.dumps({str(reals[0]["path"]): [[0.1, 0.1]] * 5, "/elsewhere.png": [[0.5, 0.5]] * 5}))
    share_crop_landmarks(demo_index.parent / CROP_LANDMARKS_FILE, cache)
    merged = json.loads(cache.read_text())
    assert merged["/elsewhere.png"] == [[0.5, 0.5]] * 5 and merged[str(reals[0]["path"])] == exact[str(reals[0]["path"])]

    def no_detector(*a, **k):
        raise AssertionError("a face detector ran on a demo crop with known landmarks")

    monkeypatch.setattr(selfblend, "FaceDetector", no_detector)
    got = selfblend.real_landmarks(reals, 64, cache=cache)
    assert np.allclose(got, lm.astype(np.float32) * 64, atol=1e-3)
