"""``python -m bot``: the composition root of the Discord bot.

Settings are read once, the database is opened (and migrated), the model is loaded
and the worker started before connecting, so the first ``/imagine`` does not wait
for a checkpoint to load. SIGTERM and Ctrl-C close the bot cleanly: no new jobs,
the running batch finishes, the queue stays in SQLite for the next start.

A login that fails (a token Discord refuses, Discord out of reach) ends start-up
with one sentence and exit code 2. Once logged in, a dropped connection is
discord.py's to retry, with backoff, as ever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

from bot.core import open_core
from bot.errors import USER_FACING_ERRORS
from bot.settings import Settings, SettingsError
from db.errors import StoreError

if TYPE_CHECKING:
    from bot.app import LatentcordBot

log = logging.getLogger(__name__)


class DiscordLoginFailed(Exception):
    """Logging in to Discord failed; the message says what the owner should check."""


async def serve(settings: Settings, token: str) -> None:
    from bot.app import LatentcordBot, point_discord_at  # imports discord; the command line does not need it

    point_discord_at(settings.discord_api_url, settings.discord_gateway_url)

    async with open_core(settings) as core:
        log.info("loading %s", settings.sd_model)
        await core.worker.preset(settings.sd_model)
        bot = LatentcordBot(settings=settings, store=core.store, worker=core.worker, service=core.service)
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


async def log_in(bot: LatentcordBot, token: str, settings: Settings) -> None:
    """``bot.login`` (which also runs ``setup_hook``), with its failures to reach Discord as sentences.

    Only errors raised before Discord has said who the bot is are login failures;
    a later one (a command sync Discord refuses, say) is a bug and keeps its traceback.
    """
    import aiohttp
    import discord

    api_url = discord.http.Route.BASE
    try:
        await bot.login(token)
    except discord.LoginFailure:
        raise DiscordLoginFailed(
            "Discord refused the token in DISCORD_TOKEN; copy the bot token again from the Developer Portal "
            "(https://discord.com/developers/applications, your application > Bot > Reset Token)."
        ) from None
    except (aiohttp.ClientError, TimeoutError) as error:
        if bot.user is not None:
            raise
        check = "the network or DISCORD_API_URL" if settings.discord_api_url else "this machine's network connection"
        raise DiscordLoginFailed(
            f"cannot reach Discord at {api_url} ({_connection_failure_reason(error)}); check {check}."
        ) from None
    except discord.HTTPException as error:
        if bot.user is not None:
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


def run_bot(settings: Settings) -> int:
    try:
        token = settings.require_token()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings, token))
    except (StoreError, DiscordLoginFailed, *USER_FACING_ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
