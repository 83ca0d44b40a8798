"""The viewers in a real browser: JupyterLab + pythreejs, and the standalone HTML file.

Each test looks at the pixels the browser drew: the textured sphere must cover a good part of the
canvas in the checker pattern's colours, and interacting (menu, mouse drag) must change the picture.
Screenshots are kept in /tmp/viewer/ for a human to look at.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viewer_pixels import element_pixels, object_stats, save_png

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIXTURE_NOTEBOOK = Path(__file__).with_name("viewer_fixture.ipynb")
LAB_BACKGROUND = (0x21, 0x21, 0x24)  # avatar_scene's scene background
HTML_BACKGROUND = (33, 33, 36)  # the HTML viewer's clear colour (0.13, 0.13, 0.14)


def _wait(driver, condition, timeout: float, what: str, interval: float = 0.25):
    """Poll ``condition()`` until it returns something other than None or False; fail on timeout.

    On a timeout the whole page is saved to /tmp/viewer/timeout.png, to see what went wrong.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            shot = save_png(np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")),
                            "timeout.png")
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (page: {shot})")
        time.sleep(interval)


def _find(driver, css: str):
    found = driver.find_elements("css selector", css)
    return found[0] if found else None


def _kernel_idle(base: str, token: str, notebook: str) -> bool:
    """Whether the server has a kernel for ``notebook`` that is idle (started and waiting)."""
    request = urllib.request.Request(f"{base}/api/sessions", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        sessions = json.load(r)
    return any(s.get("path", "").endswith(notebook) and (s.get("kernel") or {}).get("execution_state") == "idle"
               for s in sessions)


def _textured(pixels: np.ndarray, background) -> bool:
    s = object_stats(pixels, background)
    return s["coverage"] > 0.2 and s["saturated"] > 0.3 and s["hues"] >= 3


def test_jupyterlab_viewer(chrome, jupyter_lab):
    from selenium.webdriver.support.ui import Select

    base, token, root = jupyter_lab
    shutil.copy(FIXTURE_NOTEBOOK, root / "viewer.ipynb")
    chrome.get(f"{base}/lab/tree/viewer.ipynb?token={token}")

    # The notebook is open and its kernel is running (the server says so, and the page shows it).
    _wait(chrome, lambda: _find(chrome, ".jp-NotebookPanel .jp-Notebook .jp-Cell"), 60, "the notebook to open")
    _wait(chrome, lambda: _kernel_idle(base, token, "viewer.ipynb"), 60, "the notebook's kernel to start")
    _wait(chrome, lambda: chrome.execute_script(
        "const s = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');"
        "return s && s.getAttribute('data-status') === 'idle';"), 30, "the page to show the kernel idle")

    def run_all():
        """Run > Run All Cells, through the menu bar as a student would."""
        next(e for e in chrome.find_elements("css selector", ".lm-MenuBar-item") if e.text.strip() == "Run").click()
        _wait(chrome, lambda: next((e for e in chrome.find_elements("css selector", ".lm-Menu-item .lm-Menu-itemLabel")
                                    if e.text.strip() == "Run All Cells"), None), 10, "Run > Run All Cells").click()

    run_all()
    runs = [1]

    def canvas_or_dialog():
        # If the page had not yet attached to the kernel, JupyterLab asks which kernel to use and
        # drops the run: accept its suggestion (the notebook's python3) and run again.
        accept = _find(chrome, ".jp-Dialog .jp-mod-accept")
        if accept is not None and accept.is_displayed() and len(runs) < 4:
            accept.click()
            time.sleep(2)
            run_all()
            runs.append(1)
        return _find(chrome, ".jp-OutputArea-output canvas")

    canvas = _wait(chrome, canvas_or_dialog, 90, "the pythreejs canvas")
    chrome.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
    shaded = _wait(chrome, lambda: (lambda p: p if _textured(p, LAB_BACKGROUND) else None)(element_pixels(canvas)),
                   60, "the textured sphere to appear in the canvas")
    save_png(shaded, "lab_shaded.png")
    stats = object_stats(shaded, LAB_BACKGROUND)
    assert 0.2 < stats["coverage"] < 0.9, stats

    # Show the specular normals on the surface instead: the picture must change.
    menu = _wait(chrome, lambda: _find(chrome, ".jp-OutputArea-output .widget-dropdown select"), 20, "the map menu")
    Select(menu).select_by_visible_text("specular normals")

    def changed():
        p = element_pixels(canvas)
        return p if np.abs(p.astype(int) - shaded.astype(int)).mean() > 8 else None

    normals = _wait(chrome, changed, 30, "the picture to change after choosing 'specular normals'")
    save_png(normals, "lab_specular_normals.png")
    # Object-space normals seen from the front: the centre is bluish (+Z), the sides red / green-ish.
    h, w, _ = normals.shape
    centre = normals[h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5].reshape(-1, 3).mean(0)
    assert centre[2] > centre[0] and centre[2] > 180, centre


def test_html_viewer(chrome, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    from avatarme_edu.geometry.mesh import uv_sphere
    from avatarme_edu.render.demo_maps import pattern_maps
    from avatarme_edu.render.html_viewer import write_html_viewer

    mesh = uv_sphere(24, 36)
    maps, shape = pattern_maps(mesh, (96, 144))
    page = write_html_viewer(tmp_path / "sphere.html", mesh, maps, title="test sphere", shape=shape, size=(480, 360))
    chrome.get(page.as_uri())
    state = _wait(chrome, lambda: chrome.execute_script(
        "const v = window.avatarViewer; return v && (v.ready || v.error) ? [v.ready, v.error] : null;"),
        30, "the WebGL viewer to draw its first frame")
    assert state == [True, None], state

    canvas = chrome.find_element("id", "view")
    front = element_pixels(canvas)
    save_png(front, "html_front.png")
    assert _textured(front, HTML_BACKGROUND), object_stats(front, HTML_BACKGROUND)

    # Drag to orbit: the sphere turns, the colours under the centre change.
    ActionChains(chrome).move_to_element(canvas).click_and_hold().move_by_offset(150, 30).release().perform()

    def changed():
        p = element_pixels(canvas)
        return p if np.abs(p.astype(int) - front.astype(int)).mean() > 8 else None

    turned = _wait(chrome, changed, 10, "the picture to change after dragging")
    save_png(turned, "html_dragged.png")
    assert _textured(turned, HTML_BACKGROUND)

    # Switching the diffuse term off leaves only the faint, colourless specular sheen: the centre
    # of the sphere turns dark.
    chrome.find_element("id", "diffuse").click()

    def centre_brightness(p):
        h, w, _ = p.shape
        return float(p[h // 2 - 20:h // 2 + 20, w // 2 - 20:w // 2 + 20].mean())

    lit = centre_brightness(turned)
    dark = _wait(chrome, lambda: (lambda p: p if centre_brightness(p) < 0.3 * lit else None)(element_pixels(canvas)),
                 10, "the diffuse term to switch off")
    save_png(dark, "html_specular_only.png")
