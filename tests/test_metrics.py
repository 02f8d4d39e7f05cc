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

