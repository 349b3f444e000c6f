"""The HTML comparison report opened in a real Chromium: every plot loads, nothing errors.

Playwright drives an installed Chromium: its own (``playwright install chromium``) if present,
else the system's (Debian's ``chromium`` package); with neither the test is skipped.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import tier

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extras")

SYSTEM_CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def chromium_executable(playwright: sync_api.Playwright) -> str | None:
    """Playwright's downloaded Chromium if there is one, else a system one, else None."""
    bundled = Path(playwright.chromium.executable_path)
    if bundled.is_file():
        return str(bundled)
    return next(filter(None, map(shutil.which, SYSTEM_CHROMIUM)), None)


@pytest.fixture(scope="module")
@tier("system")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        executable = chromium_executable(playwright)
        if executable is None:
            pytest.skip(
                "no Chromium to drive: install Debian's `chromium` (/usr/bin/chromium) or run "
                "`playwright install chromium`"
            )
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


def test_report_page_loads_every_plot_without_errors(smoke_run, browser) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    problems: list[str] = []

    def on_console(message: sync_api.ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda r: problems.append(f"failed to load {r.url[:80]}"))
    page.goto(smoke_run.report.as_uri(), wait_until="load")

    images = page.eval_on_selector_all(
        "img", "all => all.map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert sorted(alt for alt, *_ in images) == [
        "imdb_far_from_data.png",
        "imdb_reliability.png",
        "imdb_training_vs_validation.png",
        "imdb_validation_loss.png",
        "mnist_dense_vs_cnn.png",
        "mnist_reliability.png",
        "mnist_rotated_digits.png",
        "mnist_training_vs_validation.png",
    ]
    for alt, complete, width, height in images:
        assert complete and width > 0 and height > 0, f"{alt} did not load"
    assert problems == []
    # The links to the parent runs point at the MLflow UI's run pages.
    links = page.eval_on_selector_all("dd a", "all => all.map(a => [a.textContent, a.href])")
    assert sorted(text for text, _ in links) == ["imdb", "mnist"]
    for dataset, href in links:
        assert href.startswith("http://127.0.0.1:5000/#/experiments/")
        assert href.endswith(
            f"/runs/{smoke_run.parent_run_ids[dataset]}?workflowType=machine_learning"
        )
    page.close()
