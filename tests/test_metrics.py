import numpy as np
import pytest
from sklearn import metrics as skm

from dfcourse.metrics import binary_metrics, eer, evaluate, video_scores


def test_metrics_agree_with_sklearn(rng):
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.random(300) * 0.7, 0, 1)
    m = binary_metrics(y, p, threshold=0.5)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["ap"] == pytest.approx(skm.average_precision_score(y, p))
    assert m["acc"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
    assert m["f1"] == pytest.approx(skm.f1_score(y, p >= 0.5))
    assert np.array_equal(m["confusion"], skm.confusion_matrix(y, p >= 0.5))


@pytest.mark.parametrize("y,p,expected", [
    ([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.5),   # ROC passes through (0.5, 0.5)
    ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 0.0),   # perfectly separated
    ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 1.0),   # perfectly wrong
    # ROC (0,.5) -> (.25,.5) -> (.25,1): FPR = FNR = .25 on the vertical segment
    ([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.6, 0.9], 0.25),
    # one tie: ROC jumps (0,0) -> (1,1); the crossing is interpolated half-way
    ([0, 1], [0.5, 0.5], 0.5),
])
def test_eer_hand_checked(y, p, expected):
    assert eer(y, p) == pytest.approx(expected, abs=1e-9)


def test_eer_matches_dense_threshold_sweep(rng):
    y = rng.integers(0, 2, 4000)
    p = rng.normal(y * 1.0, 1.0)
    best = min((abs(np.mean(p[y == 0] >= t) - np.mean(p[y == 1] < t)), np.mean(p[y == 0] >= t))
               for t in np.quantile(p, np.linspace(0, 1, 4001)))
    assert eer(y, p) == pytest.approx(best[1], abs=2e-3)


def test_video_level_is_mean_probability_per_video():
    rows = [{"video_id": v, "label": lab} for v, lab in [("a", 0), ("a", 0), ("b", 1), ("b", 1), ("c", 1)]]
    keys, y, p = video_scores(rows, [0.2, 0.4, 0.6, 1.0, 0.1])
    assert keys == [("a", 0), ("b", 1), ("c", 1)]
    assert np.allclose(p, [0.3, 0.8, 0.1]) and y.tolist() == [0, 1, 1]
    res = evaluate(rows, [0.2, 0.4, 0.6, 1.0, 0.1])
    assert set(res) == {"frame", "video"} and res["video"]["n"] == 3
    assert res["video"]["auc"] == pytest.approx(0.5)


# ------------------------------------------------------------ prior baselines for localization
def _corner_task(n=8, size=16):
    """Every fake's manipulated region is the same top-left corner; reals have empty maps."""
    gts, labels = [], []
    for i in range(n):
        g = np.zeros((size, size), np.float32)
        if i % 2:
            g[:6, :6] = 1
        gts.append(g)
        labels.append(i % 2)
    return gts, labels


def test_mean_mask_prior_wins_a_task_solved_by_position():
    from dfcourse.metrics import localization_metrics, mean_mask_prior, prior_rows

    gts, labels = _corner_task()
    prior = mean_mask_prior(gts, labels, ["train"] * len(gts))
    assert prior[0, 0] == 1.0 and prior[-1, -1] == 0.0
    scores = prior_rows({"mean mask": prior}, (gts, labels), (gts, labels))["mean mask"]
    assert scores["iou"] == 1.0 and scores["pixel_auc"] == 1.0 and scores["fp_area_real"] > 0
    elsewhere = [np.roll(g, 8, axis=(0, 1)) for g in gts]  # right shape, wrong place
    wrong = localization_metrics(elsewhere, gts, labels, None, 0.5)
    assert wrong["iou"] == 0.0 and wrong["pixel_auc"] < 0.5


def test_mean_mask_prior_is_fitted_on_train_only():
    from dfcourse.metrics import mean_mask_prior

    gts, labels = _corner_task()
    with pytest.raises(ValueError, match="training split only"):
        mean_mask_prior(gts, labels, ["train"] * 6 + ["test"] * 2)
    with pytest.raises(ValueError, match="no training fake"):
        mean_mask_prior(gts, [0] * len(gts))


def test_gaussian_prior_is_centred():
    from dfcourse.metrics import gaussian_prior

    g = gaussian_prior(33)
    assert g.shape == (33, 33) and g[16, 16] == pytest.approx(1.0) and g[0, 0] < 0.01
    assert np.allclose(g, g.T) and np.allclose(g, g[::-1])


def test_binary_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    from dfcourse.metrics import binary_auc

    rng = np.random.default_rng(3)
    for n, decimals in ((7, 1), (500, 2), (20_000, 6)):
        t = rng.random(n) < 0.3
        t[:2] = [True, False]
        s = np.round(rng.random(n) + 0.4 * t, decimals).astype(np.float32)
        assert abs(binary_auc(t, s) - roc_auc_score(t, s)) < 1e-12
    assert binary_auc([0, 1], [0.5, 0.5]) == 0.5 and binary_auc([0, 1], [0.9, 0.1]) == 0.0
    with pytest.raises(ValueError):
        binary_auc([1, 1], [0.2, 0.3])


def test_bootstrap_auc_brackets_the_auc_and_narrows_with_more_faces():
    from dfcourse.metrics import binary_auc, bootstrap_auc

    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 2000):
        y = rng.random(n) < 0.5
        s = rng.random(n) + 0.5 * y
        lo, hi = bootstrap_auc(y, s, seed=1)
        assert lo <= binary_auc(y, s) <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3


def test_pixel_auc_on_a_million_pixels_is_within_1e5_of_sklearn():
    from sklearn.metrics import roc_auc_score

    from dfcourse.metrics import pixel_auc

    rng = np.random.default_rng(5)
    gts = [(rng.random((96, 96)) < 0.2).astype(np.float32) for _ in range(120)]
    maps = [np.clip(0.3 * g + rng.random((96, 96)) * 0.8, 0, 1).astype(np.float32) for g in gts]
    maps[0][:] = 0.5  # a block of exact ties
    want = roc_auc_score(np.concatenate([g.ravel() for g in gts]), np.concatenate([m.ravel() for m in maps]))
    assert abs(pixel_auc(maps, gts) - want) < 1e-5


def test_video_scores_refuses_rows_and_probabilities_of_different_lengths():
    rows = [{"video_id": "a", "label": 0}, {"video_id": "a", "label": 0}]
    with pytest.raises(ValueError, match="2 rows but 1 probabilities"):
        video_scores(rows, [0.5])
