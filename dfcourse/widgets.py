"""ipywidgets explorers over cached arrays. Every explorer has a plain ``render_*``
function (arrays in, figure out) that draws the same figure the widget shows, so a
notebook draws the static default first — the only thing ``nbconvert`` keeps as an
image — and tests can call the callbacks headless.
Used in notebooks/04_residual_localization.ipynb and 05_gradcam_analysis.ipynb.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import viz
from .io import to_rgb_uint8
from .metrics import dice, mask_iou


def render_localization(images, gts, maps, titles, index: int = 0, threshold: float = 0.5):
    """One example: image | ground truth | predicted map | thresholded overlay."""

    fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
    pred = maps[index] > threshold
    viz.localization_row(axes, images[index], gts[index], maps[index], threshold, titles[index])
    fig.suptitle(f"IoU {mask_iou(pred, gts[index] > 0.5):.3f}   Dice {dice(pred, gts[index] > 0.5):.3f}   "
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


def render_cam(images, cams: dict, model: str, method: str, index: int = 0, alpha: float = 0.45,
               threshold: float = 0.5, titles=None):
    """One face: image | CAM overlay | CAM above ``threshold``; ``cams[(model, method)]``
    holds the cached maps (N, H, W) in [0, 1]."""
    import cv2

    img = images[index]
    cam = cams[(model, method)][index]
    if cam.shape != img.shape[:2]:
        cam = cv2.resize(cam, (img.shape[1], img.shape[0]))
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    axes[0].imshow(img)
    axes[0].set_title(titles[index] if titles else f"face {index}", fontsize=8)
    axes[1].imshow(viz.overlay(img, cam, alpha))
    axes[1].set_title(f"{model}: {method}", fontsize=8)
    axes[2].imshow(viz.mask_overlay(img, (cam > threshold).astype(np.float32)))
    axes[2].set_title(f"CAM > {threshold:.2f} ({100 * (cam > threshold).mean():.0f}% of face)", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def cam_explorer(images, cams: dict, titles=None):
    """Image slider, model and CAM-method dropdowns, overlay-alpha and threshold sliders.
    Re-renders from the cached maps; nothing is recomputed on a slider move."""
    import ipywidgets as w

    models = sorted({m for m, _ in cams})
    methods = sorted({k for _, k in cams})
    index = w.IntSlider(value=0, min=0, max=len(images) - 1, description="image")
    model = w.Dropdown(options=models, value=models[0], description="model")
    method = w.Dropdown(options=methods, value=methods[0], description="CAM")
    alpha = w.FloatSlider(value=0.45, min=0, max=1, step=0.05, description="alpha", continuous_update=False)
    thr = w.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, description="threshold", continuous_update=False)

    def show(index, model, method, alpha, threshold):
        if (model, method) in cams:
            _show(render_cam(images, cams, model, method, index, alpha, threshold, titles))
        else:
            print(f"no {method} maps cached for {model}")

    out = w.interactive_output(show, {"index": index, "model": model, "method": method, "alpha": alpha,
                                      "threshold": thr})
    return w.VBox([w.HBox([index, model, method]), w.HBox([alpha, thr]), out])


def handle_upload(content: bytes, name: str, predictor, max_faces: int = 4):
    """What the upload demo shows for one file: ``(figure or None, message)``.
    Never raises for bad input: a non-image or a face-less photo gets a plain message."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as img:
            img.load()
            image = to_rgb_uint8(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return None, f"{name}: not an image I can read ({e.__class__.__name__}). Upload a JPG or PNG photo."
    faces = predictor.predict_image(image, with_heatmap=True)
    if not faces:
        return None, f"{name}: no face found. Try a photo where a face is clearly visible and at least ~40 px wide."
    faces = faces[:max_faces]
    fig, axes = plt.subplots(1, len(faces) + 1, figsize=(3 * (len(faces) + 1), 3), squeeze=False)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title(name, fontsize=8)
    for k, f in enumerate(faces):
        x1, y1, x2, y2 = f["box"]
        axes[0, 0].add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                           color="red" if f["label"] == "FAKE" else "lime", lw=2))
        axes[0, k + 1].imshow(viz.overlay(f["face"], f["heatmap"]))
        axes[0, k + 1].set_title(f"face {k}: {f['label']} p(fake)={f['prob_fake']:.2f}", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    lines = [f"face {k}: {f['label']} (p(fake) = {f['prob_fake']:.3f})" for k, f in enumerate(faces)]
    return fig, f"{name}: " + "; ".join(lines)


def upload_demo(predictor):
    """A FileUpload: each uploaded photo -> faces, label, confidence and a Grad-CAM per face."""
    import ipywidgets as w

    up = w.FileUpload(accept="image/*", multiple=False, description="upload a photo")
    out = w.Output()

    def on_change(change):
        out.clear_output()
        with out:
            for item in change["new"]:
                name = item["name"] if isinstance(item, dict) else getattr(item, "name", "upload")
                content = item["content"] if isinstance(item, dict) else item.content
                fig, message = handle_upload(bytes(content), name, predictor)
                print(message)
                if fig is not None:
                    _show(fig)

    up.observe(on_change, names="value")
    return w.VBox([up, out])
