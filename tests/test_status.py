"""/queue, /stats, /help, the presence line and the ⭐ counts, through the real bot and the fake Discord.

Also the ``latentcord`` console script. The fixtures (``settings``, ``bot``) and helpers come from
``tests/discord_bot_helpers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.__main__ import main
from bot.errors import InvalidRequest
from bot.jobs.messages import (
    EMBED_DESCRIPTION_LIMIT,
    EMBED_FIELD_NAME_LIMIT,
    EMBED_FIELD_VALUE_LIMIT,
    EMBED_FIELDS_LIMIT,
    EMBED_TITLE_LIMIT,
    EMBED_TOTAL_LIMIT,
)
from bot.jobs.options import STEPS
from db.records import FineTune
from models.tiny import TINY_MODEL_ID
from tests import discord_bot_helpers
from tests.discord_bot_helpers import Clock, finished_grid, imagine, running_bot
from tests.fakediscord import FakeDiscord
from tests.fakediscord.gateway import INTENT_GUILD_MESSAGE_REACTIONS
from tests.fakediscord.server import GuildSetup
from tests.recipes import a_new_job

settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot

REPO = Path(__file__).resolve().parent.parent


def embed_size(embed: dict[str, Any]) -> int:
    fields = embed.get("fields") or []
    return (
        len(embed.get("title") or "")
        + len(embed.get("description") or "")
        + sum(len(f["name"]) + len(f["value"]) for f in fields)
    )


async def eventually(check, timeout: float = 60.0):  # generous: CI is a busy 2-core machine
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.05)
    return found


async def until(predicate, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_queue_and_stats_tell_a_known_set_of_jobs(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    the_bot, core = bot
    guild_id = world.guild.id
    await the_bot.moderation.add_style(guild_id, "noir", "{prompt}, film noir", "", actor_id=world.owner.user.id)

    # 1. A known set: two finished jobs of 4 images, one of them in the style "noir"; then one ⭐ on the styled one.
    plain = await finished_grid(await imagine(fake_discord, world, seed=1))
    styled_ix = await imagine(fake_discord, world, seed=2, style="noir")
    styled = await finished_grid(styled_ix)
    styled_job = int(styled.button(label="U1")["custom_id"].split(":")[2])
    plain_job = int(plain.button(label="U1")["custom_id"].split(":")[2])

    async def delivered() -> bool:
        job = await core.service.job(styled_job)
        return job is not None and job.result_message_id == styled.id

    await eventually(delivered)
    await fake_discord.react(styled, "⭐", user=world.member)
    cog = the_bot.get_cog("Status")

    async def starred() -> bool:
        return bool((await cog.stats.guild_stats(guild_id)).starred)

    await eventually(starred)

    # 2. /stats, as a member: public, the numbers of those two jobs.
    ix = await fake_discord.run_slash("stats", {}, user=world.member, channel=world.text_channel)
    response = await ix.wait_for_response(timeout=10)
    assert not response.ephemeral
    embed = response.data["embeds"][0]
    assert embed["title"] == f"Latentcord on {world.guild.name}"
    assert embed["description"] == "Images made: 8 today, 8 this week, 8 in all (days and weeks in UTC)."
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    hour = dt.datetime.now(dt.UTC).strftime("%H")
    assert fields["Most used models"] == f"1. {TINY_MODEL_ID} — 2 jobs"
    assert fields["Most used styles"] == "1. noir — 1 job"
    assert fields["Most used LoRAs"] == "none yet"
    assert fields["Busiest hours (UTC)"] in (f"1. {hour}:00 — 2 jobs", "1. 00:00 — 2 jobs")  # midnight's edge
    link = f"https://discord.com/channels/{guild_id}/{world.text_channel.id}/{styled.id}"
    assert fields["Most ⭐-starred results"] == f"1. [job {styled_job}]({link}) — 1 ⭐"
    await asyncio.sleep(0.5)
    assert not ix.followups  # members are not shown who used the most credits

    # 3. /stats, as a moderator: the same, and the top members by credits ephemerally.
    ix = await fake_discord.run_slash("stats", {}, user=world.moderator, channel=world.text_channel)
    assert not (await ix.wait_for_response(timeout=10)).ephemeral
    followup = await ix.wait_for_followup(timeout=10)
    spent = sum([(await core.service.job(job)).cost for job in (plain_job, styled_job)])
    assert followup.flags & 64  # ephemeral
    assert followup.content == (
        f"Top members by credits used (charges less refunds, in all):\n1. <@{world.member.user.id}> — {spent} credits"
    )

    # 4. The ⭐ taken away again (the remove event names no author): the result is no longer listed.
    fake_discord.gateway.broadcast(
        "MESSAGE_REACTION_REMOVE",
        {
            "user_id": str(world.member.user.id),
            "channel_id": str(styled.channel_id),
            "message_id": str(styled.id),
            "guild_id": str(guild_id),
            "emoji": {"id": None, "name": "⭐"},
            "burst": False,
            "type": 0,
        },
        intent=INTENT_GUILD_MESSAGE_REACTIONS,
    )

    async def unstarred() -> bool:
        return not (await cog.stats.guild_stats(guild_id)).starred

    await eventually(unstarred)

    # 5. /queue with nothing waiting: the counts, and a measured wait of nothing.
    ix = await fake_discord.run_slash("queue", {}, user=world.member, channel=world.text_channel)
    response = await ix.wait_for_response(timeout=10)
    assert response.ephemeral
    assert response.content == (
        "On this server: 0 waiting, 0 running.\n"
        "On all servers: 0 waiting, 0 running.\n"
        "You have no jobs in the queue.\n"
        "A job asked for now would start at once."
    )

    # 6. /queue while one of the member's jobs runs and another waits behind it (different steps: not batched).
    long_ix = await imagine(fake_discord, world, seed=3, steps=STEPS.high)
    await long_ix.wait_for_response(timeout=10)
    short_ix = await imagine(fake_discord, world, seed=4, steps=2)
    await short_ix.wait_for_response(timeout=10)
    # The long one starts; the short one waits behind it.
    await until(lambda: [job.position for job in core.service.waiting_jobs(world.member.user.id)] == [0, 1])
    waiting = core.service.waiting_jobs(world.member.user.id)
    ix = await fake_discord.run_slash("queue", {}, user=world.member, channel=world.text_channel)
    lines = (await ix.wait_for_response(timeout=10)).content.splitlines()
    assert lines[0] == "On this server: 1 waiting, 1 running."
    assert lines[1] == "On all servers: 1 waiting, 1 running."
    assert lines[2] == "Your jobs:"
    assert lines[3] == f"• job {waiting[0].job_id}: running now"
    assert lines[4].startswith(f"• job {waiting[1].job_id}: position 1, starts in about ")
    assert lines[5].startswith("A job asked for now would start in about ")
    for job in waiting:
        await core.service.cancel(job.job_id, actor_id=world.member.user.id)


async def test_help_fits_one_embed_with_thirty_loras_and_thirty_styles(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    the_bot, core = bot
    guild_id, owner = world.guild.id, world.owner.user.id
    for n in range(30):
        await the_bot.moderation.add_style(
            guild_id, f"style-{n:02d}-{'x' * 23}", "{prompt}, " + "y" * 200, "", actor_id=owner
        )
        lora = FineTune(guild_id, f"lora-{n:02d}-{'z' * 24}", "lora", f"{n:064x}", "sd1")
        await core.store.add_fine_tune(lora, size_bytes=1, actor_id=owner)

    ix = await fake_discord.run_slash("help", {}, user=world.member, channel=world.text_channel)
    response = await ix.wait_for_response(timeout=10)
    assert response.ephemeral
    embeds = response.data["embeds"]
    assert len(embeds) == 1
    embed = embeds[0]
    fields = embed["fields"]
    assert len(embed["title"]) <= EMBED_TITLE_LIMIT and len(embed.get("description", "")) <= EMBED_DESCRIPTION_LIMIT
    assert len(fields) <= EMBED_FIELDS_LIMIT
    assert all(len(f["name"]) <= EMBED_FIELD_NAME_LIMIT and len(f["value"]) <= EMBED_FIELD_VALUE_LIMIT for f in fields)
    assert embed_size(embed) <= EMBED_TOTAL_LIMIT
    named = {field["name"]: field["value"] for field in fields}
    assert named["Models"] == f"`{TINY_MODEL_ID}`"
    for name, prefix in (("Styles", "`style-00-"), ("LoRAs", "`lora-00-")):
        listed, _, more = named[name].rpartition(", and ")
        assert listed.startswith(prefix) and more.endswith(" more"), named[name]
        assert listed.count("`") // 2 + int(more.removesuffix(" more")) == 30  # every one named or counted
    assert named["Your credits"] == "0 of 100 credits used in the last 24 hours; 100 left."
    assert named["NSFW in this channel"].startswith("Not allowed: this server blocks NSFW everywhere.")
    commands = "\n".join(value for name, value in named.items() if "ommands" in name)
    for command in ("imagine", "queue", "stats", "help", "usage"):
        assert f"`/{command}" in commands, commands
    assert all(" — " in line for line in commands.splitlines())  # one line each, with what it does


async def test_presence_shows_the_queue_at_most_once_per_thirty_seconds(
    fake_discord: FakeDiscord, world: GuildSetup, settings, tiny_engine
) -> None:
    clock = Clock()
    async with running_bot(fake_discord, settings, tiny_engine, clock=clock) as (the_bot, core):
        cog = the_bot.get_cog("Status")
        cog.update_presence.change_interval(seconds=0.05)  # look often: the bound is the cog's, by its clock
        session = next(iter(fake_discord.gateway.sessions.values()))

        def updates() -> int:
            return session.received_ops.count(3)  # PRESENCE_UPDATE, as the fake Discord received them

        def shown() -> str | None:
            return session.presence["activities"][0]["name"] if session.presence else None

        await until(lambda: shown() == "0 in queue · /imagine")
        first_at = clock()
        assert updates() == 1

        # 1. Ten changes of the queue (ten admissions, jobs long enough to keep waiting) in one window of the clock.
        for n in range(10):
            ix = await imagine(
                fake_discord, world, user=(world.member, world.moderator)[n % 2], seed=n, steps=STEPS.high
            )
            assert not (await ix.wait_for_response(timeout=10)).ephemeral
        await asyncio.sleep(0.5)
        assert updates() <= 1 + int((clock() - first_at) // 30)  # at most one update per 30 s of the bot's clock
        waiting = core.worker.queued_count
        assert waiting >= 1

        # 2. Thirty seconds on, the queue is shown as it is then, in one update.
        before = updates()
        clock.offset += 31
        await until(lambda: updates() > before)
        assert updates() == before + 1
        assert shown() is not None and shown().endswith(" in queue · /imagine") and shown() != "0 in queue · /imagine"
        assert session.presence["activities"][0]["type"] == 3  # Watching
        second_at = clock()

        # 3. The queue empties (every job cancelled) within the window: nothing is sent until it has passed.
        for user in (world.member, world.moderator):
            for job in core.service.waiting_jobs(user.user.id):
                with contextlib.suppress(InvalidRequest):  # one that finished since it was listed: nothing to cancel
                    await core.service.cancel(job.job_id, actor_id=user.user.id)
        await until(lambda: core.worker.queued_count == 0 and not core.service.waiting_jobs(world.member.user.id))
        await asyncio.sleep(0.5)
        assert updates() <= before + 1 + int((clock() - second_at) // 30)
        clock.offset += 31
        await until(lambda: shown() == "0 in queue · /imagine")


def test_the_console_script_is_python_m_bot(capsys: pytest.CaptureFixture[str]) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["latentcord"] == "bot.__main__:main"
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "imagine" in capsys.readouterr().out


async def test_the_store_ranks_loras_by_name_and_counts_unfinished_jobs_by_guild(store) -> None:
    """The parts of /stats and /queue the Discord test cannot reach cheaply: LoRAs, other guilds, batch times."""
    sha = "a" * 64
    lora_jobs = [
        a_new_job(guild_id=10, loras=(f"ink:0.8:{sha}", f"chalk:1.0:{sha}")),
        a_new_job(guild_id=10, loras=(f"ink:0.5:{sha}",)),
        a_new_job(guild_id=11, loras=(f"chalk:1.0:{sha}",)),  # another guild's
    ]
    admitted = [await store.admit_job(job, limit=None) for job in lora_jobs]
    for job, seconds in zip(admitted, (2.0, 4.0, 6.0), strict=True):
        await store.mark_running(job.id)
        await store.mark_done(job.id, image_paths=["1.png", "2.png"], withheld=[], timings={"generation_s": seconds})
    waiting_here = await store.admit_job(a_new_job(guild_id=10), limit=None)
    await store.admit_job(a_new_job(guild_id=11), limit=None)
    await store.mark_running(waiting_here.id)

    stats = await store.guild_stats(10, day_start=0.0, week_start=0.0, top=5)
    assert [(item.name, item.count) for item in stats.loras] == [("ink", 2), ("chalk", 1)]
    assert (stats.images_today, stats.images_all) == (4, 4)
    counts = await store.queue_counts(10)
    assert (counts.guild_waiting, counts.guild_running, counts.all_waiting, counts.all_running) == (0, 1, 1, 1)
    assert [batch.generation_s for batch in await store.recent_batch_times(2)] == [4.0, 6.0]
