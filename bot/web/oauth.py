"""Sign-in with Discord: OAuth2's authorization code flow with the ``identify`` and ``guilds`` scopes.

The gallery sends a member's browser to Discord's authorize page with a random ``state``; Discord
sends it back to ``<WEB_PUBLIC_URL>/callback`` with a code, which this client exchanges (with the
client secret, over HTTPS from the bot, never through the browser) for an access token; the token
is used twice, for who the member is and which servers they are in, and then dropped: the gallery
keeps neither the code nor the token.

The URLs follow the bot's own API base (``discord.http.Route.BASE``, which the loopback Discord of
the tests replaces): ``https://discord.com/api/v10`` gives the authorize page
``https://discord.com/oauth2/authorize`` and the API calls under the base.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

log = logging.getLogger(__name__)

SCOPES = ("identify", "guilds")
#: Discord answers /users/@me/guilds in pages of at most 200; a member is in at most 200 servers (Nitro).
GUILDS_PAGE = 200
MAX_GUILD_PAGES = 5
REQUEST_TIMEOUT_S = 15.0


class SignInFailed(Exception):
    """Discord did not sign the member in; the message is a sentence for them."""


@dataclass(frozen=True, slots=True)
class DiscordIdentity:
    """Who signed in, and the servers they are in."""

    user_id: int
    name: str
    guild_ids: frozenset[int]


class DiscordOAuth:
    """The OAuth2 client of the gallery: the authorize URL, and the exchange of a code for an identity."""

    def __init__(self, *, api_base: str, client_id: str, client_secret: str, redirect_uri: str) -> None:
        self._api_base = api_base.rstrip("/")
        site = self._api_base
        for suffix in ("/v10", "/api"):
            site = site.removesuffix(suffix)
        self._authorize_url = f"{site}/oauth2/authorize"
        self._client_id = client_id
        self._auth = aiohttp.BasicAuth(client_id, client_secret)
        self.redirect_uri = redirect_uri
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # the secret is in self._auth: never print it
        return f"DiscordOAuth(client_id={self._client_id!r}, redirect_uri={self.redirect_uri!r})"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def authorize_url(self, state: str) -> str:
        query = {
            "response_type": "code",
            "client_id": self._client_id,
            "scope": " ".join(SCOPES),
            "state": state,
            "redirect_uri": self.redirect_uri,
            "prompt": "none",  # a member who approved the gallery once is not asked again
        }
        return f"{self._authorize_url}?{urlencode(query)}"

    async def identity(self, code: str) -> DiscordIdentity:
        """The member a code Discord sent back stands for: exchanged for a token, then their user and servers."""
        token = await self._exchange(code)
        user = await self._get("/users/@me", token)
        if not isinstance(user, dict) or "id" not in user:
            raise SignInFailed("Discord did not say who you are: try signing in again.")
        guild_ids: set[int] = set()
        after: int | None = None
        for _ in range(MAX_GUILD_PAGES):
            path = f"/users/@me/guilds?limit={GUILDS_PAGE}" + (f"&after={after}" if after is not None else "")
            page = await self._get(path, token)
            if not isinstance(page, list):
                raise SignInFailed("Discord did not list your servers: try signing in again.")
            ids = [int(guild["id"]) for guild in page]
            guild_ids.update(ids)
            if len(ids) < GUILDS_PAGE:
                break
            after = max(ids)
        name = user.get("global_name") or user.get("username") or str(user["id"])
        return DiscordIdentity(user_id=int(user["id"]), name=str(name), guild_ids=frozenset(guild_ids))

    async def _exchange(self, code: str) -> str:
        session = self._require_session()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        try:
            async with session.post(f"{self._api_base}/oauth2/token", data=form, auth=self._auth) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("the OAuth2 token exchange with Discord failed: %s", type(error).__name__)
            raise SignInFailed("Discord could not be reached to sign you in: try again in a minute.") from None
        if status == 401:
            log.error("Discord refused the gallery's OAuth2 client: check DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET")
            raise SignInFailed("This gallery's sign-in is not set up right: tell the bot's owner.")
        if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            reason = body.get("error") if isinstance(body, dict) else None
            log.info("Discord refused an OAuth2 code (%s, %s)", status, reason)
            raise SignInFailed("That sign-in link was used already or has expired: sign in again.")
        return str(body["access_token"])

    async def _get(self, path: str, token: str) -> object:
        session = self._require_session()
        try:
            async with session.get(f"{self._api_base}{path}", headers={"Authorization": f"Bearer {token}"}) as answer:
                if answer.status != 200:
                    log.info("Discord answered %s to %s during a sign-in", answer.status, path.split("?")[0])
                    raise SignInFailed("Discord did not let the gallery read who you are: try signing in again.")
                return await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("reading %s from Discord failed: %s", path.split("?")[0], type(error).__name__)
            raise SignInFailed("Discord could not be reached to sign you in: try again in a minute.") from None

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("DiscordOAuth.start() was not called")
        return self._session
