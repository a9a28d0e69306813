"""pytest fixtures and helpers: start the fake, point discord.py at it, run a client with deadlines.

discord.py has no setting for its API host: ``discord.http.Route.BASE`` (read whenever a route is
built, also by the webhook adapter) and ``DiscordWebSocket.DEFAULT_GATEWAY`` (read by
``DiscordWebSocket.from_client``) are class attributes, so they are monkeypatched for the duration
of one test and restored afterwards.

The fixtures are ``fake_discord`` and ``world`` (the standard guild in it). To use them from any
test module, add ``pytest_plugins = ["tests.fakediscord.fixtures"]`` to the root
``tests/conftest.py`` (as this project does), or re-export one: ``fake_discord = fixtures.fake_discord``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import discord
import discord.gateway
import discord.http
import pytest
import yarl

from tests.fakediscord.server import FakeDiscord, GuildSetup

_log = logging.getLogger(__name__)

ClientT = TypeVar("ClientT", bound=discord.Client)


class ClientStartupError(RuntimeError):
    """The client died or never became ready; the message lists what it asked the fake."""


def point_discord_py_at(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every REST call and gateway connection of discord.py to ``fake`` (undone after the test)."""
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))


@contextlib.asynccontextmanager
async def serving_fake_discord(monkeypatch: pytest.MonkeyPatch, **options: Any) -> AsyncIterator[FakeDiscord]:
    """A started :class:`FakeDiscord` that discord.py talks to; stopped on exit."""
    fake = FakeDiscord(**options)
    await fake.start()
    try:
        point_discord_py_at(fake, monkeypatch)
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """A fresh fake Discord per test, with discord.py pointed at it."""
    async with serving_fake_discord(monkeypatch) as fake:
        yield fake


@pytest.fixture
def world(fake_discord: FakeDiscord) -> GuildSetup:
    """The standard guild (:meth:`FakeDiscord.add_standard_guild`) in the test's fake Discord."""
    return fake_discord.add_standard_guild()


def _describe_calls(fake: FakeDiscord) -> str:
    recent = fake.calls[-10:]
    return "; ".join(f"{c.method} {c.path} -> {c.status}" for c in recent) or "no REST calls"


async def _wait_until_ready(
    client: discord.Client, task: asyncio.Task[None], fake: FakeDiscord, limit_s: float
) -> None:
    """Wait for ``client.is_ready()`` or for ``client.start`` to fail, whichever comes first.

    ``Client.wait_until_ready`` cannot be used: its event only exists once ``login`` has run.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not client.is_ready():
        if task.done():
            error = task.exception()
            raise ClientStartupError(f"client stopped before READY ({_describe_calls(fake)})") from error
        if loop.time() >= deadline:
            raise ClientStartupError(f"client not READY after {limit_s:g}s ({_describe_calls(fake)})")
        await asyncio.wait({task}, timeout=0.02)


async def _shut_down(client: discord.Client, task: asyncio.Task[None], limit_s: float) -> BaseException | None:
    """Close the client, wait for ``start`` to return, cancel what is left. Returns its error, if any."""
    try:
        await asyncio.wait_for(client.close(), limit_s)
    except TimeoutError:
        _log.warning("client.close() took longer than %ss", limit_s)
    if not task.done():
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), limit_s)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return None if task.cancelled() else task.exception()


def _belongs_to_fake(task: asyncio.Task[Any]) -> bool:
    """The fake's own tasks (aiohttp request handlers, gateway writers) must outlive one client."""
    qualname = getattr(task.get_coro(), "__qualname__", "")
    return task.get_name().startswith("fakediscord-") or qualname.startswith("RequestHandler.")


def _is_discord_py_task(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and f"{os.sep}discord{os.sep}" in code.co_filename


@contextlib.asynccontextmanager
async def running_client(
    client: ClientT,
    fake: FakeDiscord,
    *,
    token: str | None = None,
    ready_timeout: float = 15.0,
    close_timeout: float = 10.0,
    guild_ready_timeout: float = 0.05,
) -> AsyncIterator[ClientT]:
    """Run ``client.start()`` against ``fake`` until the block ends, then close it within deadlines.

    1. ``guild_ready_timeout`` (discord.py waits this long after the last GUILD_CREATE before
       ``on_ready``; 2 s by default) is shortened, since the fake sends all guilds at once.
    2. Entering waits until the client is READY, and fails with the recent REST calls if ``start``
       raised or READY did not come within ``ready_timeout``.
    3. Leaving closes the client, waits for ``start`` to return, cancels tasks the client
       created and left pending, and re-raises an error ``start`` ended with.
    """
    connection = client._connection  # discord.py's ConnectionState: no public setter for this timeout
    connection.guild_ready_timeout = min(connection.guild_ready_timeout, guild_ready_timeout)
    before = asyncio.all_tasks()
    task = asyncio.create_task(client.start(token or fake.bot_token or "fake-bot-token"), name="fakediscord-client")
    body_failed = True
    try:
        await _wait_until_ready(client, task, fake, ready_timeout)
        yield client
        body_failed = False
    finally:
        error = await _shut_down(client, task, close_timeout)
        current = asyncio.current_task()
        leftovers = [
            t for t in asyncio.all_tasks() - before if t is not current and not t.done() and not _belongs_to_fake(t)
        ]
        for leftover in leftovers:
            # discord.py itself leaves some (an ephemeral view's 15-minute timeout); report the bot's own.
            level = logging.DEBUG if _is_discord_py_task(leftover) else logging.WARNING
            _log.log(level, "cancelling a task the client left running: %r", leftover)
            leftover.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=close_timeout)
        if error is not None and not body_failed:
            raise ClientStartupError("client.start() ended with an error") from error
