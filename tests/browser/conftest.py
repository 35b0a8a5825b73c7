"""JupyterLab in a real browser: a server on a free loopback port and Chromium driven by Playwright.

The browser tests need Debian's ``chromium`` package (``apt-get install chromium``; Playwright's own browser
download is not used) and the ``playwright`` Python package (in the ``dev`` extra). When either is missing
they are skipped with a message naming what to install; with ``RFCORE_REQUIRE_BROWSER=1`` (set by
``.ci/run``) they fail instead, so CI never passes without having driven a browser.

They run after every other test, the notebooks under nbval included, and write what a person would look
at (screenshots, timings) under ``artifacts/``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
"""Headless, and quiet: without the last four Chromium keeps trying to reach Google's servers."""
LAB_SETTINGS = {
    # No "would you like news?" toast, no update check.
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    # Every cell in the DOM, so the tests can read all outputs without scrolling.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}
TIMINGS = pytest.StashKey[dict]()
SKIPPED = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Move the browser tests to the end, after the unit tests and the notebooks, grouped by notebook.

    Tests of one notebook (one parameter id) run together, in the order they are written, so each
    notebook is opened and run once.
    """
    here = Path(__file__).parent

    def position(item):
        if here not in Path(item.path).parents:
            return (False,)
        return (True, item.callspec.id if hasattr(item, "callspec") else "", item.location[1])

    items.sort(key=position)


def pytest_terminal_summary(terminalreporter, config):
    """Say why the browser tests were skipped, or print the timings they measured (also in ``artifacts/``)."""
    if SKIPPED in config.stash:
        terminalreporter.write_sep("-", "browser tests skipped", yellow=True)
        terminalreporter.write_line(config.stash[SKIPPED])
    timings = config.stash.get(TIMINGS, {})
    if timings:
        terminalreporter.write_sep("-", "JupyterLab timings, seconds (artifacts/browser_timings.json)")
        for name, values in timings.items():
            terminalreporter.write_line(f"{name}: " + ", ".join(f"{key} {value}" for key, value in values.items()))


def missing_tools() -> list[str]:
    """What the browser tests need and this machine lacks, each with how to install it."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (pip install playwright, or pip install -e '.[dev]')")
    if shutil.which("chromium") is None:
        missing.append("Chromium (Debian: apt-get install chromium; Playwright's browser download is not used)")
    if importlib.util.find_spec("jupyterlab") is None:
        missing.append("JupyterLab (pip install -e '.[dev]')")
    return missing


@pytest.fixture(scope="session")
def chromium(request):
    """Path of the system Chromium; skips (fails under ``RFCORE_REQUIRE_BROWSER=1``) when a tool is missing."""
    missing = missing_tools()
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("RFCORE_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (RFCORE_REQUIRE_BROWSER=1)", pytrace=False)
        request.config.stash[SKIPPED] = message
        pytest.skip(message)
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def browser(chromium):
    """A headless Chromium shared by all browser tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab.

    Attributes:
        url: Base URL, ``http://127.0.0.1:PORT``.
        token: Its random access token.
        root: Folder it serves: a copy of ``notebooks/`` beside a link to ``assets/``.
        log: The server's output, its kernels' included.
    """

    url: str
    token: str
    root: Path
    log: Path

    def notebook_url(self, name: str) -> str:
        """URL that opens notebook ``name`` alone (``reset``: no tabs from an earlier visit)."""
        return f"{self.url}/lab/tree/notebooks/{name}?reset&token={self.token}"

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log."""
        return self.log.read_text(errors="replace")[-chars:]

    def shut_down_kernels(self) -> None:
        """End every session and its kernel (frees the CPU for the next notebook)."""
        for session in self._request("GET", "/api/sessions"):
            self._request("DELETE", f"/api/sessions/{session['id']}")

    def _request(self, method: str, path: str):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None


@pytest.fixture(scope="session")
def jupyterlab(chromium, tmp_path_factory):
    """JupyterLab on 127.0.0.1 with a free port and a random token, serving a copy of the notebooks.

    Running cells rewrites a notebook's outputs, so the server sees a temporary copy of ``notebooks/``
    (with ``assets/`` linked beside it, where the notebooks' ``../assets`` paths point), never the
    committed files. Its settings and workspaces live in the same temporary folder, and nothing in it
    reaches for the internet (news, update checks and the PyPI extension manager are off).
    """
    root = tmp_path_factory.mktemp("jupyterlab")
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (root / "assets").symlink_to(REPO / "assets")
    for plugin, values in LAB_SETTINGS.items():
        path = root / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    lab = Lab(f"http://127.0.0.1:{_free_port()}", secrets.token_hex(24), root, root / "jupyterlab.log")
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={lab.url.rsplit(':', 1)[1]}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={lab.token}", f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={root / 'settings'}", f"--LabApp.workspaces_dir={root / 'workspaces'}",
    ]
    # Its own data folder: a fresh trust database, so the saved notebooks open untrusted as anyone's would.
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / "config"), "JUPYTER_DATA_DIR": str(root / "data"),
           "JUPYTER_RUNTIME_DIR": str(root / "runtime")}
    with open(lab.log, "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        _wait_until_up(lab, server)
        yield lab
    finally:
        server.terminate()  # JupyterLab shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def artifacts():
    """``artifacts/`` at the repository root (gitignored, kept by CI): screenshots and timings."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def timings(request, artifacts):
    """``{notebook: {measure: value}}`` the tests fill in; written to ``artifacts/browser_timings.json``."""
    record = {}
    request.config.stash[TIMINGS] = record
    yield record
    (artifacts / "browser_timings.json").write_text(json.dumps(record, indent=2) + "\n")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(lab: Lab, server: subprocess.Popen, timeout: float = 90.0) -> None:
    """Poll ``/api/status`` until the server answers; fail with its log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with status {server.returncode}:\n{lab.log_tail()}", pytrace=False)
        try:
            lab._request("GET", "/api/status")
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{lab.log_tail()}", pytrace=False)
