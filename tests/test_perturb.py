"""The perturbation suite (DeeperForensics-1.0's table, JPEG, resampling, H.264) and the
robustness evaluation built on it."""
import numpy as np
import pytest
import torch

from dfcourse import perturb


@pytest.fixture(scope="module")
def face(astronaut):
    return np.ascontiguousarray(astronaut[30:158, 150:278])


@pytest.mark.parametrize("kind", perturb.KINDS)
def test_every_kind_keeps_shape_and_grows_with_its_level(face, kind):
    out = [perturb.perturb(face, kind, lv, seed=1) for lv in perturb.LEVELS]
    assert all(o.shape == face.shape and o.dtype == np.uint8 for o in out)
    change = [np.abs(o.astype(float) - face).mean() for o in out]
    assert change[0] > 0, f"{kind} level 1 changed nothing"
    assert change[-1] > change[0], f"{kind}: level 5 ({change[-1]:.2f}) is not stronger than level 1 ({change[0]:.2f})"
    assert np.array_equal(perturb.perturb(face, kind, 3, seed=1), perturb.perturb(face, kind, 3, seed=1)), "seeded"


def test_published_parameters_and_their_meaning(face):
    assert perturb.TABLE["blur"] == (7, 9, 13, 17, 21) and perturb.TABLE["h264"] == (30, 32, 35, 38, 40)
    assert perturb.TABLE["noise"] == (0.001, 0.002, 0.005, 0.01, 0.05)
    grey = perturb.perturb(face, "saturation", 5)  # factor 0: no colour left
    assert np.abs(grey[..., 0].astype(int) - grey[..., 1]).max() <= 2
    half = perturb.contrast(face, 0.5)
    assert np.array_equal(half, (face * 0.5).astype(np.uint8))
    flat = np.full((256, 256, 3), 200, np.uint8)
    blocks = perturb.perturb(flat, "block", 2)  # 32 blocks of 8x8 per 256x256 (they may overlap)
    assert 0 < (blocks[..., 0] == 128).sum() <= 32 * 64
    noisy = perturb.perturb(np.full((128, 128, 3), 128, np.uint8), "noise", 1)
    assert 5 < noisy[..., 0].astype(float).std() < 15  # sqrt(0.001) x 255 = 8 grey levels in Y, Cb, Cr


def test_h264_and_jpeg_are_real_codecs(face):
    for kind in ("h264", "jpeg"):
        mild, hard = perturb.perturb(face, kind, 1), perturb.perturb(face, kind, 5)
        assert np.abs(hard.astype(float) - face).mean() > np.abs(mild.astype(float) - face).mean()
    odd = perturb.h264(face[:63, :75], 23)
    assert odd.shape == (63, 75, 3)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb.perturb(np.zeros((8, 8, 3), np.uint8), "fog", 1)
    with pytest.raises(ValueError, match="level"):
        perturb.perturb(np.zeros((8, 8, 3), np.uint8), "blur", 6)
    with pytest.raises(ValueError, match="RGB uint8"):
        perturb.perturb(np.zeros((8, 8), np.float32), "blur", 1)


def test_cells_start_clean_and_cover_the_suite():
    cells = perturb.cells()
    assert cells[0][0] == "clean" and len(cells) == 1 + len(perturb.KINDS) * 5 + len(perturb.EXTRA)


# ------------------------------------------------------------- robustness evaluation
class _Brightness(torch.nn.Module):
    """A 'detector' whose fake score is the image's mean brightness."""

    def forward(self, x):
        return (x.mean((1, 2, 3)) * 20 - 10)[:, None]


def _rows(tmp_path):
    from dfcourse.io import save_image

    rows, rng = [], np.random.default_rng(0)
    for i in range(12):
        label = i % 2
        img = np.clip(rng.normal(90 + 60 * label, 10, (32, 32, 3)), 0, 255).astype(np.uint8)
        p = save_image(tmp_path / f"{i}.png", img)
        rows.append({"path": str(p), "label": label, "method": "original" if label == 0 else "swap",
                     "video_id": str(i), "mask_path": "", "source_path": ""})
    return rows


def test_detector_suite_scores_each_cell_and_the_bars_read_them(tmp_path):
    from dfcourse import robustness

    rows = _rows(tmp_path)
    cells = [("clean", "none", None), ("contrast L5", "contrast", 0.35), ("saturation L2", "saturation", 0.3)]
    res = robustness.detector_suite(_Brightness(), rows, 32, cells)
    assert [r["cell"] for r in res] == ["clean", "contrast L5", "saturation L2"]
    assert res[0]["auc"] == 1.0 and res[1]["level"] == 5
    lines = robustness.check_bars(res)
    assert len(lines) == 2 and all(ok and line.endswith(" met") for line, ok in lines)
    bad = [dict(res[0]), dict(res[1], auc=0.5)]
    line, ok = robustness.check_bars(bad)[0]
    assert not ok and line.endswith("NOT met")


def test_shifted_faces_draw_a_change_per_face_and_repeat(tmp_path):
    from dfcourse.robustness import PerturbedFaces

    rows = _rows(tmp_path)
    ds = PerturbedFaces(rows, 32, shifted=True, seed=3)
    changes = [ds.change(i) for i in range(len(ds))]
    assert len({c[0] for c in changes}) > 2, "a change drawn per face"
    assert changes == [PerturbedFaces(rows, 32, shifted=True, seed=3).change(i) for i in range(len(ds))]
    assert torch.equal(ds[4][0], PerturbedFaces(rows, 32, shifted=True, seed=3)[4][0])


def test_choose_uses_validation_only(tmp_path):
    """The shifted pick is the model with the best shifted *validation* AUC, whatever test says."""
    from dfcourse import robustness

    rows = _rows(tmp_path)
    sets = robustness.shifted_sets({"val": rows, "test": rows}, None, seed=0)

    class _Dark(_Brightness):
        def forward(self, x):
            return -super().forward(x)

    results = [{"name": n, "net": net, "size": 32, "pretrained": False,
                "val": {"frame": {"auc": v}}, "test": {"frame": {"auc": 0.5}}}
               for n, net, v in (("bright", _Brightness(), 0.6), ("dark", _Dark(), 0.9))]
    picks = robustness.choose(results, sets)
    assert picks["in_domain"]["name"] == "dark" and picks["shifted"]["name"] == "bright"
    header, table = robustness.selection_table(results, picks)
    assert table[0][-1] == "shifted" and table[1][-1] == "in-domain"


def test_operating_threshold_calls_at_most_the_asked_share_of_reals_fake():
    from dfcourse.robustness import operating_threshold

    probs = np.random.default_rng(0).random(400)
    t = operating_threshold(probs, fpr=0.05)
    assert 0.03 <= (probs > t).mean() <= 0.05
    assert operating_threshold([]) == 0.5


def test_predict_labels_by_the_checkpoints_threshold(detector, astronaut):
    """A face scored 0.6 is FAKE at the default 0.5 and REAL under a saved threshold of 0.7."""
    from dfcourse.predict import Predictor

    class _Constant(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), 1), float(np.log(0.6 / 0.4)))

    net = _Constant()
    assert Predictor(net=net, size=32, detector=detector).predict_image(astronaut)[0]["label"] == "FAKE"
    net.meta = {"threshold": 0.7}
    assert Predictor(net=net, size=32, detector=detector).predict_image(astronaut)[0]["label"] == "REAL"
