"""Browser tests: Debian's chromium, driven by Playwright, against a real ``mbtcode serve``.

One demo instance and one server per run (``mbtcode demo --no-serve`` in a fresh instance
folder, then ``mbtcode serve`` on a free port); every test gets its own browser context
(fresh cookies). Every page is watched: a console error (a CSP violation, a failed script)
or an uncaught exception fails the test, unless the test declared it as expected with
``console.allow(pattern)`` (e.g. the 401 a save gets after the login expired).

Fixture names avoid pytest-playwright's (``browser``, ``page``, ``context``) on purpose.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

HERE = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").lower() == "true"
SKIP_REASON = (
    "browser tests run against the embedded default (SQLite) in the SQLite pass; "
    "MBTCODE_TEST_DATABASE_URL is set"
)


def pytest_collection_modifyitems(config, items):
    """The PostgreSQL pass skips this directory (the server runs on its embedded default)."""
    if not os.environ.get("MBTCODE_TEST_DATABASE_URL"):
        return
    marker = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(marker)


def _missing(what: str, how: str):
    message = f"{what} is missing: {how}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# ---- the live server ------------------------------------------------------------------


def _env(instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBTCODE_")}
    env["MBTCODE_INSTANCE_PATH"] = str(instance)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str  # without a trailing slash
    instance: Path
    workdir: Path
    passwords: dict[str, str]

    def mbtcode(self, *args: str) -> subprocess.CompletedProcess:
        """Run ``python -m mbtcode ARGS`` against this server's instance folder."""
        done = subprocess.run(
            [sys.executable, "-m", "mbtcode", *args], env=_env(self.instance), cwd=self.workdir,
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, f"mbtcode {' '.join(args)}: {done.stderr or done.stdout}"
        return done

    def mbtcode_each(self, *commands: list[str]) -> None:
        """Run several mbtcode commands, in order, in one process (saves interpreter starts)."""
        done = subprocess.run(
            [sys.executable, "-c", _RUN_EACH, json.dumps(commands)], env=_env(self.instance),
            cwd=self.workdir, capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr or done.stdout


_RUN_EACH = """
import json, sys
from mbtcode.cli import main
for args in json.loads(sys.argv[1]):
    try:
        main(args, prog_name="mbtcode")
    except SystemExit as exc:
        if exc.code:
            sys.exit(f"mbtcode {' '.join(args)} failed ({exc.code})")
"""


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> LiveServer:
    workdir = tmp_path_factory.mktemp("browser-server")
    instance = workdir / "instance"
    env = _env(instance)
    demo = subprocess.run([sys.executable, "-m", "mbtcode", "demo", "--no-serve"], env=env,
                          cwd=workdir, capture_output=True, text=True, timeout=120, check=False)
    assert demo.returncode == 0, demo.stderr
    passwords = json.loads((instance / "demo-accounts.json").read_text())
    port = _free_port()
    log = (workdir / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mbtcode", "serve", "--port", str(port)],
        env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise AssertionError(f"server exited: {(workdir / 'server.log').read_text()}")
            try:
                urllib.request.urlopen(url + "/auth/login", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("server did not come up within 30 s") from None
                time.sleep(0.1)
        yield LiveServer(url, instance, workdir, passwords)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


# ---- the browser ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_browser():
    if not CHROMIUM.exists():
        _missing(str(CHROMIUM), "install Debian's chromium (apt-get install chromium), "
                 "or run scripts/test-all, which installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package", "pip install -e '.[test]'")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class ConsoleGuard:
    """Console errors and page errors of every watched page; expected ones are allowed."""

    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern] = field(default_factory=list)
    reported: int = 0  # problems[:reported] have been reported already

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def watch(self, page) -> None:
        def on_console(message):
            if message.type not in ("error", "assert"):
                return
            location = message.location or {}
            text = f"console {message.type}: {message.text} ({location.get('url', '')})"
            self.problems.append(text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def unexpected(self) -> list[str]:
        """Problems not allowed and not reported yet (each is reported once)."""
        fresh = self.problems[self.reported:]
        self.reported = len(self.problems)
        return [p for p in fresh if not any(a.search(p) for a in self.allowed)]


def _console_failure(problems: list[str]) -> str:
    return "console errors or page errors:\n" + "\n".join(problems)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A console error or page error during the test fails the test itself."""
    outcome = yield
    guard = item.funcargs.get("console") if hasattr(item, "funcargs") else None
    if isinstance(guard, ConsoleGuard) and outcome.excinfo is None:
        problems = guard.unexpected()
        if problems:
            outcome.force_exception(pytest.fail.Exception(_console_failure(problems), pytrace=False))


@pytest.fixture
def console() -> ConsoleGuard:
    return ConsoleGuard()


@pytest.fixture
def browser_context(chromium_browser, live_server, console, request):
    """A fresh context (own cookies); fails the test on any unexpected console error."""
    context = chromium_browser.new_context(base_url=live_server.url,
                                           viewport={"width": 1280, "height": 900})
    context.set_default_timeout(5000)
    context.on("page", console.watch)
    yield context
    context.close()
    unexpected = console.unexpected()  # whatever came after the test's last step
    if unexpected:
        pytest.fail(_console_failure(unexpected), pytrace=False)


@pytest.fixture
def browser_page(browser_context):
    return browser_context.new_page()
