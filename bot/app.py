"""The Discord ``Bot``: the only place in ``bot/`` that imports discord.

It holds typed references to the core (settings, store, service) for the cogs,
loads the cogs, registers the persistent buttons (and answers a press of one that
discord.py drops because the message no longer shows it), syncs the command tree only
when Discord's copy differs, resumes unfinished jobs, and maps domain errors to
ephemeral replies in one handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import USER_FACING_ERRORS, DiscordLoginFailed
from bot.jobs.messages import fit_content
from bot.jobs.moderation import ModerationService
from bot.jobs.recipe import Recipe
from bot.jobs.service import GenerationService
from bot.observability.server import MetricsServer, metrics_server
from bot.runtime.heap import freeze_long_lived_objects
from bot.runtime.loop_monitor import LoopLagMonitor
from bot.runtime.tasks import log_failure
from bot.settings import Settings
from bot.web.server import GalleryServer, gallery_server
from bot.workers.protocol import WorkerClient
from db.errors import StorageUnavailable
from db.store import Store

log = logging.getLogger(__name__)

EXTENSIONS = (
    "cogs.imagine",
    "cogs.moderation",
    "cogs.usage",
    "cogs.preferences",
    "cogs.status",
    "cogs.privacy",
    "cogs.gallery",
)
TOKEN_SWEEP_INTERVAL_S = 300


class LatentcordBot(commands.Bot):
    """The bot: settings, the store and the worker in, everything the cogs need as typed attributes.

    ``service`` (admission, recording and delivery of jobs) is built from the
    other three unless one is given, for example to share it with other front ends.
    It is one gateway connection; :class:`ShardedLatentcordBot` takes ``shard_count``.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store[Recipe],
        worker: WorkerClient,
        service: GenerationService | None = None,
        clock: Callable[[], float] = time.time,
        shard_count: int | None = None,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels (their age-restricted flag) and roles come from guild events
        # ✉️ and ❌ on results: reaction events only (not privileged, and no message content).
        intents.guild_reactions = True
        intents.dm_reactions = True
        # Message deletes: a result deleted in Discord leaves the gallery (no message content is asked for).
        intents.guild_messages = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            shard_count=shard_count,
            # Members' messages arrive (for their deletes) but are never kept: nothing here reads them back.
            max_messages=None,
        )
        self.settings = settings
        self.store = store
        self.worker = worker
        self.service = service or GenerationService(settings=settings, store=store, worker=worker)
        self.moderation = ModerationService(
            store=store, settings=settings, worker=worker, pictures=self.service.jobs.pictures
        )
        self.clock = clock  # wall-clock seconds; tests move it to age interaction tokens
        self._token_sweeper: asyncio.Task[None] | None = None
        self.loop_lag = LoopLagMonitor()  # how late the event loop runs; for operators and benchmarks
        # The cogs' DynamicItems by template, to answer the presses discord.py drops (_answer_unrouted_press).
        self._dynamic_items: dict[re.Pattern[str], type[discord.ui.DynamicItem[discord.ui.Item[Any]]]] = {}
        self.tree.error(self.on_app_command_error)
        self.add_listener(self._answer_unrouted_press, "on_interaction")
        # The gateway's state, for /healthz: up from READY (or a resume) until a connection drops.
        self._gateway_up = False
        self.add_listener(self._gateway_opened, "on_ready")
        self.add_listener(self._gateway_opened, "on_resumed")
        self.add_listener(self._gateway_dropped, "on_disconnect")
        self.metrics: MetricsServer | None = None  # METRICS_PORT's /metrics and /healthz
        self.gallery: GalleryServer | None = None  # WEB_PORT's web gallery

    async def setup_hook(self) -> None:
        if self.settings.metrics_port is not None:  # first: /healthz answers (503) while the rest starts
            metrics = metrics_server(
                settings=self.settings,
                port=self.settings.metrics_port,
                service=self.service,
                store=self.store,
                worker=self.worker,
                gateway_connected=self.gateway_connected,
                loop_lag=self.loop_lag.figures,
            )
            await metrics.start()
            self.metrics = metrics
        await self.worker.start()  # a no-op when the composition root started it already
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self.sync_commands_if_changed()
        if self.settings.web_port is not None:
            assert self.application_id is not None
            gallery = gallery_server(
                settings=self.settings,
                store=self.store,
                service=self.service,
                api_base=discord.http.Route.BASE,
                client_id=str(self.application_id),  # a bot's application id is its OAuth2 client id
                bot_guilds=self.guild_names,
                is_member=self.is_member,
            )
            await gallery.start()  # a port it cannot take stops start-up with a sentence, having cleaned up
            self.gallery = gallery
        resumed = await self.service.resume()
        if resumed:
            log.info("requeued %d unfinished jobs: %s", len(resumed), resumed)
        self._token_sweeper = asyncio.create_task(self._expire_tokens_forever(), name="latentcord-token-sweeper")
        self._token_sweeper.add_done_callback(log_failure("the token sweeper"))
        # Start-up built what lives as long as the process (the model, the cogs): keep the
        # collector's full passes off it, so they stay short while members wait for answers.
        freeze_long_lived_objects()
        self.loop_lag.start()  # from here on the loop serves members; start-up's own pauses are not counted

    async def on_message(self, message: discord.Message, /) -> None:
        """Messages arrive only for the gallery to see deletes; the bot has no prefix commands to run on them."""

    async def is_member(self, guild_id: int, user_id: int) -> bool | None:
        """Whether ``user_id`` is in the server ``guild_id`` now, as Discord says (one REST call: the bot has no
        member list); None when Discord could not be asked."""
        guild = self.get_guild(guild_id)
        if guild is None:
            return False
        try:
            await guild.fetch_member(user_id)
        except discord.NotFound:
            return False
        except discord.HTTPException:
            log.info("could not ask Discord whether %s is in %s", user_id, guild_id, exc_info=True)
            return None
        return True

    def guild_names(self) -> dict[int, str]:
        """The servers the bot is in now, by id: the web gallery shows only theirs."""
        return {guild.id: guild.name for guild in self.guilds}

    def gateway_connected(self) -> bool:
        return self._gateway_up and not self.is_closed()

    async def _gateway_opened(self) -> None:
        self._gateway_up = True

    async def _gateway_dropped(self) -> None:
        self._gateway_up = False

    async def _expire_tokens_forever(self) -> None:
        """Interaction tokens are secrets that stop working after 15 minutes: do not keep them longer."""
        while True:
            await asyncio.sleep(TOKEN_SWEEP_INTERVAL_S)
            try:
                expired = await self.store.expire_interaction_tokens()
            except StorageUnavailable as error:  # the disk refuses writes for now: the next sweep tries again
                log.warning("could not forget expired interaction tokens: %s", error)
                continue
            if expired:
                log.debug("forgot %d expired interaction tokens", expired)

    async def sync_commands_if_changed(self) -> bool:
        """Sync the global command tree only when Discord's registered commands differ from ours."""
        assert self.application_id is not None
        registered = await self.http.get_global_commands(self.application_id)
        ours = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        if _canonical(registered) == _canonical(ours):
            log.info("slash commands are up to date; not syncing")
            return False
        await self.tree.sync()
        log.info("synced %d slash commands", len(ours))
        return True

    async def close(self) -> None:
        """Stop taking jobs, let the running batch finish (the rest stays queued), then disconnect."""
        log.info("shutting down: finishing the running batch, keeping the queue for the next start")
        if self._token_sweeper is not None:
            self._token_sweeper.cancel()
        await self.loop_lag.stop()
        lag = self.loop_lag.figures()
        if lag.samples:
            log.info(
                "event-loop lag over this run: p50 %.1f ms, p99 %.1f ms, max %.0f ms (%d samples)",
                lag.p50_s * 1000,
                lag.p99_s * 1000,
                lag.max_s * 1000,
                lag.samples,
            )
        await self.service.close()
        await super().close()
        if self.gallery is not None:
            await self.gallery.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        await self.store.close()

    def add_dynamic_items(self, *items: type[discord.ui.DynamicItem[discord.ui.Item[Any]]]) -> None:
        super().add_dynamic_items(*items)
        self._dynamic_items.update((item.__discord_ui_compiled_template__, item) for item in items)

    def remove_dynamic_items(self, *items: type[discord.ui.DynamicItem[discord.ui.Item[Any]]]) -> None:
        super().remove_dynamic_items(*items)
        for item in items:
            self._dynamic_items.pop(item.__discord_ui_compiled_template__, None)

    async def _answer_unrouted_press(self, interaction: discord.Interaction[Any]) -> None:
        """Answer a press of one of the bot's components that discord.py dropped, by that component's callback.

        discord.py runs a ``DynamicItem`` only when its custom id is among the components of the
        message Discord sends with the press; a client that still shows a component the message no
        longer has (a Cancel pressed as the grid replaced it, a stale tab, a button an edit removed)
        gets no answer, and the member sees "This interaction failed". Such a press gets the item
        built from its custom id, as discord.py builds it, and that item's callback answers: one
        handler for both. A press discord.py routed is left to it, so none is answered twice.
        """
        data = interaction.data
        if interaction.type is not discord.InteractionType.component or data is None:
            return
        custom_id, component_type = data.get("custom_id"), data.get("component_type")
        if not isinstance(custom_id, str) or not isinstance(component_type, int):
            return
        found = next(
            (
                (factory, match)
                for pattern, factory in self._dynamic_items.items()
                if (match := pattern.fullmatch(custom_id))
            ),
            None,
        )
        stand_in = _stand_in(component_type, custom_id)
        if found is None or stand_in is None or _carries(interaction.message, component_type, custom_id):
            return  # not the bot's, or discord.py runs it
        factory, match = found
        try:
            item = await factory.from_custom_id(interaction, stand_in, match)
            item._refresh_state(interaction, dict(data))  # a menu's chosen values, as discord.py sets them
            if await item.interaction_check(interaction):
                await item.callback(interaction)
        except Exception as error:
            await self.report_error(interaction, error)

    async def on_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        await self.report_error(interaction, cause)

    async def report_error(self, interaction: discord.Interaction[Any], cause: BaseException) -> None:
        """One handler: domain errors become an ephemeral sentence; anything else an apology with an id."""
        if isinstance(cause, USER_FACING_ERRORS):
            message = str(cause)
        elif isinstance(cause, app_commands.CheckFailure):
            message = str(cause) or "You are not allowed to use this command."
        else:
            error_id = uuid.uuid4().hex[:8]
            log.error("command failed (error id %s)", error_id, exc_info=cause)
            message = f"Sorry, something went wrong on our side (error id `{error_id}`)."
        await send_ephemeral(interaction, message)


class ShardedLatentcordBot(LatentcordBot, commands.AutoShardedBot):
    """The same bot over ``shard_count`` gateway connections (shards), one per share of its guilds.

    discord.py's ``AutoShardedBot`` opens the shards with the one token and routes each
    guild's events through the shard Discord assigns it (``(guild_id >> 22) % shard_count``);
    commands, the service and the worker are shared, so ``/imagine`` works the same on every
    shard. ``shard_count`` is always given (SHARD_COUNT or Discord's recommendation), so
    discord.py connects to ``DEFAULT_GATEWAY`` (DISCORD_GATEWAY_URL) rather than asking again.
    """

    def gateway_connected(self) -> bool:
        """Every shard's connection open: one shard's READY or resume must not hide another that is still down."""
        return not self.is_closed() and self.is_ready() and not any(shard.is_closed() for shard in self.shards.values())


def _carries(message: discord.Message | None, component_type: int, custom_id: str) -> bool:
    """Whether ``message`` has the component, by the test discord.py routes a ``DynamicItem`` press with."""
    if message is None:
        return False
    view_class = discord.ui.LayoutView if message.flags.components_v2 else discord.ui.View
    view = view_class.from_message(message, timeout=None)
    return any(
        item.type.value == component_type and getattr(item, "custom_id", None) == custom_id
        for item in view.walk_children()
    )


def _stand_in(component_type: int, custom_id: str) -> discord.ui.Item[Any] | None:
    """The component a ``DynamicItem`` is built over when the message no longer has it: the bot's kinds only."""
    if component_type == discord.ComponentType.button.value:
        return discord.ui.Button(custom_id=custom_id)
    if component_type == discord.ComponentType.string_select.value:
        return discord.ui.Select(custom_id=custom_id)
    return None


async def send_ephemeral(interaction: discord.Interaction[Any], message: str) -> None:
    """Answer ephemerally, whether or not the interaction was answered already.

    The text is fitted to Discord's limits here: Discord refuses a longer one, and
    a refused answer leaves the member with "The application did not respond".
    """
    content = fit_content(message.strip()) or "Sorry, that did not work."
    try:
        if interaction.response.is_done():
            await interaction.followup.send(content, ephemeral=True)
        else:
            await interaction.response.send_message(content, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not tell the user: %s", content, exc_info=True)


_OPTION_DEFAULTS = {"required": False, "autocomplete": False}
_COMPARED_OPTION_KEYS = (
    "type",
    "name",
    "description",
    "required",
    "autocomplete",
    "min_value",
    "max_value",
    "min_length",
    "max_length",
)


async def log_in(bot: LatentcordBot, token: str, settings: Settings) -> None:
    """``bot.login`` (which also runs ``setup_hook``), with its failures to reach Discord as sentences.

    Only errors raised before Discord has said who the bot is are login failures;
    a later one (a command sync Discord refuses, say) is a bug and keeps its traceback.
    """
    with _login_failures_as_sentences(settings, logged_in=lambda: bot.user is not None):
        await bot.login(token)


async def choose_shard_count(token: str, settings: Settings) -> int | None:
    """How many shards to connect with: SHARD_COUNT, else Discord's recommendation when above one.

    None means one plain connection (``LatentcordBot``), as for every bot in fewer
    than some thousand guilds; a number means ``ShardedLatentcordBot`` with that many.
    """
    if settings.shard_count is not None:
        return settings.shard_count
    recommended = await recommended_shard_count(token, settings)
    return recommended if recommended > 1 else None


async def recommended_shard_count(token: str, settings: Settings) -> int:
    """The number of shards Discord recommends for this bot (``GET /gateway/bot``).

    The bot's class depends on the answer, so it is asked before the bot exists, by a
    short-lived HTTP client of discord.py's that logs in with the same token; a token
    Discord refuses or a Discord out of reach is the same sentence :func:`log_in` gives.
    When Discord logs the bot in but does not answer this, it is one shard, as before.
    """
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        with _login_failures_as_sentences(settings, logged_in=lambda: False):  # only the login is inside
            await http.static_login(token)
        try:
            recommended, _url, _limits = await http.get_bot_gateway()
        except (discord.GatewayNotFound, aiohttp.ClientError, TimeoutError):
            log.warning("Discord did not say how many shards to use (GET /gateway/bot failed); using one")
            return 1
    finally:
        await http.close()
    return max(1, int(recommended))


@contextlib.contextmanager
def _login_failures_as_sentences(settings: Settings, *, logged_in: Callable[[], bool]) -> Iterator[None]:
    """Turn a failed login (a refused token, Discord out of reach) into ``DiscordLoginFailed``.

    ``logged_in`` tells whether Discord had accepted the token when the error came;
    an error after that is not a login failure and is raised as it is.
    """
    api_url = discord.http.Route.BASE
    try:
        yield
    except discord.LoginFailure:
        raise DiscordLoginFailed(
            "Discord refused the token in DISCORD_TOKEN; copy the bot token again from the Developer Portal "
            "(https://discord.com/developers/applications, your application > Bot > Reset Token)."
        ) from None
    except (aiohttp.ClientError, TimeoutError) as error:
        if logged_in():
            raise
        check = "the network or DISCORD_API_URL" if settings.discord_api_url else "this machine's network connection"
        raise DiscordLoginFailed(
            f"cannot reach Discord at {api_url} ({_connection_failure_reason(error)}); check {check}."
        ) from None
    except discord.HTTPException as error:
        if logged_in():
            raise
        detail = f"HTTP {error.status}" + (f": {error.text}" if error.text else "")
        raise DiscordLoginFailed(
            f"Discord at {api_url} did not let the bot log in ({detail}); try again later, "
            "or check DISCORD_API_URL if it is set."
        ) from None


def _connection_failure_reason(error: BaseException) -> str:
    """What the operating system said, in its words ("Connection refused"), not aiohttp's repr."""
    if isinstance(error, TimeoutError):
        return "timed out"
    cause = getattr(error, "os_error", None)
    if isinstance(cause, socket.gaierror) and cause.strerror:
        return cause.strerror  # "Name or service not known"; its errno is not one os.strerror knows
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)
    return str(error) or error.__class__.__name__


def point_discord_at(api_url: str | None, gateway_url: str | None) -> None:
    """Talk to a Discord-compatible server instead of Discord (DISCORD_API_URL / DISCORD_GATEWAY_URL).

    discord.py reads these class attributes whenever it builds a route or connects.
    """
    import discord.gateway
    import discord.http
    import yarl

    if api_url:
        discord.http.Route.BASE = api_url
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def _canonical(commands_payload: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What of a command Discord keeps that we define, in a form both sides agree on."""

    def option(payload: Mapping[str, Any]) -> dict[str, Any]:
        result = {key: payload.get(key, _OPTION_DEFAULTS.get(key)) for key in _COMPARED_OPTION_KEYS}
        result["choices"] = [(c["name"], c["value"]) for c in payload.get("choices") or []]
        result["channel_types"] = sorted(payload.get("channel_types") or [])
        result["options"] = [option(child) for child in payload.get("options") or []]
        return result

    def command(payload: Mapping[str, Any]) -> dict[str, Any]:
        permissions = payload.get("default_member_permissions")
        return {
            "name": payload["name"],
            "type": payload.get("type", 1),
            "description": payload.get("description", ""),
            "default_member_permissions": None if permissions is None else str(permissions),
            "nsfw": bool(payload.get("nsfw", False)),
            "contexts": sorted(payload.get("contexts") or []),
            "options": [option(child) for child in payload.get("options") or []],
        }

    return sorted((command(payload) for payload in commands_payload), key=lambda c: (c["type"], c["name"]))


Bot = LatentcordBot  # the name DESIGN.md and STYLE.md use
