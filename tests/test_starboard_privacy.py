"""The starboard (/starboard and ⭐ reposts) and members' data (/privacy delete, /privacy export), through the
real bot and the loopback Discord.

The fixtures (``settings``, ``bot``) and helpers come from ``tests/discord_bot_helpers.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

from bot.images.archive import job_folder
from db.records import DELETED_PROMPT
from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine
from tests.fakediscord import FakeDiscord
from tests.fakediscord.gateway import INTENT_GUILD_MESSAGE_REACTIONS
from tests.fakediscord.server import GuildSetup
from tests.recipes import a_new_job

settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot


def job_id_of(grid) -> int:
    return int(grid.button(label="Delete")["custom_id"].split(":")[2])


async def delivered(core, job_id: int, message_id: int, fake: FakeDiscord) -> None:
    async def check() -> bool:
        job = await core.service.job(job_id)
        return job is not None and job.result_message_id == message_id

    async with asyncio.timeout(60):
        while not await check():
            await asyncio.sleep(0.05)


async def starboard_stars(core, job_id: int) -> int:
    rows = await core.store._read("SELECT COUNT(*) FROM starboard_stars WHERE job_id = ?", (job_id,))
    return int(rows[0][0])


async def until_stars(core, job_id: int, count: int) -> None:
    async with asyncio.timeout(30):
        while await starboard_stars(core, job_id) != count:
            await asyncio.sleep(0.05)


def unstar(fake: FakeDiscord, grid, user) -> None:
    """A ⭐ taken away: the remove event names no author, as Discord's does not."""
    fake.gateway.broadcast(
        "MESSAGE_REACTION_REMOVE",
        {
            "user_id": str(user.user.id),
            "channel_id": str(grid.channel_id),
            "message_id": str(grid.id),
            "guild_id": str(grid.guild_id),
            "emoji": {"id": None, "name": "⭐"},
            "burst": False,
            "type": 0,
        },
        intent=INTENT_GUILD_MESSAGE_REACTIONS,
    )


async def set_starboard(fake: FakeDiscord, world: GuildSetup, channel, threshold: int | None = None):
    options = {"channel": channel} if threshold is None else {"channel": channel, "threshold": threshold}
    ix = await fake.run_slash("starboard", options, user=world.moderator, channel=world.text_channel)
    return await ix.wait_for_response(timeout=10)


async def test_a_result_reaching_the_threshold_is_reposted_once_without_its_requesters_star(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    board = fake_discord.add_text_channel(world.guild, "starboard")
    fans = [fake_discord.add_member(world.guild, f"fan{n}") for n in range(3)]

    # 1. The setting: ephemeral, audited with the channel and the threshold.
    answer = await set_starboard(fake_discord, world, board, 2)
    assert answer.ephemeral and "reach 2 ⭐ stars" in answer.content and f"<#{board.id}>" in answer.content
    entry = (await core.store.audit_log(world.guild.id, 1))[0]
    assert (entry.action, entry.actor_id) == ("starboard", world.moderator.user.id)
    assert (entry.before, entry.after) == (None, f"<#{board.id}> at 2 ⭐")
    assert (await core.store.guild_settings(world.guild.id)).starboard_threshold == 2

    grid = await finished_grid(await imagine(fake_discord, world, seed=3))
    job_id = job_id_of(grid)
    await delivered(core, job_id, grid.id, fake_discord)

    # 2. The requester's own star and one other member's: one counted, below the threshold, nothing reposted.
    await fake_discord.react(grid, "⭐", user=world.member)
    await fake_discord.react(grid, "⭐", user=fans[0])
    await until_stars(core, job_id, 1)
    await asyncio.sleep(0.3)
    assert not fake_discord.channel_messages(board)

    # 3. A second member's star reaches it: one repost, with the grid and a link to the original.
    await fake_discord.react(grid, "⭐", user=fans[1])
    repost = await fake_discord.wait_until(
        lambda: next(iter(fake_discord.channel_messages(board)), None), timeout=30, what="the repost"
    )
    link = f"https://discord.com/channels/{world.guild.id}/{world.text_channel.id}/{grid.id}"
    assert link in repost.content and f"(job {job_id})" in repost.content and "**2**" in repost.content
    assert len(repost.attachments) == 1 and repost.attachments[0].data[:8] == b"\x89PNG\r\n\x1a\n"

    # 4. Stars taken away below the threshold keep the repost; given again, and a third, never repost.
    unstar(fake_discord, grid, fans[0])
    unstar(fake_discord, grid, fans[1])
    await until_stars(core, job_id, 0)
    assert not repost.deleted
    for fan in fans:
        await fake_discord.react(grid, "⭐", user=fan)
    await until_stars(core, job_id, 3)
    await asyncio.sleep(0.5)
    assert [m.id for m in fake_discord.channel_messages(board)] == [repost.id]
    assert await core.store.starboard_reposts(world.guild.id) == {job_id: repost.id}


async def test_a_result_made_where_nsfw_is_allowed_is_reposted_as_a_link_only_outside_age_restricted_channels(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    the_bot, core = bot
    await the_bot.moderation.set_nsfw_mode(world.guild.id, "age-restricted", actor_id=world.owner.user.id)
    board = fake_discord.add_text_channel(world.guild, "starboard")
    await set_starboard(fake_discord, world, board, 1)
    fan = fake_discord.add_member(world.guild, "fan")

    grid = await finished_grid(await imagine(fake_discord, world, channel=world.nsfw_channel, seed=4))
    job_id = job_id_of(grid)
    await delivered(core, job_id, grid.id, fake_discord)
    assert (await core.service.job(job_id)).nsfw_allowed

    await fake_discord.react(grid, "⭐", user=fan)
    repost = await fake_discord.wait_until(
        lambda: next(iter(fake_discord.channel_messages(board)), None), timeout=30, what="the repost"
    )
    link = f"https://discord.com/channels/{world.guild.id}/{world.nsfw_channel.id}/{grid.id}"
    assert link in repost.content and "not age-restricted" in repost.content
    assert not repost.attachments


async def test_privacy_delete_asks_first_then_deletes_files_prompts_and_preferences_and_audits_only_that(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    user_id = world.member.user.id
    modlog = await fake_discord.run_slash(
        "modlog", {"channel": world.log_channel}, user=world.moderator, channel=world.text_channel
    )
    await modlog.wait_for_response(timeout=10)
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a secret lighthouse", seed=5))
    job_id = job_id_of(grid)
    await delivered(core, job_id, grid.id, fake_discord)
    assert await core.service.toggle_remix(user_id)
    await core.service.set_default(user_id, "negative", "private words")
    folder = job_folder(Path(core.service.settings.images_dir), job_id)
    await core.service.image_files(await core.service.job(job_id))
    assert any(folder.iterdir())
    usage_before = (await core.store.usage(world.guild.id, user_id)).used
    charged_before = await core.store._read("SELECT SUM(credits) FROM ledger WHERE user_id = ?", (user_id,))

    # 1. No: nothing changes.
    ix = await fake_discord.run_slash("privacy delete", {}, user=world.member, channel=world.text_channel)
    question = await ix.wait_for_response(timeout=10)
    assert question.ephemeral and "This cannot be undone." in question.content
    no = await fake_discord.press_button(question.message_id, user=world.member, label="No")
    await no.wait_for_response(timeout=10)
    assert fake_discord.messages[question.message_id].content == "Nothing was deleted."
    assert (await core.service.job(job_id)).recipe.prompt == "a secret lighthouse"
    assert any(folder.iterdir()) and (await core.service.preferences(user_id)).remix

    # 2. Yes: the files, the prompts and the preferences go; the row and the ledger stay.
    ix = await fake_discord.run_slash("privacy delete", {}, user=world.member, channel=world.text_channel)
    question = await ix.wait_for_response(timeout=10)
    yes = await fake_discord.press_button(question.message_id, user=world.member, label="Yes, delete")
    await yes.wait_for_response(timeout=10)
    await fake_discord.wait_until(
        lambda: fake_discord.messages[question.message_id].content.startswith("Your data is deleted"),
        timeout=60,
        what="the deletion's answer",
    )
    assert "your 1 job" in fake_discord.messages[question.message_id].content
    job = await core.service.job(job_id)
    assert job is not None and job.recipe.prompt == DELETED_PROMPT and job.recipe.negative_prompt == ""
    assert job.deleted_by_member_at is not None and job.status == "done" and job.cost > 0
    assert not folder.exists()
    preferences = await core.service.preferences(user_id)
    assert not preferences.remix and preferences.negative is None
    assert (await core.store.usage(world.guild.id, user_id)).used == usage_before
    assert await core.store._read("SELECT SUM(credits) FROM ledger WHERE user_id = ?", (user_id,)) == charged_before

    # 3. The audit log and the mod log say that it happened, never what was deleted.
    entry = (await core.store.audit_log(world.guild.id, 1))[0]
    assert (entry.action, entry.actor_id, entry.target) == ("member_data_deleted", user_id, f"user:{user_id}")
    assert entry.before is None and entry.after is None
    logged = await fake_discord.wait_until(
        lambda: next(
            (m for m in fake_discord.channel_messages(world.log_channel) if "deleted their data" in m.content), None
        ),
        timeout=30,
        what="the mod log's line",
    )
    assert f"<@{user_id}>" in logged.content and "lighthouse" not in logged.content


async def test_privacy_export_sends_a_zip_of_the_images_and_jobs_json_by_direct_message(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse at dawn", seed=7, count=2))
    job_id = job_id_of(grid)
    await delivered(core, job_id, grid.id, fake_discord)

    ix = await fake_discord.run_slash("privacy export", {}, user=world.member, channel=world.text_channel)
    told = await ix.wait_for_message(lambda m: "by direct message" in m.content, timeout=60)
    assert told.ephemeral and "1 zip" in told.content
    dm = fake_discord.dm_channel(world.member)
    sent = await fake_discord.wait_until(
        lambda: next(iter(fake_discord.channel_messages(dm)), None), timeout=30, what="the direct message"
    )
    assert len(sent.attachments) == 1 and sent.attachments[0].filename.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(sent.attachments[0].data)) as archive:
        names = set(archive.namelist())
        document = json.loads(archive.read("jobs.json"))
        first = archive.read(f"images/{job_id}/1.png")
    assert names == {"jobs.json", f"images/{job_id}/1.png", f"images/{job_id}/2.png"}
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    (entry,) = document["jobs"]
    assert entry["id"] == job_id and entry["prompt"] == "a lighthouse at dawn" and entry["seeds"] == [7, 8]
    assert entry["guild_id"] == str(world.guild.id) and entry["channel_id"] == str(world.text_channel.id)

    # Closed direct messages: said ephemerally.
    world.member.user.dms_closed = True
    ix = await fake_discord.run_slash("privacy export", {}, user=world.member, channel=world.text_channel)
    closed = await ix.wait_for_message(lambda m: "could not send you a direct message" in m.content, timeout=60)
    assert closed.ephemeral


async def test_the_store_claims_a_repost_once_and_forgets_a_member_in_every_guild_they_used(store) -> None:
    """The parts the Discord tests reach slowly: the claim across removals, several guilds, direct messages."""
    jobs = [
        await store.admit_job(a_new_job(user_id=1, guild_id=guild, prompt="my words"), limit=None)
        for guild in (10, 11, None)
    ]
    for job, message_id in zip(jobs, (500, 501, 502), strict=True):
        await store.mark_running(job.id)
        await store.mark_done(job.id, image_paths=["1.png"], withheld=[], timings={})
        await store.mark_delivered(job.id, message_id)
    await store.set_starboard(10, 77, 2, actor_id=9)

    # 1. The requester's star never counts; the second other member's claims the repost; nothing claims it again.
    assert await store.starboard_star(500, 1, True, default_threshold=5) is None
    assert await store.starboard_star(500, 2, True, default_threshold=5) is None
    claim = await store.starboard_star(500, 3, True, default_threshold=5)
    assert claim is not None and (claim.job_id, claim.guild_id, claim.channel_id, claim.stars) == (
        jobs[0].id,
        10,
        77,
        2,
    )
    await store.starboard_posted(jobs[0].id, 900)
    for user in (2, 3):
        await store.starboard_star(500, user, False, default_threshold=5)
    for user in (2, 3, 4):
        assert await store.starboard_star(500, user, True, default_threshold=5) is None
    assert await store.starboard_reposts(10) == {jobs[0].id: 900}
    # A guild without a starboard claims nothing, and a claim given back may be claimed again.
    assert await store.starboard_star(501, 2, True, default_threshold=1) is None
    await store.set_starboard(11, 78, 1, actor_id=9)
    assert (await store.starboard_star(501, 3, True, default_threshold=5)) is not None
    await store.release_starboard(jobs[1].id)
    assert (await store.starboard_star(501, 4, True, default_threshold=5)) is not None

    # 2. Forgotten: every row anonymised and kept, an audit entry in each guild (none for direct messages).
    await store.toggle_remix(1)
    deleted = await store.forget_member(1)
    assert (deleted.jobs, deleted.guild_ids) == (3, (10, 11))
    for job in await store.jobs_of_member(1):
        assert job.recipe.prompt == DELETED_PROMPT and job.deleted_by_member_at is not None and job.charged == 4
    assert not (await store.member_preferences(1)).remix
    for guild in (10, 11):
        entry = (await store.audit_log(guild, 1))[0]
        assert (entry.action, entry.target, entry.before, entry.after) == ("member_data_deleted", "user:1", None, None)
