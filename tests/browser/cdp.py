"""A few lines of the Chrome DevTools Protocol: drive the system's headless Chromium with no extra package.

``Chromium`` starts the browser with a fresh profile, no network but loopback (every host name resolves
to nothing, so a page that needs a CDN shows it), attaches to its page and offers ``goto``, ``evaluate``,
``wait_for`` and ``screenshot``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",  # offline: loopback only
    "--remote-debugging-port=0",
]


def find_chromium() -> str | None:
    """The system Chromium (``SHAPPRUNE_CHROMIUM`` overrides), or None."""
    if os.environ.get("SHAPPRUNE_CHROMIUM"):
        return os.environ["SHAPPRUNE_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


class Chromium:
    """One headless Chromium with one page, driven over its DevTools websocket."""

    def __init__(self, executable: str, profile: Path, width: int = 1440, height: int = 900) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "DevToolsActivePort").unlink(missing_ok=True)  # a stale one names a dead port
        self.log = profile / "chromium.log"
        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
            start_new_session=True,  # its helper processes go with it in close()
        )
        self.ws, self._id = None, 0
        try:
            self._attach(profile / "DevToolsActivePort")
            self.send("Page.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
        except BaseException:
            self.close()
            raise

    def _attach(self, port_file: Path) -> None:
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            pages = [t for t in json.load(resp) if t["type"] == "page"]
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)

    def send(self, method: str, timeout: float = 60, **params: Any) -> dict:
        """One CDP command; returns its result (events that arrive meanwhile are dropped)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (promises awaited); None while it throws."""
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return None if "exceptionDetails" in res else res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60, what: str | None = None) -> Any:
        """Poll until ``expression`` is truthy; return its value or fail with the page's text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.evaluate(expression):
                return value
            time.sleep(0.25)
        text = self.evaluate("document.body ? document.body.innerText : ''") or ""
        raise AssertionError(f"timed out waiting for {what or expression}; page text:\n{text[:3000]}")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        """Wait until the page's visible text contains every needle; return the text."""
        test = " && ".join(f"t.includes({json.dumps(n)})" for n in needles)
        expr = f"(t => {test} ? t : '')(document.body ? document.body.innerText : '')"
        return self.wait_for(expr, timeout, what=f"text {needles}")

    def click(self, selector: str, text: str | None = None, timeout: float = 30) -> None:
        """Click the first element matching ``selector`` (whose visible text is ``text``, if given)."""
        pick = f"Array.from(document.querySelectorAll({json.dumps(selector)}))"
        if text is not None:
            pick += f".filter(e => e.innerText && e.innerText.trim() === {json.dumps(text)})"
        self.wait_for(f"(e => e ? (e.click(), true) : false)({pick}[0])", timeout, what=f"{selector} {text or ''}")

    def screenshot(self, path: Path, max_kib: int = 300) -> Path:
        """PNG of the viewport; quantised to a palette if that keeps it under ``max_kib``."""
        png = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        if len(png) > max_kib * 1024:
            from PIL import Image

            out = io.BytesIO()
            Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128).save(out, format="PNG", optimize=True)
            png = out.getvalue()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return path

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:
                pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
