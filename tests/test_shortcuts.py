"""The shortcut audit of the demo engine: no global image statistic separates its fakes from
its reals (AUC above 0.70), with every cue on and with each cue alone; and the audit does
catch a cue planted the way demo engine v2 planted it."""
import numpy as np
import pytest

from dfcourse import capture, demo, shortcuts


@pytest.fixture(scope="module")
def idents(detector):
    return demo.builtin_identities(detector, num_lfw=40)


def _render(idents, cues, frames=2, seed=0):
    rng = np.random.default_rng(seed)
    reals, fakes = [], []
    for k, ident in enumerate(idents):
        for _ in range(frames):
            frame, lm, cap, ns = demo.capture_frame(ident, 96, rng)
            reals.append(demo.finish(frame, cap, ns, capture.is_grey(frame)))
            for method in ("selfblend", "swap", "rerender"):
                donor = demo.donor_face(idents[(k + 1) % len(idents)], 96, rng) if method == "swap" else None
                fakes.append(demo.forge_captured(method, frame, lm, cap, ns, rng, donor, cues)[0])
    return reals, fakes


@pytest.mark.parametrize("cues", [capture.CUES, ("colour",), ("resolution",), ("noise",)],
                         ids=["all cues", "colour only", "resolution only", "noise only"])
def test_no_global_statistic_separates_the_demo_classes(idents, cues):
    aucs = shortcuts.audit(*_render(idents, cues))
    over = {k: round(v, 3) for k, v in aucs.items() if v > shortcuts.MAX_AUC}
    assert not over, f"with cues {cues}, a global statistic separates real from fake: {over}"


def test_the_audit_catches_a_planted_cue(idents):
    """Demo engine v2's cue: every real frame noisy, every forged one clean. The audit flags it."""
    from dfcourse import perturb

    reals, fakes = _render(idents, ("colour",), frames=1)
    rng = np.random.default_rng(1)
    noisy = [perturb.gaussian_noise(r, rng.uniform(2, 5), rng) for r in reals]
    aucs = shortcuts.audit(noisy, fakes)
    assert aucs["high-pass energy"] > shortcuts.MAX_AUC, aucs
    blurred = [perturb.blur_sigma(f, 1.0) for f in fakes]
    assert shortcuts.audit(reals, blurred)["Laplacian variance"] > shortcuts.MAX_AUC


def test_capture_table_prints_the_ranges_the_chain_draws_from():
    rows = dict(capture.table())
    assert rows["sensor noise sigma (grey levels)"].startswith(f"{capture.NOISE[0]:g} to {capture.NOISE[1]:g}")
    assert f"{capture.JPEG_QUALITY[0]} to {capture.JPEG_QUALITY[1]}" in rows["compression of the whole frame"]
    rng = np.random.default_rng(0)
    caps = [capture.draw(rng) for _ in range(400)]
    assert min(c.noise for c in caps) >= capture.NOISE[0] and max(c.noise for c in caps) <= capture.NOISE[1]
    assert all(capture.JPEG_QUALITY[0] <= c.quality <= capture.JPEG_QUALITY[1] for c in caps if c.codec == "jpeg")
