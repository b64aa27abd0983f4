"""A real browser against the demo stack: headless Debian Chromium driven by Playwright.

The stack (broker with the in-memory store, demo city IdPs, demo services) runs on
free ports, one per test module.  Chromium is Debian's ``/usr/bin/chromium``
(CI installs it; ``playwright install`` is never used) started with flags that keep
it off the network: the machine has no internet, and without them Chromium stalls on
background fetches.  Every request that leaves localhost is refused and recorded, so
a test can assert that the browser was never sent anywhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True}


SKIP_REASON = (f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) "
               "to run the browser tests")


def pytest_collection_modifyitems(config, items):
    """Without Chromium, skip before any stack starts."""
    if CHROMIUM.exists():
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


def _ports() -> Ports:
    return Ports(*(free_port() for _ in range(5)))


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[DemoStack]:
    """Broker (in-memory store), demo IdPs and demo services, on free ports."""
    root = tmp_path_factory.mktemp("browser-demo")
    demo = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=_ports(), environ={})
    demo.start()
    yield demo
    demo.stop()


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per module; each test opens its own context (its own cookies)."""
    if not CHROMIUM.exists():
        pytest.skip(SKIP_REASON)
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@dataclasses.dataclass
class Session:
    """A browser context (one person) and its page, with every URL it requested."""

    context: object
    page: object
    requested: list[str]
    refused: list[str]

    def hosts_requested(self) -> set[str]:
        return {urlsplit(url).netloc for url in self.requested}


@pytest.fixture
def open_session(browser):
    """``open_session(locale="fi-FI", phone=False)`` -> a :class:`Session`; closed after the test."""
    sessions: list[Session] = []

    def _open(locale: str = "fi-FI", *, phone: bool = False) -> Session:
        options = dict(PHONE) if phone else {"viewport": {"width": 1280, "height": 900}}
        language = locale.split("-")[0]
        context = browser.new_context(locale=locale,
                                      extra_http_headers={"Accept-Language": f"{locale},{language};q=0.9"},
                                      **options)
        context.set_default_timeout(TIMEOUT_MS)
        session = Session(context, None, [], [])

        def route(route):
            if urlsplit(route.request.url).hostname in ("localhost", "127.0.0.1"):
                route.continue_()
            else:   # no internet here, and nothing of ours should ever go elsewhere
                session.refused.append(route.request.url)
                route.abort()

        # Every request, redirects included, is recorded; requests leaving localhost are refused.
        context.on("request", lambda request: session.requested.append(request.url))
        context.route("**/*", route)
        session.page = context.new_page()
        sessions.append(session)
        return session

    yield _open
    for session in sessions:
        session.context.close()
