"""The notebooks as people use them: opened in JupyterLab, run, and their explorers dragged.

For each notebook with an explorer (:mod:`rfcore.viz.widgets`) the ``opened`` fixture loads it in Chromium,
notes what the saved explorer cell shows (the still picture: the notebook opens untrusted and its widget
state is not saved), clears the stored outputs, runs all cells from the Run menu and waits for the explorer
to show its picture. The tests then check the outputs for errors and move a slider from the keyboard, as a person
would, and wait for the picture and caption to change. Screenshots go to ``artifacts/screenshots/``
(``docs/screenshots/`` holds copies of the explorer crops, for the README); the time each cell took and
each slider's update latency go to ``artifacts/browser_timings.json``. Nothing here asserts a time.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # JupyterLab in Chromium

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
TIMEOUT_MS = 180_000
"""For opening a notebook and running all its cells (a few seconds to a minute on 2 cores)."""
UPDATE_TIMEOUT_MS = 10_000
"""For one slider move to reach the picture and caption (about 0.1-1 s; the measure is recorded)."""


@dataclass(frozen=True)
class ExplorerCase:
    """A notebook's explorer and how the test moves it.

    Attributes:
        notebook: File in ``notebooks/``.
        name: The :mod:`rfcore.viz.widgets` function; names its screenshot.
        control: Label of the slider the test moves.
        key: Key pressed on the slider's handle (``End``: to its maximum).
        expect: Text in the caption after the move.
    """

    notebook: str
    name: str
    control: str
    key: str
    expect: str


EXPLORERS = [
    ExplorerCase("00_quickstart.ipynb", "threshold_explorer", "threshold", "End", "score > 0.99:"),
    ExplorerCase("01_anchors.ipynb", "anchor_explorer", "x", "End", "(row 7, col 15)"),  # x 511 on P5, stride 32
    ExplorerCase("02_multitask_loss.ipynb", "loss_explorer", "OHEM ratio", "End", "OHEM 20:1"),
    ExplorerCase("03_landmark_normalisation.ipynb", "landmark_explorer", "scale", "End", "landmarks l = "),
    ExplorerCase("04_mesh_decoder.ipynb", "mesh_render_explorer", "yaw (deg)", "End", "yaw 60"),
]
LANDMARKS = EXPLORERS[3]

# ------------------------------------------------------------------ scripts run in the page

CLEARED = """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
    .every(p => !/\\d/.test(p.textContent))"""
WATCH_PROMPTS = """() => {
    // When each code cell's prompt turns from [ ] or [*] into [n].
    window.rfcoreStart = performance.now();
    window.rfcoreDone = {};
    window.rfcoreWatch = setInterval(() => {
        document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt').forEach((prompt, i) => {
            if (!(i in window.rfcoreDone) && /\\[\\d+\\]/.test(prompt.textContent)) {
                window.rfcoreDone[i] = performance.now();
            }
        });
    }, 50);
}"""
STDERR_TEXTS = """() => [...document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')].map(e => e.innerText)"""
FINISHED = f"""() => {{
    // 'ran' once every code cell ran and the explorer shows its picture, 'error' once a cell raised.
    if (!document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']")) return false;
    if (({STDERR_TEXTS})().some(text => text.includes('Traceback'))) return 'error';
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
    const image = document.querySelector('.jp-OutputArea-output img.widget-image');
    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent))
        && image !== null && image.naturalWidth > 0 && 'ran';
}}"""
CELL_TIMES = """() => {
    clearInterval(window.rfcoreWatch);
    // Cells run one after another: each took the time since the one before finished.
    const done = Object.values(window.rfcoreDone).sort((a, b) => a - b);
    return done.map((t, i) => (t - (i ? done[i - 1] : window.rfcoreStart)) / 1000);
}"""
EXPLORER_CELL = """() => [...document.querySelectorAll('.jp-CodeCell')]
    .findIndex(cell => cell.querySelector('img.widget-image') !== null)"""
WIDGET_STATE = """async (root) => {
    const image = root.querySelector('img.widget-image');
    const bytes = await (await fetch(image.src)).arrayBuffer();
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return {
        image: [...digest].map(b => b.toString(16).padStart(2, '0')).join(''),
        width: image.naturalWidth,
        height: image.naturalHeight,
        caption: root.querySelector('.widget-html-content').innerText,
    };
}"""
CONTENT_BOX = """(root) => {
    // The explorer's controls, picture and caption text, without the empty width right of them.
    const parts = [...root.querySelectorAll('img.widget-image, .widget-inline-hbox:not(.widget-html)')];
    const rects = parts.map(e => e.getBoundingClientRect());
    const caption = document.createRange();
    caption.selectNodeContents(root.querySelector('.widget-html-content pre'));  // the text, not the block
    rects.push(caption.getBoundingClientRect());
    const box = root.getBoundingClientRect();
    return {x: box.left, y: box.top, width: Math.max(...rects.map(r => r.right)) - box.left + 8, height: box.height};
}"""
EXPLORER_OUTPUTS = """(name) => {
    // What each output of the cell calling explorer `name` shows: 'widget' (ipywidgets' view sets no mime
    // type on its output) or the mime type JupyterLab rendered, and the width of its widest picture.
    const cell = [...document.querySelectorAll('.jp-CodeCell')]
        .find(cell => cell.querySelector('.jp-InputArea-editor').textContent.includes(name + '('));
    const outputs = cell ? [...cell.querySelectorAll('.jp-OutputArea-output')] : [];
    return outputs.length > 0 && outputs.map(output => [
        output.querySelector(':scope > .jupyter-widgets') ? 'widget' : output.dataset.mimeType,
        Math.max(0, ...[...output.querySelectorAll('img')].map(image => image.naturalWidth))]);
}"""
UPDATED_AT = """([root, src, caption]) => {
    // The time both the picture and the caption have changed, else false.
    const image = root.querySelector('img.widget-image');
    const text = root.querySelector('.widget-html-content').innerText;
    return image.src !== src && image.naturalWidth > 0 && text !== caption && performance.now();
}"""


# ------------------------------------------------------------------ fixture


@dataclass
class OpenedNotebook:
    """A notebook that has been run in JupyterLab, with its explorer on screen."""

    explorer: ExplorerCase
    page: object  # playwright.sync_api.Page
    widget: object  # Locator of the explorer's output
    stderr: list[str]
    cell_seconds: list[float]
    saved_outputs: list[list]  # [mime type, picture width] of each saved output of the explorer cell


@pytest.fixture(scope="module", params=EXPLORERS, ids=lambda explorer: explorer.notebook.removesuffix(".ipynb"))
def opened(request, browser, jupyterlab, timings, artifacts):
    """Open a notebook, run all its cells from the menu, screenshot it; shut its kernel down after its tests."""
    explorer = request.param
    page = browser.new_page(viewport={"width": 1280, "height": 1000})  # room for a whole explorer
    page.set_default_timeout(30_000)
    try:
        page.goto(jupyterlab.notebook_url(explorer.notebook))
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=TIMEOUT_MS)
        page.keyboard.press("Control+b")  # hide the file browser: more room for the notebook
        saved_outputs = page.wait_for_function(EXPLORER_OUTPUTS, arg=explorer.name).json_value()
        _clear_outputs(page, explorer, jupyterlab, artifacts)
        page.evaluate(WATCH_PROMPTS)
        _menu(page, "Run", "Run All Cells")
        _wait_for_all_cells(page, explorer, jupyterlab, artifacts)
        cell_seconds = page.evaluate(CELL_TIMES)
        widget = page.locator(".jp-OutputArea-output:has(img.widget-image)")
        _screenshots(page, widget, explorer, artifacts / "screenshots")
        slowest = max(range(len(cell_seconds)), key=cell_seconds.__getitem__)
        timings[explorer.notebook] = {
            "run_all": round(sum(cell_seconds), 2),
            "slowest_cell": round(cell_seconds[slowest], 2),
            "slowest_cell_index": slowest,  # 0: the imports
            "explorer_cell": round(cell_seconds[page.evaluate(EXPLORER_CELL)], 2),
        }
        yield OpenedNotebook(explorer, page, widget, page.evaluate(STDERR_TEXTS), cell_seconds, saved_outputs)
    finally:
        page.close()
        jupyterlab.shut_down_kernels()


# ------------------------------------------------------------------ tests


def test_every_notebook_with_an_explorer_is_driven_here():
    with_explorers = {path.name: path.read_text() for path in NOTEBOOKS.glob("*.ipynb")
                      if "from rfcore.viz.widgets import" in path.read_text()}
    assert sorted(with_explorers) == [case.notebook for case in EXPLORERS]
    for case in EXPLORERS:
        assert f"{case.name}(" in with_explorers[case.notebook], case


def test_all_cells_run_without_error_output(opened):
    errors = [text for text in opened.stderr if "Traceback" in text or "Error" in text]
    assert not errors, f"{opened.explorer.notebook}: error output:\n" + "\n".join(errors)
    assert opened.widget.count() == 1
    assert "Error displaying widget" not in opened.widget.inner_text()
    shown, own = opened.widget.locator("img.widget-image").evaluate("e => [e.clientWidth, e.naturalWidth]")
    assert shown == own, "the picture is stretched, not shown at its own size"
    _assert_log_console_empty(opened.page)


def test_saved_the_explorer_is_a_still_picture_run_it_is_the_live_widget(opened):
    """JupyterLab picks one alternative of the explorer's bundle (rfcore.viz.widgets): the picture in the
    untrusted saved notebook, the widget (ranked first) once the kernel has made it."""
    ((saved, width),) = opened.saved_outputs
    assert saved == "image/jpeg" and width > 0, opened.saved_outputs
    assert opened.page.evaluate(EXPLORER_OUTPUTS, opened.explorer.name) == [["widget", width]]


def test_moving_a_slider_rerenders_the_explorer(opened, timings):
    explorer = opened.explorer
    before = opened.widget.evaluate(WIDGET_STATE)
    latency = _move(opened, explorer.control, explorer.key)
    after = opened.widget.evaluate(WIDGET_STATE)
    timings[explorer.notebook][f"{explorer.control} slider update"] = latency
    timings[explorer.notebook]["picture"] = f"{after['width']}x{after['height']}"
    assert after["image"] != before["image"] and after["caption"] != before["caption"]
    assert explorer.expect in after["caption"], after["caption"]
    _assert_log_console_empty(opened.page)


@pytest.mark.parametrize("opened", [LANDMARKS], indirect=True, ids=["03_landmark_normalisation"])
def test_a_face_moved_out_of_the_image_shows_a_message_and_recovers(opened, timings, artifacts):
    centre_x = _slider(opened, "centre x")
    start = centre_x.locator(".widget-readout").inner_text()
    before = opened.widget.evaluate(WIDGET_STATE)
    timings[opened.explorer.notebook]["bad input update"] = _move(opened, "centre x", "Home")  # x = 0
    outside = opened.widget.evaluate(WIDGET_STATE)
    assert outside["image"] != before["image"]
    assert "does not lie inside the image" in outside["caption"], outside["caption"]
    assert "Traceback" not in opened.widget.inner_text()
    bad_input = artifacts / "screenshots" / f"{opened.explorer.name}-bad-input.png"
    _save_small_png(_crop(opened.page, opened.widget), bad_input)

    readout = centre_x.locator(".widget-readout")  # type the old centre back in
    readout.fill(start)
    readout.press("Enter")
    opened.page.wait_for_function("([root, text]) => !root.innerText.includes(text)",
                                  arg=[opened.widget.element_handle(), "does not lie inside"],
                                  timeout=UPDATE_TIMEOUT_MS)
    assert "landmarks l = " in opened.widget.evaluate(WIDGET_STATE)["caption"]
    _assert_log_console_empty(opened.page)


# ------------------------------------------------------------------ helpers


def _clear_outputs(page, explorer: ExplorerCase, jupyterlab, artifacts, attempts: int = 4) -> None:
    """Edit > Clear Outputs of All Cells until every prompt has lost its number (the first notebook a fresh
    JupyterLab opens may ignore the first click); else fail with a screenshot, the prompts and the server's log."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(attempts):
        page.locator(".jp-NotebookPanel .jp-Notebook").first.click()  # make the notebook the current widget
        _menu(page, "Edit", "Clear Outputs of All Cells")
        try:
            page.wait_for_function(CLEARED, timeout=10_000)
            return
        except PlaywrightTimeout:
            continue
    page.screenshot(path=artifacts / explorer.notebook.replace(".ipynb", "-not-cleared.png"))
    prompts = page.evaluate("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]"
                            ".map(p => p.textContent).join(' ')")
    pytest.fail(f"{explorer.notebook}: outputs not cleared after {attempts} tries; prompts {prompts}\n"
                f"JupyterLab log:\n{jupyterlab.log_tail()}", pytrace=False)


def _wait_for_all_cells(page, explorer: ExplorerCase, jupyterlab, artifacts) -> None:
    """Wait until every cell ran; else fail with a screenshot, the prompts, the errors and the server's log."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        state = page.wait_for_function(FINISHED, timeout=TIMEOUT_MS).json_value()
    except PlaywrightTimeout:
        state = "timeout"
    if state != "ran":
        page.screenshot(path=artifacts / explorer.notebook.replace(".ipynb", f"-{state}.png"))
        prompts = page.evaluate("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]"
                                ".map(p => p.textContent).join(' ')")
        problem = "a cell raised" if state == "error" else f"not done after {TIMEOUT_MS // 1000} s"
        pytest.fail(f"{explorer.notebook}: {problem}; prompts {prompts}\n" + "\n".join(page.evaluate(STDERR_TEXTS))
                    + f"\nJupyterLab log:\n{jupyterlab.log_tail()}", pytrace=False)


def _menu(page, menu: str, item: str, timeout_s: float = 60.0) -> None:
    """Click ``item`` in the main menu ``menu``, reopening the menu until it is enabled (the notebook is ready)."""
    deadline = time.monotonic() + timeout_s
    entry = page.locator(f'.lm-Menu-item:has(.lm-Menu-itemLabel:text-is("{item}"))')
    while True:
        page.locator(f'#jp-MainMenu .lm-MenuBar-itemLabel:text-is("{menu}")').click()
        if "lm-mod-disabled" not in entry.get_attribute("class"):
            entry.click()
            return
        page.keyboard.press("Escape")
        if time.monotonic() > deadline:
            pytest.fail(f"{menu} > {item} stayed disabled for {timeout_s:.0f} s", pytrace=False)
        page.wait_for_timeout(500)


def _slider(opened: OpenedNotebook, label: str):
    """The explorer's slider labelled ``label``."""
    return opened.widget.locator(".widget-slider", has=opened.page.locator(f'.widget-label:text-is("{label}")'))


def _move(opened: OpenedNotebook, label: str, key: str) -> float:
    """Press ``key`` on a slider's handle; return the seconds until picture and caption have changed."""
    root = opened.widget.element_handle()
    src, caption = root.evaluate("r => [r.querySelector('img.widget-image').src, "
                                 "r.querySelector('.widget-html-content').innerText]")
    handle = _slider(opened, label).locator(".noUi-handle")
    handle.focus()
    start = opened.page.evaluate("performance.now()")
    handle.press(key)
    updated = opened.page.wait_for_function(UPDATED_AT, arg=[root, src, caption], timeout=UPDATE_TIMEOUT_MS)
    return round((updated.json_value() - start) / 1000, 3)


def _assert_log_console_empty(page) -> None:
    """A widget callback that raises shows up only in JupyterLab's log console: it must be empty."""
    status = page.locator(".jp-LogConsoleStatusItem:not(.lm-mod-hidden) [title]")
    assert status.count() == 0, f"log console: {status.first.get_attribute('title')}"


def _screenshots(page, widget, explorer: ExplorerCase, folder) -> None:
    """The notebook scrolled to its explorer, and the explorer alone (small PNG)."""
    folder.mkdir(exist_ok=True)
    widget.evaluate("e => e.closest('.jp-Cell').scrollIntoView({block: 'start'})")
    page.screenshot(path=folder / explorer.notebook.replace(".ipynb", ".png"))
    _save_small_png(_crop(page, widget), folder / f"{explorer.name}.png")


def _crop(page, widget) -> bytes:
    """Screenshot (PNG) of the explorer's controls, picture and caption."""
    return page.screenshot(clip=widget.evaluate(CONTENT_BOX))


def _save_small_png(png: bytes, path, max_bytes: int = 150_000) -> None:
    """Save a screenshot with the largest palette (256, 128 or 64 colours) that keeps it under ``max_bytes``.

    Octree quantisation keeps the small saturated marks (landmark dots, thin boxes) that median cut
    merges into the photo's colours.
    """
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for colors in (256, 128, 64):
        small = io.BytesIO()
        image.quantize(colors, method=Image.Quantize.FASTOCTREE).save(small, format="PNG", optimize=True)
        if small.tell() <= max_bytes:
            break
    path.write_bytes(small.getvalue())
