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


# ------------------------------------------------ the camera and the generator (demo engine v2)
def _high_freq(img):
    import cv2

    g = img.astype(np.float32).mean(-1)
    return np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.0))


def test_camera_noise_is_seeded_grey_on_grey_and_of_the_asked_strength():
    flat = np.full((64, 64, 3), 128, np.uint8)
    a = synth.camera_noise(flat, np.random.default_rng(3), sigma=(4.0, 4.0))
    assert np.array_equal(a, synth.camera_noise(flat, np.random.default_rng(3), sigma=(4.0, 4.0)))
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]), "grey stays grey"
    assert 3.5 < a[..., 0].astype(float).std() < 4.5
    colour = flat.copy()
    colour[..., 0] = 120
    b = synth.camera_noise(colour, np.random.default_rng(3), sigma=(4.0, 4.0))
    assert not np.array_equal(b[..., 1], b[..., 2]), "a colour frame gets noise per channel"
    assert synth.camera_noise(flat, np.random.default_rng(0)).std() > 1.5  # the default range is 2-5 grey levels


def test_a_swap_replaces_the_frames_noise_with_a_generators_smooth_face(face_lm, donor):
    """A demo swap must leave a trace a pixel detector can find: inside the swapped region
    the camera noise of the target frame is gone (the donor was rendered at a generator's
    resolution); outside it is untouched."""
    import cv2

    face, lm = face_lm
    rng = np.random.default_rng(0)
    smooth = [cv2.GaussianBlur(f, (0, 0), 3) for f in (face, donor[0])]  # like the upscaled LFW faces
    noisy, noisy_donor = synth.camera_noise(smooth[0], rng), (synth.camera_noise(smooth[1], rng), donor[1])
    fake, mask = synth.swap(noisy, lm, *noisy_donor, np.random.default_rng(1))
    core, out = mask > 0.9, mask == 0
    hf_fake, hf_real = _high_freq(fake), _high_freq(noisy)
    assert hf_fake[core].mean() < 0.7 * hf_real[core].mean(), "the swapped region kept the frame's noise"
    assert np.array_equal(fake[out], noisy[out])
    g = synth.generated(noisy, np.random.default_rng(2))
    assert g.shape == noisy.shape and _high_freq(g).mean() < 0.5 * hf_real.mean()
