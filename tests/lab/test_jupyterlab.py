"""What a learner sees in JupyterLab, checked in a real browser (`make test-lab`; README, "Tests").

The course's JupyterLab serves the checkout as `make lab` does (lab_server.py); Debian's Chromium,
driven by Playwright, goes through it as a learner would: both folders in the file browser,
lesson 02 opened from there with the course kernel, its stored plot shown, its link to the
solutions opening the solutions notebook, Run All to the end without an error, and a stored
pandas table shown trusted (with its styles: `make setup` runs `jupyter trust`). The tests run in
this order on one page. Nothing is saved: the stored notebooks stay as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import pytest
from lab.lab_server import ARTIFACTS, ROOT, Lab
from playwright.sync_api import Page, expect, sync_playwright

VENV = ROOT / os.environ.get("TINYBERT_VENV", ".venv")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# headless, and nothing that reaches for the network on its own (CI has none)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

KERNEL = "Python (TinyBERT course)"  # `make setup`'s kernel spec, as the toolbar names it
KERNEL_NAME = "tinybert"
LESSON = "notebooks/02_embedding_loss.ipynb"
SOLUTION = "solutions/02_embedding_loss_solutions.ipynb"
TABLES = "notebooks/10_results_and_ablations.ipynb"  # stored pandas tables (HTML)
RUN_TIMEOUT = 300  # s, lesson 02 top to bottom (the smoke profile)

CURRENT = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in the front tab
TABS = "#jp-main-dock-panel"  # the documents' tabs (not the side bars')
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception)\b", re.MULTILINE)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    for old in ARTIFACTS.glob("test_*.png"):  # an earlier run's screenshots
        old.unlink()
    server = Lab(VENV, ROOT, tmp_path_factory.mktemp("jupyter"), ARTIFACTS / "jupyterlab.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def page(lab: Lab):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: `make test-lab` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})  # Playwright's own fresh profile
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def dir_item(page: Page, name: str, folder: bool = False):
    """The file browser's row for ``name``."""
    rows = page.locator(f".jp-DirListing-item{'[data-isdir=true]' if folder else ''}")
    return rows.filter(has=page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$")))


def menu(page: Page, top: str, item: str) -> None:
    """Click ``top`` in the menu bar, then ``item`` in its menu."""
    page.locator("#jp-menu-panel").get_by_role("menuitem", name=top, exact=True).click()
    page.locator(".lm-Menu .lm-Menu-itemLabel").filter(has_text=re.compile(f"^{re.escape(item)}$")).click()


def open_from_browser(page: Page, path: str) -> None:
    """Open ``path`` (under a top folder) by double clicks in the file browser, as a learner does."""
    folder, name = path.split("/")
    page.locator(".jp-FileBrowser .jp-BreadCrumbs-home").click()
    dir_item(page, folder, folder=True).dblclick()
    dir_item(page, name).dblclick()
    expect(page.locator(f"{TABS} .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")).to_have_text(name)
    expect(page.locator(CURRENT)).to_be_visible()


def expect_course_kernel(page: Page, lab: Lab, path: str) -> None:
    expect(page.locator(f"{CURRENT} .jp-Toolbar-kernelName")).to_have_text(KERNEL, timeout=60_000)
    expect(page.locator(".jp-Dialog")).to_have_count(0)  # no "Select Kernel" dialog
    deadline = time.monotonic() + 60
    while (session := lab.session(path)) is None or session["kernel"]["execution_state"] in ("starting", "unknown"):
        assert time.monotonic() < deadline, f"no kernel started for {path}: {session}"
        time.sleep(0.5)
    assert session["kernel"]["name"] == KERNEL_NAME, session


def cell_states(page: Page) -> dict:
    """The front notebook's code-cell prompts ('[3]:', '[*]:', '[ ]:'), kernel status and error outputs."""
    return page.evaluate(
        """(current) => {
            const panel = document.querySelector(current);
            const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
            return {
                prompts: [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim()),
                status: status ? status.getAttribute('data-status') : null,
                stderr: [...panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
                    .map(e => e.textContent),
            };
        }""",
        CURRENT,
    )


def stored_png(page: Page):
    return page.locator(f'{CURRENT} .jp-OutputArea-output img[src^="data:image/png"]')


def expect_rendered(image) -> None:
    image.scroll_into_view_if_needed()
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0"), "the PNG output did not decode"


def test_the_lab_lists_the_lessons_and_the_solutions(page: Page, lab: Lab):
    page.goto(lab.url("lab"))
    expect(page.locator(".jp-DirListing-item").first).to_be_visible(timeout=90_000)
    for folder in ("notebooks", "solutions"):
        expect(dir_item(page, folder, folder=True)).to_be_visible()


def test_lesson_02_opens_with_the_course_kernel(page: Page, lab: Lab):
    open_from_browser(page, LESSON)
    expect_course_kernel(page, lab, LESSON)
    expect(page.locator("#jp-main-statusbar")).to_contain_text(KERNEL)


def test_the_stored_plot_renders_as_an_image(page: Page):
    expect(stored_png(page)).not_to_have_count(0)
    expect_rendered(stored_png(page).first)


def test_the_link_to_the_solutions_opens_them(page: Page, lab: Lab):
    name = Path(SOLUTION).name
    link = page.locator(f"{CURRENT} .jp-MarkdownOutput a").filter(has_text=name)
    expect(link).to_have_count(1)
    link.scroll_into_view_if_needed()
    link.click()
    expect(page.locator(f"{TABS} .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")).to_have_text(name)
    expect_course_kernel(page, lab, SOLUTION)
    page.locator(f"{TABS} .lm-TabBar-tabLabel", has_text=Path(LESSON).name).click()  # back to the lesson
    expect(page.locator(f"{TABS} .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")).to_have_text(Path(LESSON).name)


def test_run_all_finishes_without_an_error(page: Page, lab: Lab):
    stored = hashlib.sha256((ROOT / LESSON).read_bytes()).hexdigest()
    menu(page, "Edit", "Clear Outputs of All Cells")
    expect(stored_png(page)).to_have_count(0)
    assert all(p == "[ ]:" for p in cell_states(page)["prompts"]), cell_states(page)["prompts"]

    menu(page, "Run", "Run All Cells")
    start = time.monotonic()
    while True:
        state = cell_states(page)
        errors = [text for text in state["stderr"] if TRACEBACK.search(text)]
        assert not errors, f"Run All stopped at an error:\n{errors[0][-3000:]}"
        if state["status"] == "idle" and all(re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"]):
            break
        assert time.monotonic() - start < RUN_TIMEOUT, (
            f"Run All not done in {RUN_TIMEOUT} s: kernel {state['status']}, prompts {state['prompts']}")
        time.sleep(1)
    print(f"Run All on {LESSON}: {time.monotonic() - start:.0f} s")
    assert lab.session(LESSON)["kernel"]["execution_state"] == "idle"
    expect_rendered(stored_png(page).first)  # the plot, drawn again by this run
    assert hashlib.sha256((ROOT / LESSON).read_bytes()).hexdigest() == stored, f"{LESSON} was rewritten"


def test_stored_tables_show_trusted_with_their_styles(page: Page, lab: Lab):
    stored = json.loads((ROOT / TABLES).read_text(encoding="utf-8"))
    html = sum("text/html" in out.get("data", {}) for cell in stored["cells"] for out in cell.get("outputs", []))
    assert html, f"{TABLES} stores no HTML output any more: point TABLES at a lesson that does"
    open_from_browser(page, TABLES)
    tables = page.locator(f'{CURRENT} .jp-OutputArea-output[data-mime-type="text/html"]')
    expect(tables).to_have_count(html)
    untrusted = tables.evaluate_all(
        "nodes => nodes.map((n, i) => [i, n.classList.contains('jp-mod-trusted'), n.querySelectorAll('style').length])"
        ".filter(([, trusted, styles]) => !trusted || !styles)")
    trust = page.locator("#jp-main-statusbar .jp-StatusItem-trust")
    assert not untrusted, (
        f"{TABLES}: HTML outputs shown untrusted, their <style> removed (index, trusted, <style> count): "
        f"{untrusted}; status bar: {trust.get_attribute('title')!r}. `make setup` trusts the stored notebooks "
        "(`jupyter trust`)")
    # the status bar's trust indicator: trusted, not "Notebook not trusted"
    expect(trust.locator('[data-icon="ui-components:trusted"]')).to_have_count(1)
    expect(trust.locator('[data-icon="ui-components:not-trusted"]')).to_have_count(0)
