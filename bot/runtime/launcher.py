"""``python -m bot``: the composition root of the Discord bot.

Settings are read once, the database is opened (and migrated), the model is loaded
and the worker started before connecting, so the first ``/imagine`` does not wait
for a checkpoint to load. With ``REDIS_URL`` the workers are ``python -m bot worker``
processes on any host, started in any order: the bot connects at once, without
waiting for one, and jobs wait in its queue until one is online. SIGTERM and Ctrl-C
close the bot cleanly: no new jobs, the running batch finishes, the queue stays in
SQLite for the next start.

The bot is one gateway connection unless SHARD_COUNT is set or Discord's
``GET /gateway/bot`` recommends more than one shard; then it is discord.py's
``AutoShardedBot`` with that many (``bot.app.ShardedLatentcordBot``).

A login that fails (a token Discord refuses, Discord out of reach) ends start-up
with one sentence and exit code 2, as do, with COMMERCIAL_USE on, configured models
whose licence forbids commercial use or is unknown: a sentence each, before anything
connects, loads or starts (``REDIS_URL`` or not). Once logged in, a dropped
connection is discord.py's to retry, with backoff, as ever.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from bot.errors import USER_FACING_ERRORS, DiscordLoginFailed
from bot.observability.server import PortUnavailable
from bot.runtime.core import Core, open_core
from bot.runtime.worker import refused_by_licence
from bot.settings import Settings, SettingsError
from bot.workers.streams import BrokerUnreachable, redacted
from db.errors import StoreError

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)


async def build_bot(settings: Settings, token: str, core: Core) -> LatentcordBot:
    """The bot over the core: sharded when SHARD_COUNT is set or Discord recommends more than one shard."""
    from bot.app import LatentcordBot, ShardedLatentcordBot, choose_shard_count

    shard_count = await choose_shard_count(token, settings)
    bot_class = LatentcordBot if shard_count is None else ShardedLatentcordBot
    if shard_count is not None:
        source = "SHARD_COUNT" if settings.shard_count is not None else "Discord's recommendation"
        log.info("connecting with %d shard(s) (%s)", shard_count, source)
    return bot_class(
        settings=settings, store=core.store, worker=core.worker, service=core.service, shard_count=shard_count
    )


async def serve(settings: Settings, token: str) -> None:
    from bot.app import log_in, point_discord_at  # imports discord; the command line does not need it

    point_discord_at(settings.discord_api_url, settings.discord_gateway_url)

    async with open_core(settings) as core:
        if settings.redis_url is None:
            log.info("loading %s", settings.sd_model)
            await core.worker.preset(settings.sd_model)  # this bot's own worker processes load it
        else:  # workers on other hosts come when they come; jobs wait for them in the queue
            log.info("taking jobs for the workers that read %s, online or not", redacted(settings.redis_url))
        bot = await build_bot(settings, token, core)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, lambda: asyncio.ensure_future(bot.close()))
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread / Windows
                pass
        async with bot:
            # ``bot.start`` is ``login`` + ``connect``; apart, a failed login can be told from a dropped connection.
            await log_in(bot, token, settings)
            await bot.connect(reconnect=True)


# Failures the owner can act on: one sentence and exit 2, no traceback.
_REPORTED: tuple[type[Exception], ...] = (
    StoreError,
    DiscordLoginFailed,
    BrokerUnreachable,
    PortUnavailable,
    *USER_FACING_ERRORS,
)


def run_bot(settings: Settings) -> int:
    if refused_by_licence(settings):
        return 2
    try:
        token = settings.require_token()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings, token))
    except _REPORTED as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
