"""``FakeDiscord``: a Discord-compatible server on 127.0.0.1 for end-to-end tests of a discord.py bot.

The real discord.py client connects to it (after ``Route.BASE`` and ``DEFAULT_GATEWAY`` are
pointed here, see :mod:`tests.fakediscord.fixtures`), registers its commands, and answers the
interactions a test sends with :meth:`FakeDiscord.run_slash`, :meth:`FakeDiscord.press_button`
and friends. Everything the bot does is recorded in typed records a test can assert on.

The fake plays both sides a real deployment has: Discord's servers (REST and gateway) and the
users' Discord clients (which build interactions from the registered command definitions and
refuse what the UI would not allow).

:class:`FakeDiscord` is the facade a test holds. It serves HTTP and the gateway, records REST
calls and injects faults itself, and hands the rest to three parts, whose methods it exposes as
its own: :class:`~tests.fakediscord.world.World` (users, guilds, channels, roles, members,
permissions, registered commands), :class:`~tests.fakediscord.messages.MessageStore` (messages and
attachments, and waiting for them) and :class:`~tests.fakediscord.driver.Driver` (acting as a user:
slash commands, autocomplete, buttons, selects, modals).

It is also Discord's OAuth2 side for a web app's "Sign in with Discord" (:attr:`FakeDiscord.oauth`,
an :class:`~tests.fakediscord.oauth.OAuth2Provider`): the authorize page at ``/oauth2/authorize``,
the token endpoint, and ``users/@me`` and ``users/@me/guilds`` for a bearer token.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.fakediscord.changes import ChangeFeed
from tests.fakediscord.driver import Driver
from tests.fakediscord.gateway import Gateway
from tests.fakediscord.interactions import InteractionRecord
from tests.fakediscord.messages import MessageStore
from tests.fakediscord.models import FakeClock, RestCall, SnowflakeFactory
from tests.fakediscord.oauth import AUTHORIZE_PATH, OAuth2Provider
from tests.fakediscord.rest import Fault, RestApi
from tests.fakediscord.world import GuildSetup, World

__all__ = ["FakeDiscord", "GuildSetup"]


class FakeDiscord:
    """The fake Discord: an aiohttp app with the gateway at ``/`` and the REST API at ``/api/v10``.

    Use as ``async with FakeDiscord() as fake:`` or call :meth:`start`/:meth:`stop`. All waiting
    methods take a timeout and raise ``TimeoutError`` naming what never happened.
    """

    def __init__(
        self,
        *,
        bot_token: str | None = None,
        bot_name: str = "Latentcord",
        heartbeat_interval_ms: int = 41_250,
        ack_deadline: float | None = 3.0,
        token_lifetime: float = 15 * 60.0,
        application_flags: int = 0,
        recommended_shards: int = 1,
    ) -> None:
        """
        ``bot_token``: the only token accepted (401 / close 4004 otherwise); None accepts any
        non-empty token. ``ack_deadline``: seconds within which the first callback must arrive,
        as Discord enforces (None disables it). ``token_lifetime``: how long follow-ups and edits
        through an interaction token work, measured on :attr:`clock`. ``recommended_shards``: the
        ``shards`` of ``GET /gateway/bot`` (:attr:`recommended_shards` may be changed later too).
        """
        self.bot_token = bot_token
        self.ack_deadline = ack_deadline
        self.token_lifetime = token_lifetime
        self.application_flags = application_flags
        self.recommended_shards = recommended_shards
        self.clock = FakeClock()
        self.ids = SnowflakeFactory(self.clock)
        self.feed = ChangeFeed()
        self.gateway = Gateway(self, heartbeat_interval_ms=heartbeat_interval_ms)

        world = self.world = World(ids=self.ids, feed=self.feed, gateway=self.gateway, bot_name=bot_name)
        store = self.message_store = MessageStore(
            world=world, ids=self.ids, clock=self.clock, feed=self.feed, gateway=self.gateway, base_url=lambda: self.url
        )
        driver = self.driver = Driver(
            world=world,
            messages=store,
            ids=self.ids,
            clock=self.clock,
            feed=self.feed,
            gateway=self.gateway,
            loop_time=self.loop_time,
        )
        self._expose(world, store, driver)
        self.calls: list[RestCall] = []
        self.oauth = OAuth2Provider(self)
        """Discord's OAuth2 side: who is signed in, the codes and bearer tokens it gave out."""
        self.rest = RestApi(self)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _expose(self, world: World, store: MessageStore, driver: Driver) -> None:
        """Offer the parts' state and methods as the fake's own, so a test needs only ``fake.<name>``.

        The state is the same objects the parts hold (``fake.messages is fake.message_store.messages``).
        """
        self.bot_user = world.bot_user
        self.application_id = world.application_id
        self.application_owner = world.application_owner
        self.users = world.users
        self.guilds = world.guilds
        self.channels = world.channels
        self.commands = world.commands
        self.messages = store.messages
        self.attachments = store.attachments
        self.interactions = driver.interactions
        self.interactions_by_token = driver.interactions_by_token

        # Building the world (World).
        self.add_user = world.add_user
        self.add_guild = world.add_guild
        self.add_role = world.add_role
        self.update_role = world.update_role
        self.add_text_channel = world.add_text_channel
        self.update_channel = world.update_channel
        self.delete_channel = world.delete_channel
        self.add_member = world.add_member
        self.remove_member = world.remove_member
        self.set_member_roles = world.set_member_roles
        self.dm_channel = world.dm_channel
        self.add_standard_guild = world.add_standard_guild
        self.bot_permissions_in = world.bot_permissions_in
        self.attachment_limit_for = world.attachment_limit_for
        self.find_command = world.find_command
        self.registered_commands = world.registered_commands
        # Messages: stored by the REST handlers, read and awaited by tests (MessageStore).
        self.create_message = store.create_message
        self.edit_message = store.edit_message
        self.delete_message = store.delete_message
        self.bulk_delete_messages = store.bulk_delete_messages
        self.message_payload = store.message_payload
        self.post_user_message = store.post_user_message
        self.channel_messages = store.channel_messages
        self.wait_for_message = store.wait_for_message
        # Acting as a user (Driver).
        self.run_slash = driver.run_slash
        self.run_message_command = driver.run_message_command
        self.autocomplete = driver.autocomplete
        self.press_button = driver.press_button
        self.choose = driver.choose
        self.press_stale = driver.press_stale
        self.submit_modal = driver.submit_modal
        self.react = driver.react
        self.wait_for_gateway = driver.wait_for_gateway

    @property
    def command_overwrites(self) -> int:
        """How many bulk overwrites (``tree.sync()``) the bot has done."""
        return self.world.command_overwrites

    @command_overwrites.setter
    def command_overwrites(self, value: int) -> None:
        self.world.command_overwrites = value

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> Self:
        """Listen on a free port of 127.0.0.1."""
        self._loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self.message_store.serve_attachment)
        app.router.add_get(AUTHORIZE_PATH, self.oauth.authorize)
        app.router.add_route("*", "/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        """Close gateway connections (1001, as during a Discord restart) and the HTTP server."""
        await self.gateway.close_all(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeDiscord is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be set to (also the resume URL)."""
        return f"ws://127.0.0.1:{self._port}/"

    def loop_time(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def accepts_token(self, token: str) -> bool:
        if self.bot_token is None:
            return bool(token)
        return secrets.compare_digest(token, self.bot_token)

    def accepts_authorization(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the bot's token (an OAuth2 bearer token does not)."""
        scheme = (header or "").partition(" ")[0]
        if scheme.lower() == "bearer":
            return False
        return self.accepts_token((header or "").removeprefix("Bot "))

    # -- waiting and the record of REST calls --------------------------------------------------------

    async def wait_until(
        self,
        check: Callable[[], Any],
        *,
        timeout: float = 5.0,
        what: str = "a condition",
    ) -> Any:
        """Wait until ``check()`` returns something other than None or False.

        Re-checked on every change of the fake and every 20 ms, so ``check`` may also look at the
        client's state (``lambda: bot.get_channel(channel.id)``).
        """
        return await self.feed.wait_until(lambda: check() or None, timeout=timeout, what=what, poll=0.02)

    def calls_to(self, method: str, route: str) -> list[RestCall]:
        """Recorded calls that matched a route template, e.g. ``("PUT", "/applications/{application_id}/commands")``."""
        return [c for c in self.calls if c.method == method and c.route == route]

    @property
    def unknown_calls(self) -> list[RestCall]:
        """Requests to routes the fake does not implement (answered 404/405)."""
        return [c for c in self.calls if c.route is None]

    # -- failures --------------------------------------------------------------------------------

    def inject_fault(
        self,
        path: str,
        *,
        method: str | None = None,
        status: int = 500,
        code: int = 0,
        message: str = "Internal Server Error",
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer the next ``times`` requests whose path matches the regex ``path`` with an error.

        E.g. ``inject_fault(r"^/channels/\\d+/messages$", method="POST", status=403, code=50013,
        message="Missing Permissions")``. Note discord.py retries 500/502/504 itself, with sleeps.
        """
        fault = Fault(
            method=method,
            path=re.compile(path),
            status=status,
            body={"message": message, "code": code},
            headers=dict(headers or {}),
            remaining=times,
        )
        self.rest.faults.append(fault)
        return fault

    def rate_limit(self, path: str, *, method: str | None = None, retry_after: float = 0.1, times: int = 1) -> Fault:
        """Answer with 429 the way Discord does (``Via`` header and ``retry_after``), so discord.py retries."""
        fault = self.inject_fault(
            path,
            method=method,
            status=429,
            times=times,
            headers={"Via": "1.1 google", "Retry-After": str(retry_after), "X-RateLimit-Scope": "user"},
        )
        fault.body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False, "code": 0}
        return fault

    # -- gateway and interaction tokens ----------------------------------------------------------

    def expire_interaction(self, interaction: InteractionRecord) -> None:
        """Age one interaction past its 15-minute token (and 3-second window) without moving the clock."""
        interaction.issued_at -= self.token_lifetime + 1

    def force_reconnect(self) -> None:
        """Send op 7 RECONNECT, as Discord does before moving a session; discord.py resumes."""
        self.gateway.send_reconnect()
