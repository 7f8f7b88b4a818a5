"""A real headless Chromium for tests of the dashboard, driven over the DevTools protocol
(a websocket, websocket-client): load a page, wait for what it shows, click, take
screenshots (copied where ``AMPHORAE_SCREENSHOTS`` says, for a person to look at).

The browser gets its own profile directory (``/tmp/amph-<marker>-chromium-*``, registered
with tests/leftovers.py) and reaches nothing but loopback: every host name fails to
resolve (``--host-resolver-rules``) and Chromium's background services are off. The
context manager kills its process group and removes the profile, also on failure.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import websocket

from tests import leftovers, servers

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WIDTH, HEIGHT = 1440, 1000
SCREENSHOTS = "AMPHORAE_SCREENSHOTS"  # a directory screenshots are also copied to
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-default-apps", "--disable-sync",
    "--disable-extensions", "--disable-domain-reliability", "--no-pings",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--hide-scrollbars", "--mute-audio",
    f"--window-size={WIDTH},{HEIGHT}",
)


class PageError(AssertionError):
    pass


class Page:
    """One tab: DevTools commands and the JavaScript errors the page raised."""

    def __init__(self, ws_url: str, timeout: float) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.ids = itertools.count(1)
        self.errors: list[str] = []
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT,
                  deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """A command's result; events that arrive meanwhile are looked at for errors."""
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise PageError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        params = message.get("params", {})
        entry = params.get("entry", {})
        # The browser's own complaints (a refused Content-Security-Policy, ...); an API
        # call's 4xx is logged by the network source, and is the page's to show.
        if message.get("method") == "Log.entryAdded" and entry.get("level") == "error" \
                and entry.get("source") != "network":
            self.errors.append(f"{entry.get('source')}: {entry.get('text')}")
        elif message.get("method") == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description")
                               or details.get("text", "exception"))
        elif message.get("method") == "Runtime.consoleAPICalled" and params["type"] == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                        for a in params.get("args", [])))

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited when it is a promise)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise PageError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def text(self, selector: str = "body") -> str:
        return str(self.evaluate(
            f"document.querySelector({json.dumps(selector)})?.innerText ?? ''"))

    def wait(self, expression: str, what: str, timeout: float = 20) -> None:
        """Poll a JavaScript expression until it is truthy (in JavaScript's sense: a
        DOM node comes back as an empty object)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.evaluate(f"Boolean({expression})"):
                return
            if time.monotonic() > deadline:
                raise PageError(f"{what}: not within {timeout} s; the page shows:\n"
                                f"{self.text()}\nJavaScript errors: {self.errors}")
            time.sleep(0.2)

    def wait_text(self, *needles: str, selector: str = "body", timeout: float = 20) -> str:
        """Wait until the element's text holds every needle; the text."""
        checks = " && ".join(f"t.includes({json.dumps(n)})" for n in needles)
        self.wait(f"(t => {checks})(document.querySelector({json.dumps(selector)})"
                  f"?.innerText ?? '')", f"{selector} showing {needles}", timeout)
        return self.text(selector)

    def click(self, selector: str) -> None:
        """Click the first element matching ``selector`` (it must exist)."""
        found = self.evaluate(f"(e => e ? (e.click(), true) : false)"
                              f"(document.querySelector({json.dumps(selector)}))")
        if not found:
            raise PageError(f"nothing to click at {selector}; the page shows:\n{self.text()}")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (not only the window) at ``path``, printed, and
        copied into the directory ``AMPHORAE_SCREENSHOTS`` names, if any."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": WIDTH,
                               "height": max(HEIGHT, size["height"]), "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"\nscreenshot: {path}")
        if os.environ.get(SCREENSHOTS):
            Path(os.environ[SCREENSHOTS]).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(os.environ[SCREENSHOTS]) / path.name)
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


@contextlib.contextmanager
def chromium(marker: str, timeout: float = 10) -> Iterator[Page]:
    """A headless Chromium with one blank tab; killed, its profile removed, on exit."""
    profile = Path(tempfile.mkdtemp(prefix=f"amph-{marker}-chromium-"))
    leftovers.register(profile)
    port = servers.free_port()
    log = open(profile / "amph-chromium.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
         f"--remote-debugging-port={port}", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    page = None
    try:
        page = Page(_tab(port, proc, Path(log.name), timeout), timeout)
        yield page
    finally:
        if page is not None:
            page.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


def _tab(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    """The websocket of the browser's first tab, once its DevTools endpoint answers."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise PageError(f"chromium exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(requests.RequestException, ValueError):
            tabs = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=1).json()
            pages = [t for t in tabs if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        if time.monotonic() > deadline:
            raise PageError(f"chromium's DevTools did not answer within {timeout} s:\n"
                            f"{log.read_text()[-2000:]}")
        time.sleep(0.1)
