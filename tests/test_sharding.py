"""Sharding: one gateway connection by default, discord.py's AutoShardedBot when SHARD_COUNT or Discord asks.

The bot is built as ``python -m bot`` builds it (:func:`bot.runtime.launcher.build_bot`: SHARD_COUNT,
else ``GET /gateway/bot``'s recommendation) and runs against the fake Discord, which routes each
guild's events and interactions only through the shard that owns the guild, as Discord does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import discord
import pytest
from discord.ext import commands

from bot.__main__ import main
from bot.app import LatentcordBot, ShardedLatentcordBot
from bot.runtime.core import open_core
from bot.runtime.launcher import build_bot
from bot.settings import Settings
from models.engine import DiffusionEngine
from tests.fakediscord import FakeDiscord
from tests.fakediscord.fixtures import ClientStartupError, running_client
from tests.fakediscord.gateway import CLOSE_INVALID_SHARD, GatewaySession, shard_of
from tests.fakediscord.interactions import InteractionRecord
from tests.fakediscord.server import GuildSetup
from tests.helpers import NoNsfw, has_grid, tiny_settings

TOKEN = "fake-bot-token"
# Generous: CI is a busy 2-core machine, and discord.py waits 5 s before identifying each further shard.
READY_TIMEOUT_S = 90
GRID_TIMEOUT_S = 120


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return tiny_settings(tmp_path, discord_token=TOKEN, preview_interval_s=0.0)


@asynccontextmanager
async def launched_bot(fake: FakeDiscord, settings: Settings, engine: DiffusionEngine) -> AsyncIterator[LatentcordBot]:
    """The bot as the launcher builds it, over a core on the shared tiny model, connected to ``fake``."""
    async with open_core(settings, engine=engine, classifier=NoNsfw()) as core:
        bot = await build_bot(settings, TOKEN, core)
        async with running_client(bot, fake, token=TOKEN, ready_timeout=READY_TIMEOUT_S):
            yield bot


def guilds_on_every_shard(fake: FakeDiscord, num_shards: int) -> dict[int, GuildSetup]:
    """Standard guilds until each shard owns one (a guild's shard comes from its id's timestamp)."""
    by_shard: dict[int, GuildSetup] = {}
    for number in range(100):
        setup = fake.add_standard_guild(f"Server {number}")
        by_shard.setdefault(shard_of(setup.guild.id, num_shards), setup)
        if len(by_shard) == num_shards:
            return by_shard
        fake.clock.advance(0.001)  # the next guild's id a millisecond later: most likely the other shard
    raise AssertionError(f"no guild landed on every one of {num_shards} shards")


def went_through(session: GatewaySession, interaction: InteractionRecord) -> bool:
    return any(
        payload["t"] == "INTERACTION_CREATE" and payload["d"]["id"] == str(interaction.id)
        for payload in session.history
    )


def guilds_created_on(session: GatewaySession) -> set[int]:
    return {int(payload["d"]["id"]) for payload in session.history if payload["t"] == "GUILD_CREATE"}


async def imagine(fake: FakeDiscord, world: GuildSetup, prompt: str) -> InteractionRecord:
    options = {"prompt": prompt, "steps": 2, "count": 1}
    return await fake.run_slash("imagine", options, user=world.member, channel=world.text_channel)


async def test_without_shard_count_and_a_recommendation_of_one_the_bot_is_one_plain_connection(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    assert settings.shard_count is None and fake_discord.recommended_shards == 1
    async with launched_bot(fake_discord, settings, tiny_engine) as bot:
        assert type(bot) is LatentcordBot
        assert not isinstance(bot, commands.AutoShardedBot)
        assert len(fake_discord.calls_to("GET", "/gateway/bot")) == 1  # it asked Discord
        [session] = fake_discord.gateway.sessions.values()
        assert session.shard is None  # a plain IDENTIFY, as before sharding existed
        ix = await imagine(fake_discord, world, "a red fox")
        assert not (await ix.wait_for_response(timeout=10)).ephemeral
        await ix.wait_for_message(has_grid, timeout=GRID_TIMEOUT_S)


async def test_shard_count_two_identifies_two_shards_and_imagine_works_through_either(
    fake_discord: FakeDiscord, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    worlds = guilds_on_every_shard(fake_discord, 2)
    async with launched_bot(fake_discord, replace(settings, shard_count=2), tiny_engine) as bot:
        assert isinstance(bot, ShardedLatentcordBot) and isinstance(bot, commands.AutoShardedBot)
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        assert fake_discord.calls_to("GET", "/gateway/bot") == []  # SHARD_COUNT wins: Discord is not asked
        sessions = fake_discord.gateway.sharded()
        assert [session.shard for session in sessions] == [[0, 2], [1, 2]]
        for shard_id, world in worlds.items():
            # Each shard was sent its own guild only, and the bot knows both.
            assert world.guild.id in guilds_created_on(sessions[shard_id])
            assert world.guild.id not in guilds_created_on(sessions[1 - shard_id])
            guild = bot.get_guild(world.guild.id)
            assert guild is not None and guild.shard_id == shard_id
        interactions = {
            shard_id: await imagine(fake_discord, world, f"a fox seen by shard {shard_id}")
            for shard_id, world in worlds.items()
        }
        for shard_id, ix in interactions.items():
            assert went_through(sessions[shard_id], ix) and not went_through(sessions[1 - shard_id], ix)
            assert not (await ix.wait_for_response(timeout=10)).ephemeral
        for ix in interactions.values():
            await ix.wait_for_message(has_grid, timeout=GRID_TIMEOUT_S)


async def test_a_recommendation_of_two_shards_makes_the_bot_shard_without_shard_count(
    fake_discord: FakeDiscord, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    fake_discord.recommended_shards = 2
    worlds = guilds_on_every_shard(fake_discord, 2)
    async with launched_bot(fake_discord, settings, tiny_engine) as bot:
        assert isinstance(bot, ShardedLatentcordBot)
        assert bot.shard_count == 2
        assert len(fake_discord.calls_to("GET", "/gateway/bot")) == 1
        sessions = fake_discord.gateway.sharded()
        assert [session.shard for session in sessions] == [[0, 2], [1, 2]]
        ix = await imagine(fake_discord, worlds[1], "a fox on the second shard")
        assert went_through(sessions[1], ix)
        assert not (await ix.wait_for_response(timeout=10)).ephemeral


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_shard_count_is_refused_with_one_sentence(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the machine running the tests
    monkeypatch.setenv("SHARD_COUNT", value)
    assert main([]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"error: SHARD_COUNT={value!r} is invalid: it accepts a whole number of 1 or more."]


def test_shard_count_is_read_from_the_environment() -> None:
    assert Settings.from_env({}, env_file=None).shard_count is None
    assert Settings.from_env({"SHARD_COUNT": " 3 "}, env_file=None).shard_count == 3


async def test_the_fake_closes_an_identify_with_an_invalid_shard_with_4010(fake_discord: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.none(), shard_id=2, shard_count=2)
    with pytest.raises(ClientStartupError) as failure:
        async with running_client(client, fake_discord, ready_timeout=READY_TIMEOUT_S):
            pass
    error = failure.value.__cause__
    assert isinstance(error, discord.ConnectionClosed) and error.code == CLOSE_INVALID_SHARD
    assert fake_discord.gateway.sessions == {}
