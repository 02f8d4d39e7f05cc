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


# ------------------------------------------------ the capture chain and the cues (demo engine v3)
def _high_freq(img):
    import cv2

    g = img.astype(np.float32).mean(-1)
    return np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.0))


def test_develop_shares_the_noise_field_outside_the_forged_region():
    """A fake and its real frame differ only where the forgery is: the same noise field
    outside the mask, noise of the region's own strength inside it."""
    from dfcourse import capture

    flat = np.full((64, 64, 3), 128, np.uint8)
    cap = capture.Capture(noise=4.0, defocus=0.0, scale=1.0, codec="none", quality=0)
    real = capture.develop(flat, cap, 5)
    assert np.array_equal(real, capture.develop(flat, cap, 5)), "seeded"
    assert np.array_equal(real[..., 0], real[..., 1]), "grey stays grey"
    assert 3.5 < real[..., 0].astype(float).std() < 4.5
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1
    fake = capture.develop(flat, cap, 5, mask, region_noise=0.0)
    assert np.array_equal(fake[mask == 0], real[mask == 0])
    assert fake[mask == 1].std() == 0, "region noise 0: the region is clean"
    same = capture.develop(flat, cap, 5, mask, region_noise=None)
    assert np.array_equal(same, real), "no noise cue: the frame's noise goes on through the region"


def test_cue_strengths_switch_off_and_one_is_always_strong():
    from dfcourse import capture

    for seed in range(20):
        c = capture.draw_cues(np.random.default_rng(seed), 3.0)
        assert max(c[k] for k in capture.CUES) >= 0.5 and c["region_noise"] is not None
        off = capture.draw_cues(np.random.default_rng(seed), 3.0, cues=("colour",))
        assert off["resolution"] == 0 and off["noise"] == 0 and off["region_noise"] is None and off["colour"] > 0


def test_zero_strength_cues_leave_only_the_blend(face_lm):
    """With colour and resolution at 0, a self-blend changes the face only by its small shift."""
    face, lm = face_lm
    full, _ = synth.self_blend(face, lm, np.random.default_rng(0))
    none, _ = synth.self_blend(face, lm, np.random.default_rng(0), {"colour": 0.0, "resolution": 0.0})
    d_full = np.abs(full.astype(int) - face).mean()
    d_none = np.abs(none.astype(int) - face).mean()
    assert d_none < d_full


def test_colour_change_of_a_grey_frame_stays_grey(face_lm):
    face, lm = face_lm
    grey = np.repeat(face.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    for fn in (lambda r: synth.self_blend(grey, lm, r), lambda r: synth.rerender(grey, lm, r)):
        fake, _ = fn(np.random.default_rng(1))
        assert np.array_equal(fake[..., 0], fake[..., 1]) and np.array_equal(fake[..., 1], fake[..., 2])


def test_generated_loses_resolution_by_its_amount(face_lm):
    face, _ = face_lm
    g = synth.generated(face, np.random.default_rng(2))
    assert g.shape == face.shape and _high_freq(g).mean() < 0.6 * _high_freq(face).mean()
    assert np.allclose(synth.generated(face, np.random.default_rng(2), amount=0.0), face)
