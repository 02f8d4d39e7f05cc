import numpy as np
import pytest

from dfcourse.io import BadInputError
from dfcourse.video import frame_count, read_frames, sample_indices, write_video


def test_sample_indices_evenly_spaced():
    assert sample_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert sample_indices(3, 8).tolist() == [0, 1, 2]
    assert sample_indices(0, 8).tolist() == []


def test_roundtrip_reads_requested_frames(tmp_path):
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(12)]
    path = write_video(tmp_path / "v.mp4", frames)
    assert frame_count(path) == 12
    got = read_frames(path, num_frames=4)
    assert [i for i, _ in got] == [0, 4, 7, 11]
    for i, f in got:  # lossy codec, but a flat grey level survives
        assert f.shape == (48, 64, 3) and abs(float(f.mean()) - 10 * i) < 4


def test_corrupt_and_empty_videos(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(BadInputError, match="bad.mp4"):
        read_frames(bad)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty.mp4"):
        read_frames(empty)
    with pytest.raises(BadInputError, match="no such video"):
        read_frames(tmp_path / "missing.mp4")
