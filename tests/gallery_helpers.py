"""The real bot with its web gallery on, against the loopback Discord: fixtures and a member's browser session.

A test module re-exports the fixtures it uses (``settings = gallery_helpers.settings``, and ``bot``,
``other_world`` likewise), as ``tests/discord_bot_helpers.py`` explains.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from bot.app import LatentcordBot
from bot.runtime.core import Core
from bot.settings import Settings
from models.engine import DiffusionEngine
from tests.discord_bot_helpers import running_bot
from tests.fakediscord import FakeDiscord
from tests.fakediscord.models.guilds import FakeMember
from tests.fakediscord.server import GuildSetup
from tests.helpers import NoNsfw, tiny_settings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    port = free_port()
    return tiny_settings(
        tmp_path,
        discord_token="fake-bot-token",
        daily_credits=1000,
        preview_interval_s=0.0,
        web_port=port,
        web_public_url=f"http://127.0.0.1:{port}",
        discord_client_secret="fake-client-secret",
    )


@pytest.fixture
def other_world(fake_discord: FakeDiscord) -> GuildSetup:
    """A second server with the bot in it, made before the bot connects."""
    return fake_discord.add_standard_guild("Another Server")


@pytest.fixture
def classifier() -> NoNsfw:
    return NoNsfw()


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord,
    world: GuildSetup,
    other_world: GuildSetup,
    settings: Settings,
    tiny_engine: DiffusionEngine,
    classifier: NoNsfw,
) -> AsyncIterator[tuple[LatentcordBot, Core]]:
    async with running_bot(fake_discord, settings, tiny_engine, classifier=classifier) as running:
        assert running[0].gallery is not None, "WEB_PORT is set: the gallery must be serving"
        yield running


@dataclass
class Browser:
    """A member's browser: a cookie jar that keeps cookies of 127.0.0.1 (aiohttp's default refuses IP hosts)."""

    http: aiohttp.ClientSession
    base: str

    async def get(self, path: str, **kwargs: object) -> aiohttp.ClientResponse:
        response = await self.http.get(self.base + path, **kwargs)  # type: ignore[arg-type]
        await response.read()
        return response

    async def text(self, path: str) -> tuple[int, str]:
        response = await self.get(path)
        return response.status, await response.text()

    def cookie(self, name: str) -> str | None:
        found = self.http.cookie_jar.filter_cookies(URL(self.base))
        morsel = found.get(name)
        return morsel.value if morsel is not None else None


@pytest.fixture
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=60)) as http:
        assert settings.gallery_url is not None
        yield Browser(http, settings.gallery_url)


async def sign_in(
    fake: FakeDiscord, browser: Browser, member: FakeMember, *, after: str = "/"
) -> aiohttp.ClientResponse:
    """Sign ``member`` in through Discord's OAuth2 (the loopback one approves at once); the page it lands on."""
    fake.oauth.sign_in(member)
    return await browser.get(f"/login?next={after}")
