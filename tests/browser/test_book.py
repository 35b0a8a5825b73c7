"""The notebooks as a book: the site ``tools/build_book.py`` builds, opened in Chromium.

The ``book`` fixture builds the site once into a temporary folder (warnings are errors, so a reference that
does not resolve fails here), or uses the one named by ``$RFCORE_BOOK`` (``python tools/build_book.py`` has
built it), and serves it on a free loopback port. The tests open every notebook's page and check it shows
each figure the notebook saved (the explorers' still pictures included) and its formulas typeset; that the
navigation lists the notebooks in their order and its "next" links walk them in that order; that every
link between the site's pages, anchors included, resolves; and that the pages ask nothing of the internet.
Screenshots of the notebook pages go to ``artifacts/book/``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TIMEOUT_MS = 60_000

FIGURES = """() => [...document.querySelectorAll('.cell_output img')].map(img => ({
    src: img.getAttribute('src'), loaded: img.complete && img.naturalWidth > 0}))"""

pytestmark = pytest.mark.slow  # builds the book and drives Chromium


def saved_figures(notebook: Path) -> int:
    """How many pictures the notebook's saved outputs hold (PNG plots and the explorers' JPEG stills)."""
    cells = json.loads(notebook.read_text())["cells"]
    return sum(any(kind in output.get("data", {}) for kind in ("image/png", "image/jpeg"))
               for cell in cells for output in cell.get("outputs", []))


def has_math(notebook: Path) -> bool:
    cells = json.loads(notebook.read_text())["cells"]
    return any("$" in "".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")


@pytest.fixture(scope="session")
def book(chromium, tmp_path_factory) -> Path:
    """The built site: ``$RFCORE_BOOK`` if set, else built now with ``tools/build_book.py``."""
    if os.environ.get("RFCORE_BOOK"):
        site = Path(os.environ["RFCORE_BOOK"])
        assert (site / "index.html").is_file(), f"$RFCORE_BOOK={site} holds no built site (index.html)"
        return site
    site = tmp_path_factory.mktemp("book") / "site"
    build = subprocess.run([sys.executable, str(REPO / "tools" / "build_book.py"), "--out", str(site)],
                           capture_output=True, text=True, check=False)
    assert build.returncode == 0, f"the book did not build without warnings:\n{build.stderr[-5000:]}"
    return site


@pytest.fixture(scope="session")
def site_url(book):
    """The site served over HTTP on 127.0.0.1 (a free port) while the tests run."""
    handler = functools.partial(Quiet, directory=str(book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def page(browser, site_url):
    """A page that records failed loads and refuses any request that leaves the site."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("response", lambda r: r.status >= 400 and page.problems.append(f"{r.status} {r.url}"))
    page.on("requestfailed", lambda r: page.problems.append(f"failed {r.url}"))

    def only_the_site(route):
        if route.request.url.startswith(site_url):
            route.continue_()
        else:
            page.problems.append(f"left the site: {route.request.url}")
            route.abort()

    page.route("**/*", only_the_site)
    yield page
    context.close()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_every_notebook_page_shows_its_figures_and_formulas(page, site_url, notebook, artifacts):
    page.goto(f"{site_url}/notebooks/{notebook.stem}.html", wait_until="load", timeout=TIMEOUT_MS)
    title = json.loads(notebook.read_text())["cells"][0]["source"][0].lstrip("# ").strip()
    assert page.locator("main h1").first.inner_text().strip().rstrip("#").strip() == title
    figures = page.evaluate(FIGURES)
    assert figures and len(figures) == saved_figures(notebook)
    assert all(figure["loaded"] for figure in figures), [f["src"] for f in figures if not f["loaded"]]
    if has_math(notebook):
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=TIMEOUT_MS)
        page.evaluate("() => MathJax.startup.promise.then(() => true)")
        formulas = page.eval_on_selector_all(".math", "all => all.map(m => m.querySelector('mjx-container') !== null)")
        assert formulas and all(formulas), f"{formulas.count(False)} of {len(formulas)} formulas left as TeX"
    (artifacts / "book").mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "book" / f"{notebook.stem}.png"))
    page.locator(".cell_output img").first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "book" / f"{notebook.stem}_figure.png"))
    assert page.problems == []


def test_navigation_follows_the_notebooks_order(page, site_url):
    page.goto(f"{site_url}/index.html", wait_until="load", timeout=TIMEOUT_MS)
    listed = page.eval_on_selector_all("nav.bd-docs-nav a.reference.internal", "links => links.map(a => a.href)")
    order = [f"{site_url}/notebooks/{n.stem}.html" for n in NOTEBOOKS]
    assert [url for url in listed if "/notebooks/" in url] == order
    visited = []
    page.goto(order[0], wait_until="load", timeout=TIMEOUT_MS)
    while "/notebooks/" in page.url:
        visited.append(page.url)
        page.locator("a.right-next").first.click()
        page.wait_for_load_state("load")
    assert visited == order
    assert page.problems == []


def test_a_link_between_notebooks_opens_the_other_page(page, site_url):
    page.goto(f"{site_url}/notebooks/00_quickstart.html", wait_until="load", timeout=TIMEOUT_MS)
    page.locator("main a[href='01_anchors.html']").first.click()
    page.wait_for_load_state("load")
    assert page.url == f"{site_url}/notebooks/01_anchors.html"
    assert page.problems == []


class Links(HTMLParser):
    """The ``href``/``src`` of a page and its element ids."""

    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name) and not (tag == "a" and name == "src"):
                self.links.append(attrs[name])


@functools.cache
def parse(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text(errors="replace"))
    return parser


def test_every_internal_link_resolves(book):
    broken = []
    pages = sorted(book.rglob("*.html"))
    for page_path in pages:
        if {"_sources", "_static"} & set(page_path.parts):  # copies of the sources, the theme's templates
            continue
        base = page_path.relative_to(book).as_posix()
        for link in parse(page_path).links:
            if urlparse(link).scheme in ("http", "https", "mailto", "data", "javascript"):
                continue
            target, fragment = urldefrag(urljoin(base, link))
            target = urlparse(target).path  # without ?digest=...
            path = book / unquote(target) if target else page_path
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                broken.append(f"{base}: {link} (no file)")
            elif fragment and path.suffix == ".html" and unquote(fragment) not in parse(path).ids:
                broken.append(f"{base}: {link} (no anchor)")
    assert len(pages) > 20 and broken == []
