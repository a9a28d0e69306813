"""A finished, charged result reaches the member or is refunded, and they are told: through the loopback Discord.

Discord failing is simulated with 503s on the channel's message route (discord.py gives up on a 503
at once, where it would retry a 500 for 25 s itself), and with the interaction token aged past its
life, so the result has to go through that route.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bot.settings import Settings
from models.engine import DiffusionEngine
from tests import discord_bot_helpers
from tests.discord_bot_helpers import Clock, imagine, running_bot
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup
from tests.helpers import has_grid

# The shared fixtures, re-exported so pytest finds them here.
settings = discord_bot_helpers.settings

TOKEN_LIFE_S = 15 * 60


async def one_small_job(fake: FakeDiscord, world: GuildSetup) -> None:
    """One single-image /imagine, admitted (answered) before the test goes on."""
    ix = await imagine(fake, world, seed=5, count=1, steps=2)
    await ix.wait_for_response(timeout=3)


def job_id_of(grid) -> int:
    return int(grid.button(label="U1")["custom_id"].split(":")[2])


async def delivered(core, job_id: int):
    """The job once SQLite says its result was delivered (the post lands a moment before that is written)."""
    for _ in range(600):  # bounded: at most about a minute
        job = await core.store.get_job(job_id)
        if job is not None and job.delivery == "delivered":
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} was never recorded as delivered")


def aged_clock() -> Clock:
    """A clock past the interaction token's life, so results go to the channel with the bot token."""
    clock = Clock()
    clock.offset = TOKEN_LIFE_S
    return clock


def fail_channel_posts(fake: FakeDiscord, world: GuildSetup, times: int):
    return fake.inject_fault(
        rf"^/channels/{world.text_channel.id}/messages$",
        method="POST",
        status=503,
        message="Service Unavailable",
        times=times,
    )


async def test_a_result_is_posted_once_discord_recovers_and_charged_once(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    clock = aged_clock()
    patient = replace(settings, delivery_first_retry_s=0.2, delivery_give_up_s=120.0)
    fault = fail_channel_posts(fake_discord, world, times=3)
    async with running_bot(fake_discord, patient, tiny_engine, clock=clock) as (bot, core):
        await one_small_job(fake_discord, world)
        grid = await fake_discord.wait_for_message(world.text_channel, has_grid, timeout=120)
        job = await delivered(core, job_id_of(grid))
        usage = await core.store.usage(world.guild.id, world.member.user.id)
    assert job.result_message_id == grid.id and fault.remaining == 0
    assert job.delivery_attempts == 3
    grids = [m for m in fake_discord.channel_messages(world.text_channel) if has_grid(m)]
    assert len(grids) == 1
    assert usage.used == job.cost == 1


async def test_a_result_discord_never_takes_is_refunded_and_the_member_is_told(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    clock = aged_clock()
    hopeless = replace(settings, delivery_first_retry_s=0.2, delivery_give_up_s=1.0)
    fail_channel_posts(fake_discord, world, times=10_000)
    async with running_bot(fake_discord, hopeless, tiny_engine, clock=clock) as (bot, core):
        await one_small_job(fake_discord, world)
        dm = fake_discord.dm_channel(world.member)
        notice = await fake_discord.wait_for_message(dm, lambda m: "refunded" in m.content, timeout=120)
        usage = await core.store.usage(world.guild.id, world.member.user.id)
        jobs = await core.store.pending_deliveries()
    assert "Your images were made, but Discord would not let me post them" in notice.content
    assert "1 credit(s) were refunded" in notice.content
    assert usage.used == 0
    assert jobs == []
    assert not [m for m in fake_discord.channel_messages(world.text_channel) if has_grid(m)]
    assert len([m for m in fake_discord.channel_messages(dm) if "refunded" in m.content]) == 1


async def test_a_result_left_unposted_by_a_restart_is_posted_after_it(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    clock = aged_clock()
    patient = replace(settings, delivery_first_retry_s=0.2, delivery_give_up_s=600.0)
    fault = fail_channel_posts(fake_discord, world, times=10_000)
    async with running_bot(fake_discord, patient, tiny_engine, clock=clock) as (bot, core):
        await one_small_job(fake_discord, world)

        async def tried_twice() -> bool:
            pending = await core.store.pending_deliveries()
            return bool(pending) and pending[0].delivery_attempts >= 2

        for _ in range(1200):  # bounded: at most about two minutes
            if await tried_twice():
                break
            await asyncio.sleep(0.1)
        assert await tried_twice()
    fault.remaining = 0  # Discord is back
    async with running_bot(fake_discord, patient, tiny_engine, clock=clock) as (bot, core):
        grid = await fake_discord.wait_for_message(world.text_channel, has_grid, timeout=120)
        job = await delivered(core, job_id_of(grid))
        usage = await core.store.usage(world.guild.id, world.member.user.id)
    assert job.delivery == "delivered" and job.result_message_id == grid.id
    assert usage.used == 1
    assert len([m for m in fake_discord.channel_messages(world.text_channel) if has_grid(m)]) == 1
