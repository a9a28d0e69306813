"""The web gallery: each server's delivered results, for its members, signed in with Discord.

aiohttp's server on the bot's event loop, on WEB_HOST:WEB_PORT, with jinja2's templates. Routes:

* ``GET /``                   sign-in, or the servers this member shares with the bot
* ``GET /login``, ``/callback`` Discord's OAuth2 (``bot.web.oauth``); ``POST /logout`` (CSRF token)
* ``GET /g/<guild>``          a server's gallery: newest first, 12 results a page, ``q`` (words of the prompt),
  ``member``, ``model``, ``page``
* ``GET /g/<guild>/images/<job>/<n>.png`` and ``/thumbs/<job>/<n>.webp``  an image, and its thumbnail
* ``GET /static/<name>``      the stylesheet and the script, from a fixed list

Every page and image checks the session and that its server is one the member was in when they signed
in and the bot is in now; an image is served only if the store's gallery shows it (``db.gallery``), so
guessing URLs finds nothing else, and the file served must lie inside IMAGES_DIR. Every answer carries a
Content-Security-Policy that allows the gallery's own files only (no inline script).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from aiohttp import web

from bot.images.thumbnails import make_thumbnail, thumbnail_path
from bot.observability.server import PortUnavailable, listen
from bot.runtime.threads import background_executor
from bot.web import views
from bot.web.oauth import DiscordOAuth, SignInFailed
from bot.web.sessions import (
    SESSION_COOKIE,
    SESSION_TTL_S,
    STATE_COOKIE,
    STATE_TTL_S,
    CookiePolicy,
    CookieSigner,
    new_token,
    token_hash,
)
from db.gallery import MAX_SEARCH_WORDS, ShownResult, WebSession

if TYPE_CHECKING:
    from bot.jobs.recipe import Recipe
    from bot.jobs.service import GenerationService
    from bot.settings import Settings
    from db.store import Store

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
#: Results on a page: a grid is four images, so a page is at most 48 thumbnails and their upscales.
CARDS_PER_PAGE = 12
MAX_PAGE = 10_000
MAX_SEARCH_CHARS = 200
#: Scripts, styles and images from the gallery itself only; no inline script, no frames, forms to itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
#: A member's browser keeps images a day; only theirs (behind the sign-in), never a shared cache.
IMAGE_CACHE_CONTROL = "private, max-age=86400"
STATIC_FILES = {
    "gallery.css": "text/css; charset=utf-8",
    "gallery.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_NEXT = re.compile(r"/g/\d{1,20}")
#: How long a session read from the store is trusted: a sign-out here ends it at once; a /privacy delete within this.
SESSION_CACHE_S = 15.0
SESSION_CACHE_SIZE = 10_000
#: How long Discord's answer to "is this member in that server" is kept (one question per member and server).
MEMBERSHIP_CACHE_S = 300.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def gallery_server(
    *,
    settings: Settings,
    store: Store[Recipe],
    service: GenerationService,
    api_base: str,
    client_id: str,
    bot_guilds: Callable[[], Mapping[int, str]],
    is_member: Callable[[int, int], Awaitable[bool | None]] | None = None,
) -> GalleryServer:
    """The gallery of ``settings`` (WEB_PORT set, and so DISCORD_CLIENT_SECRET): ``bot_guilds`` names the bot's
    servers now, by id; ``is_member(guild, user)`` asks Discord whether a user is in a server (None: it could not
    say); ``api_base`` is the Discord API the bot talks to."""
    assert settings.web_port is not None and settings.discord_client_secret and settings.gallery_url
    oauth = DiscordOAuth(
        api_base=api_base,
        client_id=settings.discord_client_id or client_id,
        client_secret=settings.discord_client_secret,
        redirect_uri=f"{settings.gallery_url}/callback",
    )
    return GalleryServer(
        store=store,
        service=service,
        oauth=oauth,
        signer=CookieSigner(settings.discord_client_secret),
        bot_guilds=bot_guilds,
        images_dir=settings.images_dir,
        host=settings.web_host,
        port=settings.web_port,
        public_url=settings.gallery_url,
        is_member=is_member,
    )


class GalleryServer:
    """Serves the galleries on ``host:port`` from ``start`` until ``stop``."""

    def __init__(
        self,
        *,
        store: Store[Recipe],
        service: GenerationService,
        oauth: DiscordOAuth,
        signer: CookieSigner,
        bot_guilds: Callable[[], Mapping[int, str]],
        images_dir: Path,
        host: str,
        port: int,
        public_url: str,
        is_member: Callable[[int, int], Awaitable[bool | None]] | None = None,
    ) -> None:
        self._store = store
        self._service = service
        self._oauth = oauth
        self._signer = signer
        self._bot_guilds = bot_guilds
        self._images_dir = images_dir.resolve()
        self._host = host
        self._port = port
        self._public_url = public_url
        self._cookies = CookiePolicy(secure=public_url.startswith("https://"))
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
        )
        self._static = {name: (HERE / "static" / name).read_bytes() for name in STATIC_FILES}
        self._static_etags = {name: f'"{hashlib.sha256(data).hexdigest()[:16]}"' for name, data in self._static.items()}
        self._thumbnailer = background_executor(2, "latentcord-thumbnails")
        self._thumbnails: dict[Path, asyncio.Future[None]] = {}
        self._sessions: dict[str, tuple[WebSession, float]] = {}  # token hash: the session, when it was read
        self._is_member = is_member
        self._memberships: dict[tuple[int, int], tuple[bool, float]] = {}  # (guild, user): answer, when
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._home)
        app.router.add_get("/login", self._login)
        app.router.add_get("/callback", self._callback)
        app.router.add_post("/logout", self._logout)
        app.router.add_get(r"/g/{guild_id:\d{1,20}}", self._gallery)
        app.router.add_get(r"/g/{guild_id:\d{1,20}}/images/{job_id:\d{1,20}}/{n:\d{1,3}}.png", self._image)
        app.router.add_get(r"/g/{guild_id:\d{1,20}}/thumbs/{job_id:\d{1,20}}/{n:\d{1,3}}.webp", self._thumbnail)
        app.router.add_get("/static/{name}", self._static_file)
        self._runner = web.AppRunner(app, access_log=None)

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        await self._oauth.start()
        try:
            await listen(self._runner, self._host, self._port, serving="the gallery", setting="WEB_PORT")
        except PortUnavailable:
            await self._oauth.stop()
            self._thumbnailer.shutdown(wait=False)
            raise
        log.info("the web gallery is on http://%s:%d/", self._host, self._port)

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._oauth.stop()
        self._thumbnailer.shutdown(wait=True, cancel_futures=True)

    # -- every answer ----------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Security headers on every answer, and errors (a route not found included) as a page of the gallery."""
        try:
            response = await handler(request)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = self._message(
                error.status,
                "Not found" if error.status == 404 else error.reason,
                _SENTENCES.get(error.status, "That did not work."),
            )
        except Exception:  # a bug or the disk: the traceback to the log, a sentence to the member
            log.exception("the gallery failed to answer %s %s", request.method, request.path)
            response = self._message(500, "Something went wrong", "The gallery could not answer that: try again.")
        response.headers.update(SECURITY_HEADERS)
        return response

    def _render(self, template: str, *, status: int = 200, **values: Any) -> web.Response:
        body = self._templates.get_template(template).render(**values)
        return web.Response(
            status=status, text=body, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"}
        )

    def _message(self, status: int, title: str, sentence: str, *, sign_in: bool = False) -> web.Response:
        return self._render("message.html", status=status, title=title, sentence=sentence, sign_in=sign_in)

    # -- sign-in ---------------------------------------------------------------------------------

    async def _session(self, request: web.Request) -> WebSession | None:
        """The request's session: read from the store, then kept for ``SESSION_CACHE_S`` (a page's 48 thumbnails
        ask once), never past its end."""
        token = self._signer.unsign(request.cookies.get(SESSION_COOKIE))
        if token is None:
            return None
        key = token_hash(token)
        now = time.monotonic()
        cached = self._sessions.get(key)
        if cached is not None and now - cached[1] < SESSION_CACHE_S and cached[0].expires_at > time.time():
            return cached[0]
        session = await self._store.web_session(key)
        if session is None:
            self._sessions.pop(key, None)
            return None
        if len(self._sessions) >= SESSION_CACHE_SIZE:
            self._sessions.clear()
        self._sessions[key] = (session, now)
        return session

    async def _end_session(self, token: str) -> None:
        key = token_hash(token)
        self._sessions.pop(key, None)
        await self._store.end_web_session(key)

    async def _home(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        if session is None:
            return self._render("signin.html", title="Sign in")
        candidates = sorted(session.guild_ids & set(self._bot_guilds()))
        names = await asyncio.gather(*(self._guild_name(session, guild_id) for guild_id in candidates))
        shared = sorted(
            ((guild_id, name) for guild_id, name in zip(candidates, names, strict=True) if name is not None),
            key=lambda guild: guild[1].casefold(),
        )
        return self._render("home.html", title="Galleries", session=session, guilds=shared)

    async def _login(self, request: web.Request) -> web.Response:
        after = request.query.get("next", "/")
        if not _NEXT.fullmatch(after):
            after = "/"
        # Discord sends the browser back to WEB_PUBLIC_URL: a sign-in started under another name of this server
        # (127.0.0.1 for localhost) would set its cookies where the callback cannot read them. Move it there first,
        # once (a proxy that rewrites the Host header must not make this a loop).
        if request.host != urlsplit(self._public_url).netloc and "moved" not in request.query:
            return _redirect(f"{self._public_url}/login?{urlencode({'next': after, 'moved': '1'})}")
        state = new_token()
        response = _redirect(self._oauth.authorize_url(state))
        self._cookies.set(response, STATE_COOKIE, self._signer.sign(f"{state}|{after}"), max_age=STATE_TTL_S)
        return response

    async def _callback(self, request: web.Request) -> web.Response:
        # 1. The state Discord sent back must be the one this browser was given at /login.
        signed = self._signer.unsign(request.cookies.get(STATE_COOKIE))
        state, _, after = (signed or "").partition("|")
        given = request.query.get("state", "")
        if not signed or not hmac.compare_digest(given.encode(), state.encode()):
            return self._message(
                400,
                "Sign-in expired",
                "This sign-in did not start here, or took longer than ten minutes: sign in again.",
                sign_in=True,
            )
        # 2. The member said no on Discord's page.
        if "error" in request.query:
            response = self._message(
                403,
                "Not signed in",
                "You did not let the gallery see who you are, so you are not signed in.",
                sign_in=True,
            )
            self._cookies.clear(response, STATE_COOKIE)
            return response
        # 3. The code, exchanged for who they are and their servers; then a session of our own.
        code = request.query.get("code", "")
        if not code:
            return self._message(400, "Sign-in failed", "Discord sent no sign-in code: sign in again.", sign_in=True)
        try:
            identity = await self._oauth.identity(code)
        except SignInFailed as failed:
            return self._message(502, "Sign-in failed", str(failed), sign_in=True)
        previous = self._signer.unsign(request.cookies.get(SESSION_COOKIE))
        if previous is not None:
            await self._end_session(previous)
        token = new_token()
        await self._store.start_web_session(
            token_hash(token),
            user_id=identity.user_id,
            user_name=identity.name,
            guild_ids=identity.guild_ids,
            csrf_token=new_token(),
            ttl_s=SESSION_TTL_S,
        )
        log.info("user %s signed in to the gallery", identity.user_id)
        response = _redirect(after or "/")
        self._cookies.set(response, SESSION_COOKIE, self._signer.sign(token), max_age=int(SESSION_TTL_S))
        self._cookies.clear(response, STATE_COOKIE)
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        form = await request.post()
        if session is None or not hmac.compare_digest(str(form.get("csrf", "")).encode(), session.csrf_token.encode()):
            return self._message(
                403, "Form expired", "This form has expired or did not come from the gallery: reload the page."
            )
        token = self._signer.unsign(request.cookies.get(SESSION_COOKIE))
        assert token is not None
        await self._end_session(token)
        response = _redirect("/")
        self._cookies.clear(response, SESSION_COOKIE)
        return response

    # -- a server's gallery ----------------------------------------------------------------------

    async def _guild_name(self, session: WebSession, guild_id: int) -> str | None:
        """The server's name when this member may see its gallery: the bot is in it, and so are they.

        Whether they are is asked of Discord (``is_member``, kept ``MEMBERSHIP_CACHE_S``), so a member who left or
        was removed loses the gallery within minutes, not at the end of their session; when Discord cannot say,
        the servers they were in at sign-in decide.
        """
        name = self._bot_guilds().get(guild_id)
        if name is None:
            return None
        if self._is_member is None:
            return name if guild_id in session.guild_ids else None
        key = (guild_id, session.user_id)
        now = time.monotonic()
        known = self._memberships.get(key)
        if known is None or now - known[1] >= MEMBERSHIP_CACHE_S:
            answer = await self._is_member(guild_id, session.user_id)
            if answer is None:  # Discord could not say: what it said at sign-in
                return name if guild_id in session.guild_ids else None
            if len(self._memberships) >= SESSION_CACHE_SIZE:
                self._memberships.clear()
            known = self._memberships[key] = (answer, now)
        return name if known[0] else None

    async def _gallery(self, request: web.Request) -> web.Response:
        guild_id = int(request.match_info["guild_id"])
        session = await self._session(request)
        if session is None:
            return _redirect(f"/login?next={quote(f'/g/{guild_id}')}")
        guild_name = await self._guild_name(session, guild_id)
        if guild_name is None:
            return self._message(
                403,
                "Not your server",
                "This gallery is for members of a server the bot is in, and Discord says you are not one of them.",
            )
        try:
            filters = _filters(request.query)
        except ValueError as error:
            return self._message(400, "Bad search", str(error))
        page = await self._store.gallery_page(
            guild_id,
            search=filters.search or None,
            member_id=filters.member_id,
            model=filters.model,
            offset=(filters.page - 1) * CARDS_PER_PAGE,
            limit=CARDS_PER_PAGE,
        )
        members = await self._store.gallery_members(guild_id)
        models = await self._store.gallery_models(guild_id)
        return self._render(
            "gallery.html",
            title=f"{guild_name} — gallery",
            session=session,
            guild_id=guild_id,
            guild_name=guild_name,
            cards=views.cards(guild_id, page),
            members=[(member.user_id, views.member_label(member)) for member in members],
            models=models,
            filters=filters,
            newer=filters.query(page=filters.page - 1) if filters.page > 1 else None,
            older=filters.query(page=filters.page + 1) if page.has_more else None,
        )

    # -- images ------------------------------------------------------------------------------------

    async def _shown_result(self, request: web.Request) -> tuple[ShownResult[Recipe], int] | None:
        """The result and image index a URL names, if this member may see that image; None otherwise."""
        session = await self._session(request)
        guild_id = int(request.match_info["guild_id"])
        if session is None or await self._guild_name(session, guild_id) is None:
            return None
        result = await self._store.gallery_job(guild_id, int(request.match_info["job_id"]))
        index = int(request.match_info["n"]) - 1
        if result is None or index not in result.shown:
            return None
        return result, index

    async def _image_file(self, result: ShownResult[Recipe], index: int) -> Path | None:
        """The file of image ``index`` of a shown job, inside IMAGES_DIR; a posted grid's images are cut from it
        on first use."""
        job = result.job
        path = await asyncio.to_thread(self._kept_file, job.image_paths, index)
        if path is not None:
            return path
        paths = await self._service.image_files(job)
        return await asyncio.to_thread(self._kept_file, tuple(str(path) for path in paths), index)

    def _kept_file(self, paths: tuple[str, ...], index: int) -> Path | None:
        if index >= len(paths):
            return None
        path = Path(paths[index])
        return path if path.is_file() and self._inside(path) else None

    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self._images_dir)

    async def _image(self, request: web.Request) -> web.StreamResponse:
        found = await self._shown_result(request)
        path = None if found is None else await self._image_file(*found)
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": IMAGE_CACHE_CONTROL, "Content-Type": "image/png"})

    async def _thumbnail(self, request: web.Request) -> web.StreamResponse:
        found = await self._shown_result(request)
        if found is None:
            raise web.HTTPNotFound()
        result, index = found
        # 1. Made already (as the result was posted, or by an earlier view): one trip to the disk.
        paths = result.job.image_paths
        kept = None
        if index < len(paths):
            kept = await asyncio.to_thread(self._read_thumbnail, thumbnail_path(Path(paths[index]), index))
        # 2. Else made now from the image, once.
        if kept is None:
            image = await self._image_file(result, index)
            if image is None:
                raise web.HTTPNotFound()
            target = thumbnail_path(image, index)
            await self._make_thumbnail(image, target)
            kept = await asyncio.to_thread(self._read_thumbnail, target)
            if kept is None:
                raise web.HTTPNotFound()
        data, etag = kept
        headers = {"Cache-Control": IMAGE_CACHE_CONTROL, "ETag": etag}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, headers={**headers, "Content-Type": "image/webp"})

    def _read_thumbnail(self, path: Path) -> tuple[bytes, str] | None:
        """A thumbnail's bytes and an ETag from its size and time; None when it is not there (yet) or lies outside
        IMAGES_DIR."""
        if not self._inside(path):
            return None
        try:
            with path.open("rb") as file:
                facts = os.fstat(file.fileno())
                return file.read(), f'"{facts.st_mtime_ns:x}-{facts.st_size:x}"'
        except FileNotFoundError:
            return None

    async def _make_thumbnail(self, image: Path, target: Path) -> None:
        """Make a thumbnail once, off the event loop; requests for it meanwhile wait for the same work."""
        making = self._thumbnails.get(target)
        if making is None:
            making = asyncio.get_running_loop().run_in_executor(self._thumbnailer, make_thumbnail, image, target)
            self._thumbnails[target] = making
            making.add_done_callback(lambda _: self._thumbnails.pop(target, None))
        try:
            await asyncio.shield(making)
        except OSError:
            log.warning("could not make the thumbnail %s", target, exc_info=True)
            raise web.HTTPNotFound() from None

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._static:
            raise web.HTTPNotFound()
        etag = self._static_etags[name]
        headers = {"Cache-Control": "public, max-age=3600", "ETag": etag}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=self._static[name], headers={**headers, "Content-Type": STATIC_FILES[name]})


_SENTENCES = {
    404: "There is nothing here, or nothing you may see.",
    405: "That address does not take this kind of request.",
}


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _filters(query: Mapping[str, str]) -> views.Filters:
    """A gallery page's filters from its query string; ``ValueError`` with a sentence for one that is wrong."""
    search = " ".join(query.get("q", "").split())[:MAX_SEARCH_CHARS]
    member = query.get("member", "").strip()
    if member and not (member.isdigit() and len(member) <= 20):
        raise ValueError("Choose a member from the list: member takes a member's id.")
    page = query.get("page", "1").strip() or "1"
    if not page.isdigit() or not 1 <= int(page) <= MAX_PAGE:
        raise ValueError(f"There is no page {page[:20]!r}: pages are numbered from 1 to {MAX_PAGE}.")
    return views.Filters(
        search=search,
        member_id=int(member) if member else None,
        model=query.get("model", "").strip() or None,
        page=int(page),
    )


__all__ = ["CARDS_PER_PAGE", "MAX_SEARCH_WORDS", "GalleryServer", "gallery_server"]
