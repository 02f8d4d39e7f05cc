"""ipywidgets explorers over cached arrays. Every explorer has a plain ``render_*``
function (arrays in, figure out) that draws the same figure the widget shows, so a
notebook draws the static default first — the only thing ``nbconvert`` keeps as an
image — and tests can call the callbacks headless. Every control has a tooltip: without
one, ipywidgets 8.1 gives its label the hover text "null".
Used in notebooks 04 and 05.
"""
from __future__ import annotations

import cv2
import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from . import viz
from .io import BadInputError, to_rgb_uint8
from .metrics import dice, mask_iou, pointing_game


class Explorer(w.VBox):
    """A VBox whose plain-text form (what an executed copy shows where no widget can run)
    says what it is, instead of ``VBox(children=(...))``."""

    def __repr__(self):
        return "[interactive explorer: open this notebook in Jupyter and run it to use the controls]"


def render_localization(images, gts, maps, titles, index: int = 0, threshold: float = 0.5):
    """One example: image | ground truth | predicted map | thresholded overlay. A fake's
    title gives IoU and Dice; a real face (empty ground truth) its false-positive area."""
    fig, axes = plt.subplots(1, 4, figsize=(10.6, 2.8))
    pred = maps[index] > threshold
    gt = gts[index] > 0.5
    viz.localization_row(axes, images[index], gts[index], maps[index], threshold, titles[index])
    score = (f"IoU {mask_iou(pred, gt):.3f}   Dice {dice(pred, gt):.3f}" if gt.any()
             else f"real face: {100 * pred.mean():.1f}% flagged (false-positive area)")
    fig.suptitle(f"{score}   (threshold {threshold:.2f})", fontsize=9)
    fig.tight_layout()  # once, here (see render_cam)
    return fig


def localization_explorer(images, gts, maps, titles, threshold: float = 0.5):
    """Example picker + threshold slider over cached predictions (no model calls)."""
    pick = w.IntSlider(value=0, min=0, max=len(images) - 1, description="example", continuous_update=False,
                       tooltip="which face")
    thr = w.FloatSlider(value=threshold, min=0.05, max=0.95, step=0.05, description="threshold",
                        continuous_update=False, tooltip="map > threshold is predicted manipulated")
    out = w.interactive_output(lambda index, threshold: _show(render_localization(images, gts, maps, titles,
                                                                                  index, threshold)),
                               {"index": pick, "threshold": thr})
    return Explorer([w.HBox([pick, thr]), out])


def _show(fig):
    """Display exactly this figure (``plt.show`` would flush every open figure into the widget)."""
    display(fig)
    plt.close(fig)


def render_cam(images, cams: dict, model: str, method: str, index: int = 0, alpha: float = 0.45,
               threshold: float = 0.5, titles=None, masks=None):
    """One face: image (with its ground-truth mask when ``masks`` is given) | CAM overlay |
    CAM above ``threshold``. ``cams[(model, method)]`` holds the cached maps (N, H, W) in
    [0, 1]. With a mask, a fake's panel says its IoU and whether the CAM's maximum is in the
    mask (pointing game); a real face's says how much of it the CAM flags."""
    if (model, method) not in cams:
        raise KeyError(f"no {method} maps for {model}; cached: {sorted(cams)}")
    img = images[index]
    cam = cams[(model, method)][index]
    if cam.shape != img.shape[:2]:
        cam = cv2.resize(cam, (img.shape[1], img.shape[0]))
    flagged = cam > threshold
    fig, axes = plt.subplots(1, 3, figsize=(8.3, 2.8))
    title = titles[index] if titles else f"face {index}"
    if masks is not None and masks[index] is not None:
        gt = cv2.resize(np.asarray(masks[index], np.float32), (img.shape[1], img.shape[0])) > 0.5
        axes[0].imshow(viz.mask_overlay(img, gt.astype(np.float32)))
        title += " | mask in red" if gt.any() else " | real: no mask"
        score = (f"IoU {mask_iou(flagged, gt):.2f}, max {'in' if pointing_game(cam, gt) else 'outside'} mask"
                 if gt.any() else f"{100 * flagged.mean():.0f}% of a real face flagged")
    else:
        axes[0].imshow(img)
        score = f"{100 * flagged.mean():.0f}% of face"
    axes[0].set_title(title, fontsize=8)
    axes[1].imshow(viz.overlay(img, cam, alpha))
    axes[1].set_title(f"{model}: {method}", fontsize=8)
    axes[2].imshow(viz.mask_overlay(img, flagged.astype(np.float32)))
    axes[2].set_title(f"CAM > {threshold:.2f}: {score}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    viz.heat_colorbar(fig, axes[1], "CAM, scaled to [0, 1]")
    fig.tight_layout()  # once, here: a layout that re-runs at each draw would make the explorer's
    return fig          # first image differ from the same figure drawn above it


def cam_explorer(images, cams: dict, titles=None, masks=None, model=None, method=None, threshold: float = 0.5,
                 alpha: float = 0.45):
    """Image slider, model and CAM-method dropdowns, overlay-alpha and threshold sliders.
    Opens on ``(model, method, threshold)`` — pass the static figure's view — and offers
    for each model only the methods cached for it. Re-renders from the cached maps."""
    by_model = {m: sorted(k for mm, k in cams if mm == m) for m in sorted({m for m, _ in cams})}
    model = model if model in by_model else next(iter(by_model))
    method = method if method in by_model[model] else by_model[model][0]
    index = w.IntSlider(value=0, min=0, max=len(images) - 1, description="image", continuous_update=False,
                        tooltip="which face")
    model_w = w.Dropdown(options=list(by_model), value=model, description="model", tooltip="whose maps")
    method_w = w.Dropdown(options=by_model[model], value=method, description="CAM",
                          tooltip="the methods cached for this model")
    alpha_w = w.FloatSlider(value=alpha, min=0, max=1, step=0.05, description="alpha", continuous_update=False,
                            tooltip="opacity of the CAM overlay")
    thr = w.FloatSlider(value=threshold, min=0.05, max=0.95, step=0.05, description="threshold",
                        continuous_update=False, tooltip="CAM > threshold is flagged (right panel)")

    def on_model(change):  # keep the method if the new model has it, else its first
        keep = method_w.value if method_w.value in by_model[change["new"]] else by_model[change["new"]][0]
        method_w.options = by_model[change["new"]]
        method_w.value = keep

    model_w.observe(on_model, names="value")

    def show(index, model, method, alpha, threshold):
        if (model, method) in cams:  # skips the transient pair while the options change
            _show(render_cam(images, cams, model, method, index, alpha, threshold, titles, masks))

    out = w.interactive_output(show, {"index": index, "model": model_w, "method": method_w, "alpha": alpha_w,
                                      "threshold": thr})
    return Explorer([w.HBox([index, model_w, method_w]), w.HBox([alpha_w, thr]), out])


def handle_upload(content: bytes, name: str, predictor, max_faces: int = 4, about: str = ""):
    """What the upload demo shows for one file: ``(figure or None, message)``; ``about``
    (which model, pretrained or random weights, which mode) ends the message. Never raises
    for bad input: a non-image or a face-less photo gets a plain message."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as img:
            img.load()
            image = to_rgb_uint8(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return None, f"{name}: not an image I can read ({e.__class__.__name__}). Upload a JPG or PNG photo."
    try:
        faces = predictor.predict_image(image, with_heatmap=True)
    except BadInputError as e:  # e.g. a thumbnail too small to find a face in
        return None, f"{name}: {e}"
    if not faces:
        return None, f"{name}: no face found. Try a photo where a face is clearly visible and at least ~40 px wide."
    faces = faces[:max_faces]
    fig, axes = plt.subplots(1, len(faces) + 1, figsize=(3 * (len(faces) + 1) + 0.8, 3), squeeze=False,
                             layout="constrained")
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
    viz.heat_colorbar(fig, axes[0, 1:], "Grad-CAM, scaled to [0, 1]")
    lines = [f"face {k}: {f['label']} (p(fake) = {f['prob_fake']:.3f})" for k, f in enumerate(faces)]
    return fig, f"{name}: " + "; ".join(lines) + (f" [{about}]" if about else "")


def upload_demo(predictor, about: str = ""):
    """A FileUpload: each uploaded photo -> faces, label, confidence and a Grad-CAM per face,
    said with ``about`` (model, weights, mode). The upload is cleared once handled, so the
    same file can be uploaded again and no photo stays in the saved widget state."""
    up = w.FileUpload(accept="image/*", multiple=False, description="Upload photo",
                      tooltip="a JPG or PNG photo with a face", layout=w.Layout(width="auto"))
    out = w.Output()

    def on_change(change):
        if not change["new"]:
            return  # our own clearing below
        out.clear_output()
        with out:
            for item in change["new"]:
                name = item["name"] if isinstance(item, dict) else getattr(item, "name", "upload")
                content = item["content"] if isinstance(item, dict) else item.content
                fig, message = handle_upload(bytes(content), name, predictor, about=about)
                print(message)
                if fig is not None:
                    _show(fig)
        up.value = ()

    up.observe(on_change, names="value")
    return Explorer([up, out])
