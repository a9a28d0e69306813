"""A small real-browser driver for tests: headless Chromium over the Chrome DevTools Protocol.

No Playwright, Selenium or chromedriver (nothing is downloaded at test time): the installed Chromium is started with
``--remote-debugging-port=0``, the port it picked is read from ``DevToolsActivePort`` in its profile directory, and
one ``aiohttp`` websocket to the browser target carries every page through flattened sessions
(``Target.attachToTarget(flatten=True)``).

Everything waits under a deadline and every failure names what did not happen: a command with no reply, a page
whose load event never fired, a selector that matched nothing, a browser that exited (with the tail of its stderr).
Commands still waiting when the websocket closes, the browser dies or a page crashes fail at once instead of hanging.

    async with HeadlessChromium() as browser:
        page = await browser.new_page()
        await page.goto(url)
        async with page.expect_navigation():
            await page.press("Enter")
        assert await page.evaluate("document.title") == "Results"
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import math
import os
import shutil
import signal
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import aiohttp

log = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Generous on purpose: CI is a busy two-core machine, where a cold Chromium takes seconds to start.
LAUNCH_TIMEOUT = 60.0
NAVIGATION_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0
WAIT_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
KILL_AFTER = 5.0

# Errors a command gets while the page it runs in is between two documents; wait_for polls through them.
_TRANSIENT_ERRORS = (
    "Execution context was destroyed",
    "Cannot find context with specified id",
    "Cannot find default execution context",
    "Inspected target navigated or closed",
)


class BrowserError(Exception):
    """Anything that went wrong driving the browser."""


class LaunchError(BrowserError):
    """Chromium could not be found or started, or never said where its DevTools endpoint was."""


class BrowserClosedError(BrowserError):
    """The browser exited, its websocket closed, or the page was closed or crashed, with a command still waiting."""


class ProtocolError(BrowserError):
    """A DevTools command answered with an error."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.method = method
        self.code = error.get("code")
        self.error_message = str(error.get("message", ""))
        data = f" ({error['data']})" if error.get("data") else ""
        super().__init__(f"{method} failed: {self.error_message}{data}")


class NavigationError(BrowserError):
    """Page.navigate reported an error (the server refused the connection, the name did not resolve, ...)."""


class ElementNotFoundError(BrowserError):
    """No element matched a selector, or it cannot be clicked (no size, or another element covers it)."""


class JavaScriptError(BrowserError):
    """An evaluated expression threw; the message is the exception's description (with its stack)."""


class BrowserTimeoutError(BrowserError, TimeoutError):
    """Something did not happen in time; the message says what (also a builtin ``TimeoutError``)."""


class Response(NamedTuple):
    url: str
    status: int
    mime_type: str


def find_chromium() -> str | None:
    """The Chromium to drive: ``$CHROMIUM`` when it is set (and only it), else the first of the usual names on PATH."""
    chosen = os.environ.get("CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@contextlib.asynccontextmanager
async def _deadline(seconds: float, what: Callable[[], str]) -> AsyncIterator[None]:
    """Bound the block by ``seconds``; on expiry raise BrowserTimeoutError with ``what()`` (called then, so it can
    describe the state at that moment)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except BrowserTimeoutError:
        raise
    except TimeoutError as exc:
        raise BrowserTimeoutError(f"{what()} (waited {seconds:g} s)") from exc


def _remote_value(obj: dict[str, Any]) -> Any:
    """The Python value of a Runtime.RemoteObject returned by value."""
    if "value" in obj:
        return obj["value"]
    special = obj.get("unserializableValue")
    if special is not None:
        if special == "NaN":
            return math.nan
        if special in ("Infinity", "-Infinity"):
            return math.inf if special == "Infinity" else -math.inf
        if special == "-0":
            return -0.0
        if special.endswith("n"):  # a BigInt
            return int(special[:-1])
        return special
    return None  # undefined, or something that has no JSON form


def _describe_exception(details: dict[str, Any]) -> str:
    exception = details.get("exception") or {}
    text = exception.get("description") or _remote_value(exception) or details.get("text") or "unknown exception"
    return str(text)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (raises ValueError for anything that is not a PNG)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG (no signature followed by an IHDR chunk)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# Keys press() knows beyond single characters: key -> (code, windowsVirtualKeyCode, text).
_KEYS: dict[str, tuple[str, int, str]] = {
    "Enter": ("Enter", 13, "\r"),
    "Tab": ("Tab", 9, ""),
    "Escape": ("Escape", 27, ""),
    "Backspace": ("Backspace", 8, ""),
    "Delete": ("Delete", 46, ""),
    "Space": ("Space", 32, " "),
    "ArrowLeft": ("ArrowLeft", 37, ""),
    "ArrowUp": ("ArrowUp", 38, ""),
    "ArrowRight": ("ArrowRight", 39, ""),
    "ArrowDown": ("ArrowDown", 40, ""),
    "Home": ("Home", 36, ""),
    "End": ("End", 35, ""),
    "PageUp": ("PageUp", 33, ""),
    "PageDown": ("PageDown", 34, ""),
}


class _Waiter(NamedTuple):
    predicate: Callable[[], bool]
    future: asyncio.Future[None]


class Page:
    """One tab, driven through its own flattened session on the browser's websocket."""

    def __init__(self, browser: HeadlessChromium, target_id: str, session_id: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id
        # Errors the page reported: uncaught exceptions, console.error calls, and the browser's own error entries
        # (Content-Security-Policy violations, resources that failed to load).
        self.console_errors: list[str] = []
        # Every console API call, as (type, text): "log", "warning", "error", ...
        self.console_messages: list[tuple[str, str]] = []
        # Every response the page received (documents, redirects, scripts, images, fetches), in order.
        self.responses: list[Response] = []
        # Requests that got no response at all, as (url, errorText): refused, blocked by CSP, aborted.
        self.failed_requests: list[tuple[str, str]] = []
        self.closed: str | None = None  # why the page can no longer be driven, once it cannot
        self._url = "about:blank"
        self._main_frame_id = target_id
        self._loader_id: str | None = None
        self._loaded_loaders: set[str] = set()
        self._document_status: dict[str, int] = {}
        self._request_urls: dict[str, str] = {}
        self._navigations = 0  # main-frame documents committed (and same-document navigations)
        self._loaded_navigation = 0  # the value of _navigations when the main frame last fired its load event
        self._waiters: list[_Waiter] = []

    # -- plumbing --------------------------------------------------------------------------------------------------

    async def send(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """One DevTools command in this page's session; returns its result."""
        if self.closed:
            raise BrowserClosedError(f"{method}: {self.closed}")
        return await self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    async def _setup(self) -> None:
        tree, *_ = await asyncio.gather(
            self.send("Page.getFrameTree"),
            self.send("Page.enable"),
            self.send("Runtime.enable"),
            self.send("Log.enable"),
            self.send("Network.enable"),
            # Without a focused window, headless pages are not focused: clipboard reads and focus events need it.
            self.send("Emulation.setFocusEmulationEnabled", {"enabled": True}),
            # New headless keeps room for browser UI it does not draw (a 1280x900 window has a 1280x813
            # viewport): make the viewport itself the window's size, at one device pixel per CSS pixel.
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.browser.width, "height": self.browser.height, "deviceScaleFactor": 1, "mobile": False},
            ),
        )
        frame = tree["frameTree"]["frame"]
        self._main_frame_id = frame["id"]
        self._url = frame.get("url", self._url)

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.frameNavigated":
            frame = params["frame"]
            if frame["id"] == self._main_frame_id or "parentId" not in frame:
                self._main_frame_id = frame["id"]
                self._url = frame.get("url", self._url) + frame.get("urlFragment", "")
                self._loader_id = frame.get("loaderId")
                self._navigations += 1
        elif method == "Page.navigatedWithinDocument":
            if params.get("frameId") == self._main_frame_id:
                self._url = params["url"]
                self._navigations += 1
                self._loaded_navigation = self._navigations
        elif method == "Page.loadEventFired":
            self._loaded_navigation = self._navigations
            if self._loader_id:
                self._loaded_loaders.add(self._loader_id)
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(_describe_exception(params["exceptionDetails"]))
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(
                str(arg.get("value", arg.get("description", arg.get("type", "")))) for arg in params.get("args", [])
            )
            self.console_messages.append((params["type"], text))
            if params["type"] in ("error", "assert"):
                self.console_errors.append(text)
        elif method == "Log.entryAdded":
            entry = params["entry"]
            if entry.get("level") == "error":
                where = f" ({entry['url']})" if entry.get("url") else ""
                self.console_errors.append(f"{entry.get('text', '')}{where}")
        elif method == "Network.requestWillBeSent":
            self._request_urls[params["requestId"]] = params["request"]["url"]
            redirect = params.get("redirectResponse")
            if redirect:  # a redirect's response arrives only here, not as Network.responseReceived
                self.responses.append(Response(redirect["url"], int(redirect["status"]), redirect.get("mimeType", "")))
        elif method == "Network.responseReceived":
            response = params["response"]
            self.responses.append(Response(response["url"], int(response["status"]), response.get("mimeType", "")))
            if params.get("type") == "Document" and params.get("loaderId"):
                self._document_status[params["loaderId"]] = int(response["status"])
        elif method == "Network.loadingFailed":
            url = self._request_urls.get(params["requestId"], "?")
            reason = params.get("blockedReason") or params.get("errorText", "")
            self.failed_requests.append((url, str(reason)))
        elif method == "Inspector.targetCrashed":
            self.browser._close_session(self.session_id, f"the page at {self._url} crashed")
            return
        self._check_waiters()

    def _check_waiters(self) -> None:
        for waiter in list(self._waiters):
            if not waiter.future.done() and waiter.predicate():
                waiter.future.set_result(None)

    def _fail(self, reason: str) -> None:
        self.closed = reason
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(BrowserClosedError(reason))
        self._waiters.clear()

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        """Until the page's state satisfies ``predicate`` (checked after every event); the caller bounds it."""
        if predicate():
            return
        if self.closed:
            raise BrowserClosedError(self.closed)
        waiter = _Waiter(predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.future
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    # -- navigation ------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The main frame's URL as of its last navigation event (``await current_url()`` asks the page itself)."""
        return self._url

    async def current_url(self) -> str:
        return str(await self.evaluate("location.href"))

    async def goto(self, url: str, timeout: float = NAVIGATION_TIMEOUT) -> int | None:
        """Navigate and wait for that navigation's load event; returns the document's HTTP status (None when there
        was no HTTP response, e.g. about:blank or a same-document navigation)."""
        async with _deadline(timeout, lambda: f"the page at {url} did not fire its load event (last URL {self._url})"):
            result = await self.send("Page.navigate", {"url": url})
            if result.get("errorText"):
                raise NavigationError(f"navigating to {url} failed: {result['errorText']}")
            loader_id = result.get("loaderId")
            if not loader_id:  # same-document navigation: nothing to load
                return None
            await self._wait_until(lambda: loader_id in self._loaded_loaders)
            return self._document_status.get(loader_id)

    @contextlib.asynccontextmanager
    async def expect_navigation(self, timeout: float = NAVIGATION_TIMEOUT) -> AsyncIterator[None]:
        """Wait, after the block, for a main-frame navigation that began in it to fire its load event:

        async with page.expect_navigation():
            await page.press("Enter")
        """
        before = self._navigations
        yield
        await self._wait_navigated_after(before, timeout)

    async def wait_for_navigation(self, timeout: float = NAVIGATION_TIMEOUT) -> None:
        """Wait for the next main-frame navigation (one committed after this call) to fire its load event.

        A click or key press may navigate before this is even called; ``expect_navigation()`` around the action
        cannot miss it.
        """
        await self._wait_navigated_after(self._navigations, timeout)

    async def _wait_navigated_after(self, before: int, timeout: float) -> None:
        async with _deadline(timeout, lambda: f"no navigation away from {self._url} finished loading"):
            await self._wait_until(lambda: self._loaded_navigation > before)

    # -- scripts ---------------------------------------------------------------------------------------------------

    async def evaluate(self, expression: str, *, timeout: float | None = None) -> Any:
        """The value of a JavaScript expression (promises awaited), run as if from a user gesture."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True, "userGesture": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise JavaScriptError(f"{expression!r} threw: {_describe_exception(result['exceptionDetails'])}")
        return _remote_value(result["result"])

    async def wait_for(self, expression: str, timeout: float = WAIT_TIMEOUT) -> Any:
        """Poll an expression (every 50 ms) until it is truthy, as JavaScript judges truth; returns its value.

        An exception it throws is raised at once (write ``document.querySelector('h1')?.textContent`` for elements
        that may not exist yet); the gap between two documents during a navigation is polled through.
        """
        wrapped = f"(async () => {{ const value = await (\n{expression}\n); return [!!value, value]; }})()"
        last: Any = None
        async with _deadline(timeout, lambda: f"{expression!r} did not become truthy (last value {last!r})"):
            while True:
                try:
                    truthy, last = await self.evaluate(wrapped)
                except ProtocolError as exc:
                    if not any(text in exc.error_message for text in _TRANSIENT_ERRORS):
                        raise
                else:
                    if truthy:
                        return last
                await asyncio.sleep(POLL_INTERVAL)

    # -- input -----------------------------------------------------------------------------------------------------

    async def click(self, selector: str) -> None:
        """A real mouse click at the centre of the first element matching ``selector`` (scrolled into view first),
        so the page gets user activation, as from a person's click."""
        box = await self.evaluate(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return null;
                el.scrollIntoView({{block: "center", inline: "center", behavior: "instant"}});
                const r = el.getBoundingClientRect();
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                const top = document.elementFromPoint(x, y);
                const hit = !!top && (top === el || el.contains(top));
                const cover = top ? top.outerHTML.slice(0, 120) : "nothing (outside the viewport)";
                return {{x, y, width: r.width, height: r.height, hit, cover}};
            }})()"""
        )
        if box is None:
            raise ElementNotFoundError(f"no element matches {selector!r} on {self._url}")
        if not box["width"] or not box["height"]:
            raise ElementNotFoundError(f"{selector!r} on {self._url} has no size (hidden?), so it cannot be clicked")
        if not box["hit"]:
            raise ElementNotFoundError(f"{selector!r} on {self._url} is covered at its centre by {box['cover']}")
        x, y = box["x"], box["y"]
        await self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind, buttons in (("mousePressed", 1), ("mouseReleased", 0)):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1},
            )

    async def type(self, selector: str, text: str) -> None:
        """Click the element (which focuses it) and insert ``text`` as typed input."""
        await self.click(selector)
        await self.send("Input.insertText", {"text": text})

    async def press(self, key: str) -> None:
        """Press and release one key: a name such as ``"Enter"``, ``"Tab"``, ``"ArrowDown"``, or one character."""
        if key in _KEYS:
            code, key_code, text = _KEYS[key]
            key_name = " " if key == "Space" else key
        elif len(key) == 1:
            code = f"Key{key.upper()}" if key.isalpha() else ""
            key_code = ord(key.upper()) if key.isalnum() else 0
            text = key_name = key
        else:
            raise ValueError(f"press() does not know the key {key!r}; known: {', '.join(_KEYS)} or one character")
        base = {"key": key_name, "code": code, "windowsVirtualKeyCode": key_code, "nativeVirtualKeyCode": key_code}
        down = {**base, "type": "keyDown" if text else "rawKeyDown"}
        if text:
            down |= {"text": text, "unmodifiedText": text}
        await self.send("Input.dispatchKeyEvent", down)
        await self.send("Input.dispatchKeyEvent", {**base, "type": "keyUp"})

    # -- output ----------------------------------------------------------------------------------------------------

    async def screenshot(self, path: Path | None = None, full_page: bool = False) -> bytes:
        """A PNG of the viewport (or of the whole page's content); also written to ``path`` when given."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params |= {
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            }
        result = await self.send("Page.captureScreenshot", params)
        data = base64.b64decode(result["data"])
        if path is not None:
            Path(path).write_bytes(data)
        return data

    async def read_clipboard(self) -> str:
        """The clipboard's text, read by the page (its origin needs ``browser.grant_clipboard`` first)."""
        await self.send("Page.bringToFront")
        return str(await self.evaluate("navigator.clipboard.readText()"))

    async def cookies(self) -> list[dict[str, Any]]:
        """The cookies the browser would send to the page's current URL (HttpOnly ones included)."""
        result = await self.send("Network.getCookies", {"urls": [await self.current_url()]})
        return list(result["cookies"])

    async def close(self) -> None:
        if not self.closed:
            await self.browser.send("Target.closeTarget", {"targetId": self.target_id})
            self.browser._close_session(self.session_id, "the page was closed")


class HeadlessChromium:
    """Start headless Chromium and drive it over one DevTools websocket; ``async with`` it."""

    def __init__(
        self,
        *,
        width: int = 1280,
        height: int = 900,
        executable: str | None = None,
        extra_args: tuple[str, ...] = (),
        launch_timeout: float = LAUNCH_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self.width = width
        self.height = height
        self.executable = executable
        self.extra_args = extra_args
        self.launch_timeout = launch_timeout
        self.command_timeout = command_timeout
        self.pages: list[Page] = []
        self.websocket_url: str | None = None
        self._tmp: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], str | None, str]] = {}
        self._sessions: dict[str, Page] = {}
        self._closed: str | None = None
        self._closing = False

    async def __aenter__(self) -> HeadlessChromium:
        try:
            await self.launch()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- launch and shutdown ---------------------------------------------------------------------------------------

    def command_line(self, executable: str, profile: Path) -> list[str]:
        args = [
            executable,
            "--headless=new",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--metrics-recording-only",
            "--mute-audio",
            f"--window-size={self.width},{self.height}",
            "--hide-scrollbars",
        ]
        if os.geteuid() == 0:  # Chromium refuses to run as root with its sandbox on
            args.append("--no-sandbox")
        return [*args, *self.extra_args, "about:blank"]

    async def launch(self) -> None:
        executable = self.executable or find_chromium()
        if executable is None:
            raise LaunchError(
                f"no Chromium found: $CHROMIUM={os.environ['CHROMIUM']!r} is not an executable"
                if os.environ.get("CHROMIUM")
                else f"no Chromium found: none of {', '.join(CHROMIUM_NAMES)} is on PATH (or set $CHROMIUM)"
            )
        self._tmp = Path(tempfile.mkdtemp(prefix="headless-chromium-"))
        profile = self._tmp / "profile"
        profile.mkdir()
        # Chromium's stderr goes to a file, not a pipe: it writes plenty, and nobody has to drain it.
        stderr = os.open(self._tmp / "stderr.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command_line(executable, profile),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # /usr/bin/chromium is a wrapper script: kill the whole group
            )
        except OSError as exc:
            raise LaunchError(f"cannot start Chromium {executable!r}: {exc}") from exc
        finally:
            os.close(stderr)
        port_file = profile / "DevToolsActivePort"
        async with _deadline(
            self.launch_timeout, lambda: f"Chromium {executable!r} did not write {port_file}{self._stderr_tail()}"
        ):
            while True:
                if self._proc.returncode is not None:
                    raise LaunchError(
                        f"Chromium {executable!r} exited with code {self._proc.returncode} before it opened its "
                        f"DevTools port{self._stderr_tail()}"
                    )
                lines = port_file.read_text().splitlines() if port_file.exists() else []
                if len(lines) >= 2 and lines[0].strip().isdigit():
                    break
                await asyncio.sleep(POLL_INTERVAL)
            self.websocket_url = f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
            self._http = aiohttp.ClientSession()
            try:
                self._ws = await self._http.ws_connect(self.websocket_url, max_msg_size=0)
            except (aiohttp.ClientError, OSError) as exc:
                raise LaunchError(f"cannot connect to Chromium's DevTools at {self.websocket_url}: {exc}") from exc
        self._reader = asyncio.create_task(self._read())
        self._watcher = asyncio.create_task(self._watch())

    def _stderr_tail(self, lines: int = 15) -> str:
        """The end of Chromium's stderr, without the D-Bus complaints every container run prints."""
        if self._tmp is None:
            return ""
        try:
            text = (self._tmp / "stderr.log").read_text(errors="replace")
        except OSError:
            return ""
        kept = [line for line in text.splitlines() if line.strip() and "dbus" not in line.lower()]
        return "; stderr:\n" + "\n".join(kept[-lines:]) if kept else "; stderr was empty"

    async def _watch(self) -> None:
        assert self._proc is not None
        code = await self._proc.wait()
        if not self._closing:
            self._fail_all(f"Chromium exited with code {code}{self._stderr_tail()}")

    async def close(self) -> None:
        """Close the websocket, end Chromium (SIGTERM to its process group, SIGKILL after 5 s), remove its profile."""
        self._closing = True
        self._fail_all("the browser was closed")
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)
        if self._http is not None:
            await self._http.close()
        for task in (self._reader, self._watcher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), KILL_AFTER)
            except TimeoutError:
                log.warning("Chromium (pid %s) ignored SIGTERM for %s s: killing it", self._proc.pid, KILL_AFTER)
            # Whatever is left of the group (renderers, the zygote) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            await self._proc.wait()
        if self._tmp is not None:
            await asyncio.to_thread(shutil.rmtree, self._tmp, True)

    # -- the websocket ---------------------------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One DevTools command (to the browser, or to a page's session); returns its result."""
        if self._closed:
            raise BrowserClosedError(f"{method}: {self._closed}")
        if self._ws is None:
            raise BrowserClosedError(f"{method}: the browser is not running (use `async with HeadlessChromium()`)")
        command_id = next(self._ids)
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = (future, session_id, method)
        try:
            await self._ws.send_str(json.dumps(message))
            seconds = self.command_timeout if timeout is None else timeout
            async with _deadline(seconds, lambda: f"Chromium did not answer {method}"):
                return await future
        finally:
            self._pending.pop(command_id, None)

    async def _read(self) -> None:
        assert self._ws is not None
        reason = "Chromium's DevTools websocket closed"
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        self._dispatch(json.loads(msg.data))
                    except Exception:
                        log.exception("could not handle a DevTools message: %.300s", msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    reason = f"Chromium's DevTools websocket failed: {self._ws.exception()}"
                    break
        except Exception as exc:
            reason = f"reading Chromium's DevTools websocket failed: {exc!r}"
        if self._closing:
            return
        if self._proc is not None:
            # The websocket usually closes because Chromium died: give it a moment to be reaped, so the error
            # says so, with its exit code and stderr.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 1)
            if self._proc.returncode is not None:
                reason = f"Chromium exited with code {self._proc.returncode}{self._stderr_tail()}"
        self._fail_all(reason)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            entry = self._pending.get(message["id"])
            if entry is None or entry[0].done():
                return
            future, _, method = entry
            if "error" in message:
                future.set_exception(ProtocolError(method, message["error"]))
            else:
                future.set_result(message.get("result", {}))
            return
        method, params = message.get("method", ""), message.get("params", {})
        session_id = message.get("sessionId")
        if session_id is not None:
            page = self._sessions.get(session_id)
            if page is not None:
                page._on_event(method, params)
        elif method == "Target.detachedFromTarget":
            self._close_session(params.get("sessionId", ""), "the page was closed or detached")

    def _close_session(self, session_id: str, reason: str) -> None:
        page = self._sessions.pop(session_id, None)
        if page is None:
            return
        page._fail(reason)
        for future, owner, method in list(self._pending.values()):
            if owner == session_id and not future.done():
                future.set_exception(BrowserClosedError(f"{method}: {reason}"))

    def _fail_all(self, reason: str) -> None:
        """Nothing waits forever on a browser that is gone: every command and page waiter fails with ``reason``."""
        if self._closed:
            return
        self._closed = reason
        for future, _, method in list(self._pending.values()):
            if not future.done():
                future.set_exception(BrowserClosedError(f"{method}: {reason}"))
        for page in list(self._sessions.values()):
            page._fail(reason)
        self._sessions.clear()

    # -- pages and permissions -------------------------------------------------------------------------------------

    async def new_page(self) -> Page:
        """A new tab at about:blank with the Page, Runtime, Log and Network domains on, focus emulated, and a
        viewport of the browser's width x height."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        target_id = target["targetId"]
        attached = await self.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})
        page = Page(self, target_id, attached["sessionId"])
        self._sessions[page.session_id] = page
        self.pages.append(page)
        await page._setup()
        return page

    async def grant_clipboard(self, origin: str) -> None:
        """Let pages of ``origin`` (e.g. ``http://127.0.0.1:8080``) read and write the clipboard without a prompt."""
        await self.send(
            "Browser.grantPermissions",
            {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": origin},
        )
