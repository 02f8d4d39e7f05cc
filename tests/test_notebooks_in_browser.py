"""The explorers of notebooks 05 and 04 in a real browser: JupyterLab under headless Chromium,
driven by Playwright against Debian's ``/usr/bin/chromium`` (``.ci/run`` installs it), all on
127.0.0.1. Each notebook runs with Run > Run All Cells; then every control is changed.

This module sorts after ``test_notebooks.py`` and shares its session's course folder
(``course_home`` in conftest.py), so notebook 05 loads the checkpoints notebooks 02-04 left
there instead of training; run alone, it trains them first (slower, same checks).
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "05_gradcam_analysis.ipynb"
NOTEBOOK_04 = ROOT / "notebooks" / "04_residual_localization.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
# a closed network: no sync, updates, field trials or QUIC probes, a fresh profile
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN_ALL_TIMEOUT = 40 * 60  # s; alone, notebook 05 trains three models first on a shared 2-core CPU
RENDER_TIMEOUT = 180  # s for one re-render of the explorer under load

pytestmark = [
    pytest.mark.slow,
    pytest.mark.rerun,  # executes notebooks 04 and 05 again: `make test-all`, not `make test`
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: install Debian's chromium package "
                       "(apt-get install chromium; .ci/run does) to run the browser tests"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter_lab(root_dir: Path, env: dict, tmp: Path):
    """``jupyter lab`` on 127.0.0.1 (random port, a token, no browser, nothing fetched from
    the internet: no news, no update check, no extension manager); yields the base URL and
    token. Its log is ``tmp/jupyter.log``."""
    token, port = secrets.token_hex(16), _free_port()
    config = tmp / "jupyter-config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps({
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                   "extension_manager": "readonly"},
        "ServerApp": {"terminals_enabled": False}}))
    settings = tmp / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
           f"--LabApp.user_settings_dir={tmp / 'lab-settings'}", f"--LabApp.workspaces_dir={tmp / 'lab-workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI runs as root
    env = {**env, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime")}
    log = open(tmp / "jupyter.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not start; log:\n{_tail(tmp / 'jupyter.log')}") from None
                time.sleep(1)
        yield url, token
    finally:
        _stop(proc, url, token)
        log.close()


def _stop(proc, url, token):
    """Shut the kernels down through the API, then the server (and anything left in its group)."""
    try:
        with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=10) as r:
            for k in json.load(r):
                req = urllib.request.Request(f"{url}/api/kernels/{k['id']}?token={token}", method="DELETE")
                urllib.request.urlopen(req, timeout=30).close()
    except OSError:
        pass
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test started: stray kernels, if any
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


@contextmanager
def chromium_page(tmp: Path):
    """A headless Chromium page (Debian's build, a new empty profile)."""
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp / "chromium-profile"), executable_path=str(CHROMIUM),
                                                   headless=True, args=CHROMIUM_ARGS,
                                                   viewport={"width": 1400, "height": 1000})
        try:
            yield ctx.pages[0] if ctx.pages else ctx.new_page()
        finally:
            ctx.close()


def _outputs_text(page) -> str:
    """Everything the cells printed or showed as text, widget outputs included (no code)."""
    return page.evaluate("[...document.querySelectorAll('.jp-OutputArea-output')].map(e => e.textContent).join('\\n')")


def _prompts(page) -> list:
    return page.evaluate("[...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent)")


def _assert_clean(page):
    text = _outputs_text(page)
    assert "Traceback" not in text, f"an error in the notebook's outputs:\n{text[text.index('Traceback') - 300:][:3000]}"
    assert "maps cached" not in text and "Error displaying widget" not in text, text[-3000:]


def _open_and_run_all(page, url, token, name):
    """Open ``name`` in JupyterLab, wait for its kernel, and run it with Run > Run All Cells;
    returns when every code cell has an execution count, failing early on a traceback."""
    page.goto(f"{url}/lab/tree/{name}?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=180_000)
    page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle")).first.wait_for(timeout=180_000)
    deadline = time.monotonic() + 180
    while True:  # the session's kernel is up (clicking earlier opens a 'Select Kernel' dialog)
        with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=10) as r:
            if any(s["path"].endswith(name) and s.get("kernel", {}).get("execution_state") == "idle"
                   for s in json.load(r)):
                break
        assert time.monotonic() < deadline, "the notebook's kernel did not start"
        time.sleep(1)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline = time.monotonic() + RUN_ALL_TIMEOUT
    while True:
        time.sleep(5)
        _assert_clean(page)
        assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").inner_text()
        prompts = _prompts(page)
        if all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            return
        assert time.monotonic() < deadline, f"Run All did not finish in {RUN_ALL_TIMEOUT} s: prompts {prompts}"


def _image(cell):
    """The ``src`` of the image in a widget's output area (a data URL), or None."""
    return cell.evaluate("c => c.querySelector('.widget-output img')?.getAttribute('src') ?? null")


def _new_image(cell, old: str) -> str:
    """Wait until the explorer shows an image other than ``old`` and it has settled (the
    same for two polls, so a transient render does not count); returns its ``src``."""
    deadline, last = time.monotonic() + RENDER_TIMEOUT, None
    while time.monotonic() < deadline:
        src = _image(cell)
        if src and src != old and src == last:
            return src
        last = src
        time.sleep(1.5)
    raise AssertionError(f"the explorer's image did not change within {RENDER_TIMEOUT} s")


def _slider(cell, label):
    return cell.locator(".widget-slider").filter(has=cell.page.locator("label", has_text=re.compile(f"^{label}$")))


def _dropdown(cell, label):
    return cell.locator(".widget-dropdown").filter(
        has=cell.page.locator("label", has_text=re.compile(f"^{label}$"))).locator("select")


def _options(select) -> list:
    return select.locator("option").evaluate_all("os => os.map(o => o.value)")


@contextmanager
def notebook_run_in_lab(notebook: Path, course_home: Path, tmp: Path):
    """A copy of ``notebook`` opened in JupyterLab (quick mode, offline, ``DFCOURSE_HOME``
    = ``course_home``) and run with Run All Cells; yields the page. On a failure the page
    goes to ``tmp/failure.png`` and the server's log to the test's output."""
    lab = tmp / "lab"
    lab.mkdir()
    shutil.copy(notebook, lab / notebook.name)
    env = {**os.environ, "DFCOURSE_HOME": str(course_home), "DFCOURSE_QUICK": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with jupyter_lab(lab, env, tmp) as (url, token), chromium_page(tmp) as page:
        try:
            _open_and_run_all(page, url, token, notebook.name)
            assert "mode: QUICK" in _outputs_text(page)
            yield page
        except BaseException:
            page.screenshot(path=str(tmp / "failure.png"))
            print(f"screenshots in {tmp}; jupyter log:\n{_tail(tmp / 'jupyter.log')}")
            raise


def test_notebook05_explorers_in_jupyterlab(course_home, tmp_path, astronaut):
    from PIL import Image

    with notebook_run_in_lab(NOTEBOOK, course_home, tmp_path) as page:
        # the CAM explorer opens on the static figure's view, shown right above it
        static = page.locator(".jp-CodeCell").filter(has_text="fig = render_cam(").locator("img")
        cell = page.locator(".jp-CodeCell").filter(has_text="cam_explorer(faces")
        cell.locator(".widget-output img").wait_for(timeout=RENDER_TIMEOUT * 1000)
        model, method = _dropdown(cell, "model"), _dropdown(cell, "CAM")
        # the detector notebook 02 chose on validation (offline: Meso-4), with Grad-CAM
        det = model.input_value()
        assert det in ("ResNet18", "Meso-4") and method.input_value() == "gradcam"
        # the readout can lag the image by a moment: wait for it
        from playwright.sync_api import expect

        expect(_slider(cell, "threshold").locator(".widget-readout")).to_have_text("0.50",
                                                                                 timeout=RENDER_TIMEOUT * 1000)
        src = _image(cell)
        assert src == static.get_attribute("src"), "the explorer does not open on the static figure's view"

        # every control re-renders the image
        for label, key in (("image", "ArrowRight"), ("alpha", "ArrowRight"), ("threshold", "ArrowLeft")):
            slider = _slider(cell, label)
            before = slider.locator(".widget-readout").inner_text()
            slider.locator(".noUi-handle").press(key)
            src = _new_image(cell, src)
            assert slider.locator(".widget-readout").inner_text() != before, label
        # each model offers only the methods cached for it, and each of them renders
        models = _options(model)
        assert {det, "CLIP"} <= set(models), models
        for name in sorted(models, key=lambda m: m == det):  # away from the opening model first
            model.select_option(name)
            src = _new_image(cell, src)
            offered = _options(method)
            assert offered, name
            if name.startswith("Localizer"):
                assert offered == ["supervised map"], offered
            for m in offered:
                if m != method.input_value():
                    method.select_option(m)
                    src = _new_image(cell, src)
            _assert_clean(page)
        assert cell.locator("[title=null]").count() == 0, "a control's hover text is 'null'"
        cell.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "notebook05_explorer.png"))

        # the upload demo: its label fits its button; a photo is handled, then cleared
        up = page.locator(".jp-CodeCell").filter(has_text="upload_demo(predictor")
        button = up.locator("button.widget-upload")
        assert button.inner_text().strip().startswith("Upload photo")
        assert button.get_attribute("title") != "null", "the upload button's hover text is 'null'"
        assert button.evaluate("b => b.scrollWidth <= b.clientWidth"), "the upload button's label is cut off"
        photo = tmp_path / "astronaut.png"
        Image.fromarray(astronaut).save(photo)
        with page.expect_file_chooser() as chooser:
            button.click()
        chooser.value.set_files(str(photo))
        up.locator(".widget-output img").wait_for(timeout=RENDER_TIMEOUT * 1000)
        message = up.locator(".widget-output").inner_text()
        assert "astronaut.png: face 0:" in message and "quick mode" in message, message
        page.wait_for_function("b => b.textContent.includes('(0)')", arg=button.element_handle(),
                               timeout=60_000)  # the upload's value was cleared
        up.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "notebook05_upload.png"))
        _assert_clean(page)
    print(f"screenshots: {tmp_path}/notebook05_explorer.png, notebook05_upload.png")


def test_notebook04_explorer_in_jupyterlab(course_home, tmp_path):
    with notebook_run_in_lab(NOTEBOOK_04, course_home, tmp_path) as page:
        # opens on the static figure shown right above it; each slider re-renders
        static = page.locator(".jp-CodeCell").filter(has_text="fig = render_localization(").locator("img")
        cell = page.locator(".jp-CodeCell").filter(has_text="localization_explorer([faces")
        cell.locator(".widget-output img").wait_for(timeout=RENDER_TIMEOUT * 1000)
        src = _image(cell)
        assert src == static.get_attribute("src"), "the explorer does not open on the static figure's view"
        for label, key in (("example", "ArrowRight"), ("threshold", "ArrowLeft")):
            slider = _slider(cell, label)
            before = slider.locator(".widget-readout").inner_text()
            slider.locator(".noUi-handle").press(key)
            src = _new_image(cell, src)
            assert slider.locator(".widget-readout").inner_text() != before, label
        assert cell.locator("[title=null]").count() == 0, "a control's hover text is 'null'"
        _assert_clean(page)
        cell.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "notebook04_explorer.png"))
