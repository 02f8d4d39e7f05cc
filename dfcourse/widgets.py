"""ipywidgets explorers over cached arrays. Every explorer has a plain ``render_*``
function (arrays in, figure out) that draws the same figure the widget shows, so a
notebook draws the static default first — the only thing ``nbconvert`` keeps as an
image — and tests can call the callbacks headless.
Used in notebooks/04_residual_localization.ipynb and 05_gradcam_analysis.ipynb.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from . import viz


def render_localization(images, gts, maps, titles, index: int = 0, threshold: float = 0.5):
    """One example: image | ground truth | predicted map | thresholded overlay."""
    from .localization import dice, iou

    fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
    pred = maps[index] > threshold
    viz.localization_row(axes, images[index], gts[index], maps[index], threshold, titles[index])
    fig.suptitle(f"IoU {iou(pred, gts[index] > 0.5):.3f}   Dice {dice(pred, gts[index] > 0.5):.3f}   "
                 f"(threshold {threshold:.2f})", fontsize=9)
    fig.tight_layout()
    return fig


def localization_explorer(images, gts, maps, titles, threshold: float = 0.5):
    """Example picker + threshold slider over cached predictions (no model calls)."""
    import ipywidgets as w

    pick = w.IntSlider(value=0, min=0, max=len(images) - 1, description="example")
    thr = w.FloatSlider(value=threshold, min=0.05, max=0.95, step=0.05, description="threshold")
    out = w.interactive_output(lambda index, threshold: _show(render_localization(images, gts, maps, titles,
                                                                                  index, threshold)),
                               {"index": pick, "threshold": thr})
    return w.VBox([w.HBox([pick, thr]), out])


def _show(fig):
    """Display exactly this figure (``plt.show`` would flush every open figure into the widget)."""
    from IPython.display import display

    display(fig)
    plt.close(fig)
