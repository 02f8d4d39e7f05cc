import numpy as np
import pytest
from PIL import Image

from dfcourse.io import BadInputError, SkipLog, atomic_path, read_image, save_image


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "LA"])
def test_read_image_any_mode_gives_rgb_uint8(tmp_path, mode):
    arr = (np.arange(32 * 40) % 251).reshape(32, 40).astype(np.uint8)
    img = Image.fromarray(arr).convert(mode) if mode != "I;16" else Image.fromarray(arr.astype(np.uint16) * 257)
    path = tmp_path / f"x.{'png' if mode != 'CMYK' else 'jpg'}"
    img.save(path)
    out = read_image(path)
    assert out.shape == (32, 40, 3) and out.dtype == np.uint8
    if mode == "I;16":  # 16-bit scaled to the 8-bit range, not clipped
        assert abs(int(out[..., 0].max()) - int(arr.max())) <= 1


def test_read_image_downscales_huge(tmp_path):
    Image.new("RGB", (5000, 300), (10, 20, 30)).save(tmp_path / "wide.png")
    out = read_image(tmp_path / "wide.png", max_side=1000)
    assert max(out.shape[:2]) == 1000


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00garbage"])
def test_corrupt_image_names_the_file(tmp_path, content):
    p = tmp_path / "broken.png"
    p.write_bytes(content)
    with pytest.raises(BadInputError, match="broken.png"):
        read_image(p)


def test_missing_image(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        read_image(tmp_path / "nope.jpg")


def test_truncated_jpeg_is_bad_input(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:600])
    with pytest.raises(BadInputError, match="t.jpg"):
        read_image(p)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    save_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_skiplog_writes_csv(tmp_path):
    log = SkipLog()
    log.add("a.mp4", "corrupt")
    assert "a.mp4: corrupt" in log.summary()
    assert "a.mp4,corrupt" in log.write(tmp_path / "s.csv").read_text()
