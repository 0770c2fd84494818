"""The HTML report of a small real run, opened in headless Chromium over the DevTools protocol.

Three real cells (``random`` on digits under ``fast``: IPC 1 with seeds 0 and 1, IPC 2 with seed
0) become a report; Chromium loads it with no script error and every embedded image decoded, a
real mouse click on a column header reorders the rows, and a screenshot is not blank. The test
installs nothing: it skips when Chromium (Debian package ``chromium``) or ``websocket-client``
(the ``test`` extra) is missing.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import CellSpec, run_cell
from leaderboard import build_table, load_records, write_outputs

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)"
)
websocket = pytest.importorskip("websocket", reason="websocket-client is not installed (pip install '.[test]')")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WINDOW = (1280, 2000)
TIMEOUT_SECONDS = 30.0
DETAIL_TABLE = "table.leaderboard.detail"


class DevToolsPage:
    """One page of a headless Chromium, driven over the DevTools protocol (flattened session)."""

    def __init__(self, profile_dir: Path) -> None:
        assert CHROMIUM is not None
        self.exceptions: list[str] = []
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile_dir}",
                "--remote-debugging-port=0",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port, browser_path = self._read_endpoint(profile_dir / "DevToolsActivePort")
        self.socket = websocket.create_connection(
            f"ws://127.0.0.1:{port}{browser_path}", timeout=TIMEOUT_SECONDS, suppress_origin=True
        )
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )

    def _read_endpoint(self, port_file: Path) -> tuple[str, str]:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode} before listening")
            lines = port_file.read_text().splitlines() if port_file.is_file() else []
            if len(lines) >= 2:
                return lines[0], lines[1]
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def _receive(self) -> dict[str, Any]:
        message = json.loads(self.socket.recv())
        if message.get("method") == "Runtime.exceptionThrown":
            details = message["params"]["exceptionDetails"]
            self.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
        return message

    def _call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            request["sessionId"] = session
        self.socket.send(json.dumps(request))
        while True:
            message = self._receive()
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return message["result"]
            self._events.append(message)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send a command to the page and return its result."""
        return self._call(method, params, self.session)

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._events.clear()
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while not any(event.get("method") == "Page.loadEventFired" for event in self._events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            self._events.append(self._receive())

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its JSON value."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A left mouse click at viewport coordinates (press and release)."""
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self) -> bytes:
        """A PNG of the viewport."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three real ``random`` cells on digits and their report; returns (results dir, html path)."""
    results_dir = tmp_path_factory.mktemp("browser_results")
    for seed, ipc in ((0, 1), (1, 1), (0, 2)):
        spec = CellSpec(method="random", dataset="digits", protocol="fast", seed=seed, ipc=ipc)
        run_cell(spec, results_dir=results_dir, device="cpu")
    (results_dir / "records" / "digits" / "notes.json").write_text('{"tool": "something else"}', encoding="utf-8")
    html_path = write_outputs(results_dir)["html"]
    return results_dir, html_path


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, real_report: tuple[Path, Path]) -> Iterator[DevToolsPage]:
    browser = DevToolsPage(tmp_path_factory.mktemp("chromium_profile"))
    try:
        browser.open(real_report[1].resolve().as_uri())
        yield browser
    finally:
        browser.close()


def _column_values(page: DevToolsPage, column: int) -> list[dict[str, str]]:
    return page.evaluate(
        f"""Array.from(document.querySelector("{DETAIL_TABLE}").tBodies[0].rows).map(row => ({{
            budget: row.cells[0].textContent.trim(),
            method: row.cells[2].childNodes[0].textContent.trim(),
            sort: row.cells[{column}].getAttribute("data-sort")
        }}))"""
    )


def _click_header(page: DevToolsPage, title: str) -> int:
    """Scroll the header into view, click its centre; returns its column index."""
    box = page.evaluate(
        f"""(() => {{
            const headers = Array.from(document.querySelector("{DETAIL_TABLE}").tHead.rows[0].cells);
            const header = headers.find(cell => cell.textContent.trim() === {json.dumps(title)});
            header.scrollIntoView({{block: "center"}});
            const box = header.getBoundingClientRect();
            return {{x: box.x + box.width / 2, y: box.y + box.height / 2, column: headers.indexOf(header)}};
        }})()"""
    )
    page.click(box["x"], box["y"])
    return int(box["column"])


def test_page_loads_offline_with_its_sections(page: DevToolsPage, real_report: tuple[Path, Path]) -> None:
    html = real_report[1].read_text(encoding="utf-8")
    assert not re.search(r"(?i)https?://", html)
    assert page.evaluate("document.title") == "Condense-bench leaderboard"
    assert page.exceptions == []
    images = page.evaluate(
        "Array.from(document.images).map(image => [image.complete, image.naturalWidth, image.src.slice(0, 22)])"
    )
    # Accuracy-vs-budget, Pareto, and one grid per (method, budget): random at ipc=1 and ipc=2.
    assert len(images) == 4
    assert all(complete and width > 0 and src == "data:image/png;base64," for complete, width, src in images)
    text = page.evaluate("document.body.innerText")
    for expected in ("Overview", "Plots · digits · fast", "digits · fast · convnet3", "Synthetic sets · digits"):
        assert expected in text
    assert "notes.json" in text and "not a condense-bench record" in text  # the skipped file is listed
    assert "not run" in text  # no full-dataset run: its rows say so


def test_clicking_a_header_reorders_the_rows(page: DevToolsPage, real_report: tuple[Path, Path]) -> None:
    table = build_table(load_records(real_report[0]).records)
    mean = {row.budget: row.mean for row in table.itertuples()}
    assert set(mean) == {"ipc=1", "ipc=2"} and table["seeds"].max() == 2

    accuracy = 5  # Budget, Rank, Method, Family, Labels, Accuracy (%)
    before = _column_values(page, accuracy)
    # Budget order: each budget's random row, then the striped "full: not run" row.
    assert [(row["budget"], row["method"]) for row in before] == [
        ("ipc=1", "random"),
        ("ipc=1", "full"),
        ("ipc=2", "random"),
        ("ipc=2", "full"),
    ]
    assert _click_header(page, "Accuracy (%)") == accuracy
    ascending = _column_values(page, accuracy)
    assert [row["budget"] for row in ascending] != [row["budget"] for row in before]
    measured = [row for row in ascending if row["sort"]]
    assert [row["budget"] for row in measured] == sorted(mean, key=mean.get)
    assert [float(row["sort"]) for row in measured] == pytest.approx(sorted(mean.values()), abs=1e-12)
    assert all(not row["sort"] for row in ascending[len(measured) :])  # "not run" rows stay last

    _click_header(page, "Accuracy (%)")
    descending = [row for row in _column_values(page, accuracy) if row["sort"]]
    assert [row["budget"] for row in descending] == sorted(mean, key=mean.get, reverse=True)
    header_state = page.evaluate(f"""document.querySelector("{DETAIL_TABLE}").tHead.rows[0].cells[{accuracy}]
        .getAttribute("aria-sort")""")
    assert header_state == "descending"
    assert page.exceptions == []


def test_screenshot_is_not_blank(page: DevToolsPage, tmp_path: Path) -> None:
    from PIL import Image

    page.evaluate("window.scrollTo(0, 0)")
    png = page.screenshot()
    (tmp_path / "report.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == WINDOW
    colors = image.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 50, "the page rendered with almost no colours"
    white = next((count for count, color in colors if color == (255, 255, 255)), 0)
    assert white < 0.95 * WINDOW[0] * WINDOW[1], "the page is (almost) all white"
