import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dfcourse.ffpp import discover, official_splits, pair_splits, prepare_ffpp, prepare_folder
from dfcourse.index import identities, leakage, read_index
from dfcourse.io import BadInputError, read_image
from dfcourse.video import write_video


@pytest.fixture(scope="module")
def prepared(ffpp_mini, tmp_path_factory):
    root = tmp_path_factory.mktemp("ffpp_bad")
    shutil.copytree(ffpp_mini, root, dirs_exist_ok=True)
    vids = root / "original_sequences/youtube/c23/videos"
    (vids / "006.mp4").write_bytes(b"corrupt bytes")  # unreadable
    write_video(vids / "007.mp4", [np.zeros((64, 64, 3), np.uint8)] * 3)  # no face
    out = root.parent / (root.name + "_out")
    return root, out, prepare_ffpp(root, out, num_frames=3, size=64)


def test_prepare_writes_index_with_aligned_sources_and_masks(prepared):
    _, _, index = prepared
    rows = read_index(index)
    methods = {r["method"] for r in rows}
    assert methods == {"original", "FaceSwap", "NeuralTextures"}
    fakes = [r for r in rows if r["label"] == 1]
    assert fakes and all(r["mask_path"] and r["source_path"] for r in fakes)
    r = fakes[0]
    face, src, mask = read_image(r["path"]), read_image(r["source_path"]), read_image(r["mask_path"])
    assert face.shape == src.shape == mask.shape == (64, 64, 3)
    diff = np.abs(face.astype(int) - src.astype(int)).mean(-1)
    on, off = diff[mask[..., 0] > 0], diff[mask[..., 0] == 0]
    assert on.mean() > 3 * off.mean()  # the fake differs from its source inside the mask
    assert r["video_id"].startswith(Path(r["source_path"]).parent.name.split("_")[0])


def test_bad_videos_are_skipped_and_reported(prepared):
    _, out, index = prepared
    skipped = (out / "skipped.csv").read_text()
    assert "006.mp4" in skipped and "cannot open" in skipped
    assert "007.mp4" in skipped and "no face found" in skipped
    assert {r["video_id"] for r in read_index(index)}.isdisjoint({"006", "007"})


def test_prepare_is_resumable(prepared):
    root, out, index = prepared
    done = sorted(out.glob("crops/*/*/done.json"))
    stamps = [p.stat().st_mtime_ns for p in done]
    crops = sorted(out.glob("crops/*/*/*.png"))
    crops[0].write_bytes(b"touched")  # a finished video is not redone
    prepare_ffpp(root, out, num_frames=3, size=64)
    assert [p.stat().st_mtime_ns for p in done] == stamps
    assert crops[0].read_bytes() == b"touched"


def test_no_video_id_in_two_splits(prepared):
    rows = read_index(prepared[2])
    assert leakage(rows) == {}
    per_split = {}
    for r in rows:
        per_split.setdefault(r["split"], set()).update(identities(r["video_id"]))
    s = list(per_split.values())
    assert all(a.isdisjoint(b) for i, a in enumerate(s) for b in s[i + 1:])


def test_link_groups_names_each_chain_by_its_smallest_id_whatever_the_order():
    from dfcourse.index import link_groups

    pairs = [("005", "002"), ("002", "009"), ("001", "003"), ("007", "008"), ("003", "004")]
    originals = [f"{i:03d}" for i in range(10)]
    want = {"000": "000", "001": "001", "003": "001", "004": "001", "002": "002", "005": "002",
            "009": "002", "006": "006", "007": "007", "008": "007"}
    assert link_groups(originals, pairs) == want
    assert link_groups(originals[::-1], [(s, t) for t, s in reversed(pairs)]) == want
    assert link_groups([], [("b", "a")]) == {"a": "a", "b": "a"}  # ids named only by a fake
    assert link_groups([], []) == {}


def test_pair_split_keeps_linked_originals_together():
    originals = {f"{i:03d}": None for i in range(40)}
    fakes = [("Deepfakes", f"{i:03d}", f"{i + 1:03d}", None, None) for i in range(0, 40, 2)]
    split = pair_splits(originals, fakes, seed=3)
    for _, t, s, _, _ in fakes:
        assert split[t] == split[s] == split[f"{t}_{s}"]
    counts = {k: list(split.values()).count(k) for k in ("train", "val", "test")}
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    assert pair_splits(originals, fakes, seed=3) == split  # deterministic


def test_official_split_files(tmp_path):
    for name, pairs in {"train": [["000", "001"]], "val": [["002", "003"]], "test": [["004", "005"]]}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(pairs))
    split = official_splits(tmp_path)
    assert split["000"] == split["001_000"] == "train" and split["003_002"] == "val"
    (tmp_path / "val.json").unlink()
    with pytest.raises(BadInputError, match="val.json"):
        official_splits(tmp_path)


def test_layout_errors_say_what_is_expected(tmp_path, ffpp_mini):
    with pytest.raises(BadInputError, match="original_sequences"):
        discover(tmp_path)
    with pytest.raises(BadInputError, match="c23"):
        discover(ffpp_mini, compression="c40")


def test_prepare_folder_dataset(tmp_path):
    from PIL import Image

    for split in ("train", "valid", "test"):
        for cls in ("real", "fake"):
            d = tmp_path / "ds" / split / cls
            d.mkdir(parents=True)
            Image.new("RGB", (80, 60), (100, 50, 25)).save(d / "a.jpg")
            Image.new("L", (40, 40), 128).save(d / "grey.png")
    (tmp_path / "ds/train/fake/broken.jpg").write_bytes(b"nope")
    rows = read_index(prepare_folder(tmp_path / "ds", tmp_path / "out", size=32))
    assert len(rows) == 12 and {r["split"] for r in rows} == {"train", "val", "test"}
    assert all(read_image(r["path"]).shape == (32, 32, 3) for r in rows)
    assert "broken.jpg" in (tmp_path / "out/skipped.csv").read_text()
    with pytest.raises(BadInputError, match="no images"):
        prepare_folder(tmp_path / "out", tmp_path / "out2")
