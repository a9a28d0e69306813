"""tests/browser.py drives the installed headless Chromium against a small aiohttp site served by the test.

One browser for the module (launching costs about a second here), a fresh page per test.
"""

from __future__ import annotations

import asyncio
import html
import os
import signal
import socket
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from tests.browser import (
    BrowserClosedError,
    BrowserTimeoutError,
    ElementNotFoundError,
    HeadlessChromium,
    JavaScriptError,
    LaunchError,
    NavigationError,
    Page,
    find_chromium,
    png_size,
)

pytestmark = [
    pytest.mark.skipif(
        find_chromium() is None,
        reason="no Chromium: none of chromium, chromium-browser, google-chrome(-stable) on PATH, or $CHROMIUM is not one",
    ),
    pytest.mark.asyncio(loop_scope="module"),
]

WIDTH, HEIGHT = 1024, 700
CSP = "default-src 'none'; script-src 'self'; img-src 'self'; style-src 'self'; connect-src 'self'"
COPIED_TEXT = "https://gallery.example/p/42"


def _png(width: int, height: int) -> bytes:
    """A small opaque RGB PNG, built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x20\x80\xc0" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _page(title: str, body: str) -> str:
    return f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head><body>{body}</body></html>'


APP_JS = f"""
const button = document.getElementById("copy");
button.addEventListener("click", async () => {{
  try {{
    await navigator.clipboard.writeText({COPIED_TEXT!r});
    button.textContent = "Copied";
  }} catch (error) {{
    button.textContent = "Failed: " + error;
  }}
}});
"""


def make_site() -> web.Application:
    async def search_form(request: web.Request) -> web.Response:
        body = '<form action="/search" method="get"><input type="search" name="q" id="q"><button>Search</button></form>'
        return web.Response(text=_page("Search", body), content_type="text/html")

    async def search(request: web.Request) -> web.Response:
        # A redirect on the way, as a real search might: the navigation still counts as one.
        raise web.HTTPFound(f"/results?{request.query_string}")

    async def results(request: web.Request) -> web.Response:
        query = html.escape(request.query.get("q", ""))
        return web.Response(text=_page("Results", f'<h1 id="query">Results for {query}</h1>'), content_type="text/html")

    async def gallery(request: web.Request) -> web.Response:
        body = (
            '<button id="copy" type="button">Copy</button>'
            '<img id="pic" src="/pixel.png" alt="a picture" width="30" height="20">'
            '<script src="/app.js"></script>'
        )
        response = web.Response(
            text=_page("Gallery", body), content_type="text/html", headers={"Content-Security-Policy": CSP}
        )
        response.set_cookie("gallery_session", "s3cr3t", httponly=True, samesite="Lax")
        return response

    async def app_js(request: web.Request) -> web.Response:
        return web.Response(text=APP_JS, content_type="text/javascript")

    async def pixel(request: web.Request) -> web.Response:
        return web.Response(body=_png(3, 2), content_type="image/png")

    async def inline(request: web.Request) -> web.Response:
        body = '<p>inline</p><script>document.title = "inline script ran"</script>'
        return web.Response(
            text=_page("Inline", body), content_type="text/html", headers={"Content-Security-Policy": CSP}
        )

    async def tall(request: web.Request) -> web.Response:
        return web.Response(text=_page("Tall", '<div style="height: 2500px">tall</div>'), content_type="text/html")

    async def favicon(request: web.Request) -> web.Response:
        # Chromium asks every new origin for /favicon.ico on its own; a 404 there would be a console error.
        return web.Response(body=_png(1, 1), content_type="image/png")

    app = web.Application()
    app.router.add_get("/", search_form)
    app.router.add_get("/search", search)
    app.router.add_get("/results", results)
    app.router.add_get("/gallery", gallery)
    app.router.add_get("/app.js", app_js)
    app.router.add_get("/pixel.png", pixel)
    app.router.add_get("/inline", inline)
    app.router.add_get("/tall", tall)
    app.router.add_get("/favicon.ico", favicon)
    return app


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site() -> AsyncIterator[str]:
    runner = web.AppRunner(make_site())
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[HeadlessChromium]:
    async with HeadlessChromium(width=WIDTH, height=HEIGHT) as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: HeadlessChromium) -> AsyncIterator[Page]:
    page = await browser.new_page()
    yield page
    await page.close()


async def test_goto_and_evaluate(page: Page, site: str) -> None:
    assert await page.goto(f"{site}/") == 200
    assert page.url == f"{site}/"
    assert await page.current_url() == f"{site}/"
    assert await page.evaluate("document.title") == "Search"
    assert await page.evaluate("Promise.resolve([1, 'two', {three: 3}])") == [1, "two", {"three": 3}]
    assert await page.evaluate("undefined") is None
    with pytest.raises(JavaScriptError, match="ReferenceError: nowhere is not defined"):
        await page.evaluate("nowhere.to_be_found")
    with pytest.raises(BrowserTimeoutError, match="'false' did not become truthy"):
        await page.wait_for("false", timeout=0.3)
    with pytest.raises(BrowserTimeoutError, match=f"no navigation away from {site}/ finished loading"):
        async with page.expect_navigation(timeout=0.3):
            pass
    async with page.expect_navigation():  # a same-document navigation counts, and needs no load event
        await page.evaluate("location.hash = 'top'")
    assert page.url == f"{site}/#top"
    assert page.console_errors == []


async def test_goto_a_refused_connection_says_so(page: Page) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        NavigationError, match=f"navigating to http://127.0.0.1:{port}/ failed: net::ERR_CONNECTION_REFUSED"
    ):
        await page.goto(f"http://127.0.0.1:{port}/")


async def test_type_and_enter_submit_the_form(page: Page, site: str) -> None:
    await page.goto(f"{site}/")
    await page.type("#q", "red fox & <moon>")
    assert await page.evaluate("document.querySelector('#q').value") == "red fox & <moon>"
    async with page.expect_navigation():
        await page.press("Enter")
    assert page.url.startswith(f"{site}/results?q=")
    heading = await page.wait_for("document.querySelector('#query')?.textContent")
    assert heading == "Results for red fox & <moon>"
    statuses = [
        (r.url.removeprefix(site), r.status) for r in page.responses if "/search" in r.url or "/results" in r.url
    ]
    assert statuses == [("/search?q=red+fox+%26+%3Cmoon%3E", 302), ("/results?q=red+fox+%26+%3Cmoon%3E", 200)]


async def test_click_copies_to_the_clipboard(browser: HeadlessChromium, page: Page, site: str) -> None:
    await browser.grant_clipboard(site)
    await page.goto(f"{site}/gallery")
    await page.click("#copy")
    assert await page.wait_for("document.querySelector('#copy').textContent !== 'Copy'") is True
    assert await page.evaluate("document.querySelector('#copy').textContent") == "Copied"
    assert await page.read_clipboard() == COPIED_TEXT
    assert page.console_errors == []  # the CSP let /app.js run, and nothing else complained
    with pytest.raises(ElementNotFoundError, match="no element matches '#nothing'"):
        await page.click("#nothing")


async def test_images_load_and_nothing_errs(page: Page, site: str) -> None:
    await page.goto(f"{site}/gallery")
    sizes = await page.evaluate("[...document.images].map(img => [img.complete, img.naturalWidth, img.naturalHeight])")
    assert sizes == [[True, 3, 2]]
    images = [r for r in page.responses if r.mime_type.startswith("image/") and r.url.endswith("/pixel.png")]
    assert images and all(r.status == 200 for r in images)
    assert page.failed_requests == []
    assert page.console_errors == []


async def test_csp_blocks_an_inline_script_and_says_so(page: Page, site: str) -> None:
    await page.goto(f"{site}/inline")
    assert await page.evaluate("document.title") == "Inline"
    await page.wait_for("true")  # one more round trip, so the violation report has arrived
    assert any("Content Security Policy" in e and "script" in e for e in page.console_errors), page.console_errors


async def test_screenshot_is_a_png_of_the_window(page: Page, site: str, tmp_path: Path) -> None:
    await page.goto(f"{site}/tall")
    shot = await page.screenshot(tmp_path / "shot.png")
    assert png_size(shot) == (WIDTH, HEIGHT)
    assert (tmp_path / "shot.png").read_bytes() == shot
    full = await page.screenshot(full_page=True)
    width, height = png_size(full)
    assert width == WIDTH and height >= 2500


async def test_cookies(page: Page, site: str) -> None:
    await page.goto(f"{site}/gallery")
    cookies = {c["name"]: c for c in await page.cookies()}
    assert cookies["gallery_session"]["value"] == "s3cr3t"
    assert cookies["gallery_session"]["httpOnly"] is True


async def test_a_closed_page_fails_at_once(browser: HeadlessChromium) -> None:
    page = await browser.new_page()
    await page.close()
    with pytest.raises(BrowserClosedError, match="the page was closed"):
        await page.evaluate("1")


async def test_a_missing_executable_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-chromium"
    with pytest.raises(LaunchError, match=f"cannot start Chromium '{missing}'"):
        async with HeadlessChromium(executable=str(missing)):
            pass


async def test_an_executable_that_exits_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake-chromium"
    fake.write_text("#!/bin/sh\necho 'this is not a browser' >&2\nexit 3\n")
    fake.chmod(0o755)
    browser = HeadlessChromium(executable=str(fake))
    with pytest.raises(LaunchError, match=r"exited with code 3 before it opened its DevTools port(.|\n)*not a browser"):
        async with browser:
            pass
    assert browser._tmp is not None and not browser._tmp.exists()  # its profile directory is gone


async def test_a_dead_browser_fails_what_waits_on_it() -> None:
    async with HeadlessChromium(width=400, height=300) as browser:
        page = await browser.new_page()
        never = asyncio.ensure_future(page.evaluate("new Promise(() => {})"))
        await asyncio.sleep(0.1)
        assert browser._proc is not None
        os.killpg(browser._proc.pid, signal.SIGKILL)
        with pytest.raises(BrowserClosedError, match="Runtime.evaluate: Chromium exited with code -9"):
            await asyncio.wait_for(never, 10)
        with pytest.raises(BrowserClosedError):
            await page.evaluate("1")
