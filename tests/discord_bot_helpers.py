"""The real bot against the fake Discord: the fixtures and helpers the Discord test modules share.

A test module that uses the fixtures re-exports them (``settings = discord_bot_helpers.settings``,
and ``bot`` likewise, which needs ``settings`` too), since pytest looks for fixtures among a
module's names; they are not in ``tests/conftest.py``, so that a bot that does not import stops
only the tests that run it. ``tests/conftest.py`` has pytest rewrite the asserts here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.app import LatentcordBot
from bot.runtime.core import Core, open_core
from bot.settings import Settings
from models.engine import DiffusionEngine
from tests.fakediscord import FakeDiscord
from tests.fakediscord.fixtures import running_client
from tests.fakediscord.models import StoredMessage
from tests.fakediscord.server import GuildSetup
from tests.helpers import NoNsfw, has_grid, tiny_settings


class Clock:
    """Wall-clock time that a test can move forward, to age interaction tokens."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return tiny_settings(tmp_path, discord_token="fake-bot-token", daily_credits=100, preview_interval_s=0.0)


@asynccontextmanager
async def running_bot(
    fake: FakeDiscord,
    settings: Settings,
    engine: DiffusionEngine,
    *,
    classifier: NoNsfw | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[tuple[LatentcordBot, Core]]:
    async with open_core(settings, engine=engine, classifier=classifier or NoNsfw()) as core:
        bot = LatentcordBot(
            settings=settings, store=core.store, worker=core.worker, service=core.service, clock=clock or Clock()
        )
        async with running_client(bot, fake, token=settings.discord_token):
            yield bot, core


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> AsyncIterator[tuple[LatentcordBot, Core]]:
    async with running_bot(fake_discord, settings, tiny_engine) as running:
        yield running


async def imagine(fake: FakeDiscord, world: GuildSetup, user=None, channel=None, **options):
    options = {"prompt": "a red fox in snow", "steps": 3, **options}
    options = {name: value for name, value in options.items() if value is not None}
    return await fake.run_slash("imagine", options, user=user or world.member, channel=channel or world.text_channel)


async def finished_grid(ix, timeout: float = 180) -> StoredMessage:  # generous: CI is a busy 2-core machine
    return await ix.wait_for_message(has_grid, timeout=timeout)


async def press_and_wait(fake: FakeDiscord, message: StoredMessage, label: str, world: GuildSetup) -> StoredMessage:
    press = await fake.press_button(message, user=world.member, label=label)
    assert not (await press.wait_for_response(timeout=3)).ephemeral
    return await press.wait_for_message(has_grid, timeout=180)
