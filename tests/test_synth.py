import numpy as np
import pytest

from dfcourse import synth
from dfcourse.faces import crop, landmarks_in_crop, square_box


@pytest.fixture(scope="module")
def face_lm(detector, astronaut):
    f = detector.detect_one(astronaut)[0]
    sq = square_box(f.box)
    return crop(astronaut, sq, 128), landmarks_in_crop(f.landmarks, sq, 128)


@pytest.fixture(scope="module")
def donor(detector):
    from dfcourse.demo import builtin_identities, view

    ident = [i for i in builtin_identities(detector, num_lfw=0) if i.name == "gracehopper"][0]
    return view(ident, 128, np.random.default_rng(1), jitter=False)


@pytest.mark.parametrize("method", synth.METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_is_exactly_where_pixels_changed(face_lm, donor, method, seed):
    from dfcourse.demo import forge

    face, lm = face_lm
    fake, mask = forge(method, face, lm, np.random.default_rng(seed), donor)
    changed = np.any(fake != face, axis=-1)
    assert fake.shape == face.shape and fake.dtype == np.uint8
    assert mask.shape == face.shape[:2] and 0 <= mask.min() and mask.max() <= 1
    assert not np.any(changed & (mask == 0)), "pixels changed outside the mask"
    core = mask > 0.5
    assert core.sum() > 0.02 * mask.size, "mask is implausibly small"
    assert changed[core].mean() > 0.8, "most of the mask core should differ from the source"
    res = synth.residual(fake, face)
    assert res[mask == 0].max() == 0 and res[core].mean() > 1


def test_residual_known_pair():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[1, 2] = [30, 60, 90]
    r = synth.residual(b, a)
    assert r[1, 2] == 60 and r.sum() == 60


def test_blend_is_target_where_mask_zero(rng):
    t = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    s = rng.integers(0, 255, (16, 16, 3)).astype(np.float32)
    m = np.zeros((16, 16), np.float32)
    m[4:8, 4:8] = 1
    out = synth.blend(t, s, m)
    assert np.array_equal(out[m == 0], t[m == 0])
    assert np.array_equal(out[m == 1], np.round(s[m == 1]).astype(np.uint8))
