"""The built documentation site, opened in headless Chromium (``make docs-check``).

Needs a built site (``make docs``) and Chromium (``/usr/bin/chromium``, installed by
``make docs-check`` when missing). Without them the tests skip, unless
``DOCS_REQUIRED=1`` (set by ``make docs-check`` and CI), where they fail instead.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"
SCREENSHOTS = ROOT / "docs" / "_build" / "screenshots"
REQUIRED = os.environ.get("DOCS_REQUIRED", "") not in ("", "0")


def _need(condition: bool, why: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def site_url():
    _need((SITE / "index.html").exists(), "the site is not built (run `make docs`)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def page():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    _need(chromium is not None, "Chromium is not installed (run `make docs-check`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        pg = browser.new_page(viewport={"width": 1280, "height": 1600})
        external = []
        # The site must be self-contained: a request that leaves localhost is a defect.
        pg.on("request", lambda r: external.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
        pg.external_requests = external
        yield pg
        browser.close()


def _open(page, url: str) -> None:
    page.goto(url, wait_until="load")
    # every image finished loading (or failed): a broken one is then reported below
    page.wait_for_function("() => Array.from(document.images).every(img => img.complete)", timeout=20_000)


def _broken_images(page) -> list[str]:
    return page.evaluate(
        "() => Array.from(document.images)"
        ".filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src)"
    )


def test_index_loads_and_links_the_gallery_and_api(site_url, page):
    _open(page, f"{site_url}/index.html")
    assert "lowdim-diffusion" in page.title()
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))")
    assert any("auto_examples/index.html" in (h or "") for h in hrefs)
    assert any("api.html" in (h or "") for h in hrefs)
    assert _broken_images(page) == []
    # MathJax renders the inline formula of the front page.
    page.wait_for_selector("mjx-container", timeout=20_000)


def test_gallery_page_shows_its_figures_and_renders_math(site_url, page):
    _open(page, f"{site_url}/auto_examples/01_posterior_soft_projection.html")
    figures = page.evaluate("() => Array.from(document.querySelectorAll('img.sphx-glr-single-img, img.sphx-glr-multi-img')).length")
    assert figures >= 1
    assert _broken_images(page) == []
    page.wait_for_selector("mjx-container", timeout=20_000)
    assert page.evaluate("() => document.querySelectorAll('mjx-container').length") >= 3
    # The raw TeX is gone: MathJax replaced it.
    assert "\\mathrm{softmax}" not in page.inner_text("article")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "gallery-01.png"
    page.screenshot(path=str(path), full_page=False)
    print(f"screenshot: {path.relative_to(ROOT)}")
    assert path.stat().st_size > 20_000


def test_every_gallery_example_has_a_figure_and_downloads(site_url, page):
    _open(page, f"{site_url}/auto_examples/index.html")
    links = page.evaluate(
        "() => Array.from(document.querySelectorAll('a.reference.internal'))"
        ".map(a => a.getAttribute('href')).filter(h => h && /\\d\\d_.*\\.html/.test(h))"
    )
    examples = sorted({h.split("#")[0] for h in links})
    assert len(examples) >= 6
    for href in examples:
        _open(page, f"{site_url}/auto_examples/{href}")
        assert page.evaluate("() => document.querySelectorAll('img.sphx-glr-single-img, img.sphx-glr-multi-img').length") >= 1, href
        assert _broken_images(page) == [], href
        downloads = page.evaluate("() => Array.from(document.querySelectorAll('a.download')).map(a => a.getAttribute('href'))")
        assert any(d.endswith(".py") for d in downloads) and any(d.endswith(".ipynb") for d in downloads), href


def test_the_site_makes_no_external_requests(site_url, page):
    _open(page, f"{site_url}/index.html")
    assert page.external_requests == []


def test_api_reference_lists_the_public_names(site_url, page):
    _open(page, f"{site_url}/api.html")
    text = page.inner_text("article")
    for name in ("posterior_mean", "KSubspaces", "localization_error", "run_grid"):
        assert name in text
