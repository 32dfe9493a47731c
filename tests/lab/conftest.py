"""The browser test's folder: run by `make test-lab` only, never collected by `make test-lib`.

`make test-lib` runs ``pytest tests``, in the course's venv, which has neither Playwright nor a
browser: the files here are collected only when this folder (or a file in it) is named on the
command line, as `make test-lab` does. A failed test leaves a screenshot of the page in build/lab/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lab.lab_server import ARTIFACTS

HERE = Path(__file__).resolve().parent


def _named_here(config: pytest.Config) -> bool:
    base = config.invocation_params.dir
    for arg in config.args:
        path = (base / arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config):
    if collection_path.parent == HERE and not _named_here(config):
        return True  # `pytest tests`: leave the browser test to `make test-lab`
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    page = getattr(item, "funcargs", {}).get("page")
    if report.failed and page is not None and report.when in ("setup", "call"):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"{item.name}.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
            where = f"screenshot of the page: {shot}"
        except Exception as err:  # the browser itself may be what failed
            where = f"no screenshot ({type(err).__name__}: {err})"
        where += f"\nJupyterLab's log: {ARTIFACTS / 'jupyterlab.log'}"
        report.sections.append(("JupyterLab", where))
    return report
