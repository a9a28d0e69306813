"""The buttons under a result, through the real bot and the fake Discord, also across a restart.

Upscale, variation, re-roll, delete and cancel; buttons pressed after a restart; a result
delivered after its interaction token expired; queued jobs that outlive the process.
"""

from __future__ import annotations

from bot.settings import Settings
from models.engine import DiffusionEngine
from tests import discord_bot_helpers
from tests.discord_bot_helpers import Clock, finished_grid, imagine, press_and_wait, running_bot
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup
from tests.helpers import has_grid

# The shared fixtures, re-exported so pytest finds them here (``bot`` needs ``settings`` too).
settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot


async def test_upscale_variation_and_reroll_buttons(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    _, core = bot
    grid = await finished_grid(await imagine(fake_discord, world, seed=3))
    before = (grid.content, list(grid.components), grid.attachments[0].data)

    # U2, pressed by someone else: an upscale of image 2, charged to the presser.
    press = await fake_discord.press_button(grid, user=world.moderator, label="U2")
    assert not (await press.wait_for_response(timeout=3)).ephemeral
    upscaled = await press.wait_for_message(has_grid, timeout=180)
    assert upscaled.id != grid.id
    assert upscaled.attachments[0].open_image().size == (128, 128)
    assert [b.get("label") for b in upscaled.buttons][:2] == ["Vary (Strong)", "Vary (Subtle)"]
    assert "image 2 upscaled" in upscaled.content and f"<@{world.moderator.user.id}>" in upscaled.content
    assert (await core.store.usage(world.guild.id, world.moderator.user.id)).used > 0

    variations = await press_and_wait(fake_discord, grid, "V1", world)
    assert variations.attachments[0].open_image().size == (128, 128)
    assert "variations of image 1" in variations.content

    reroll = await press_and_wait(fake_discord, grid, "🔄", world)
    assert reroll.id != grid.id and "re-roll" in reroll.content
    assert "Seeds: 3, 4, 5, 6" not in reroll.content
    assert (grid.content, list(grid.components), grid.attachments[0].data) == before  # the original stays

    strong = await press_and_wait(fake_discord, upscaled, "Vary (Strong)", world)
    assert strong.attachments[0].open_image().size == (128, 128)  # four images at the original size


async def test_vary_subtle_on_an_upscale_and_role_quotas(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    artists = fake_discord.add_role(world.guild, "Artists")
    fake_discord.set_member_roles(world.member, [artists])
    ix = await fake_discord.run_slash(
        "quota set", {"limit": 3, "role": artists}, user=world.moderator, channel=world.text_channel
    )
    assert "may now spend 3 credits" in (await ix.wait_for_response()).content

    grid = await finished_grid(await imagine(fake_discord, world))  # 1 credit
    upscaled = await press_and_wait(fake_discord, grid, "U4", world)  # 1 credit
    subtle = await press_and_wait(fake_discord, upscaled, "Vary (Subtle)", world)  # 1 credit
    assert "variations of image 1" in subtle.content
    refused = await fake_discord.press_button(subtle, user=world.member, label="V1")
    answer = await refused.wait_for_response(timeout=3)
    assert answer.ephemeral and "you have 0 of 3 left" in answer.content


async def test_only_the_requester_or_a_moderator_deletes_a_result(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    grid = await finished_grid(await imagine(fake_discord, world))
    stranger = fake_discord.add_member(world.guild, "stranger")
    refused = await fake_discord.press_button(grid, user=stranger, label="Delete")
    assert (await refused.wait_for_response()).ephemeral
    assert not grid.deleted
    allowed = await fake_discord.press_button(grid, user=world.member, label="Delete")
    await allowed.wait_for_response()
    await fake_discord.wait_until(lambda: grid.deleted, what="the grid deleted")


async def test_the_cancel_button_stops_a_waiting_job_and_refunds_it(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    running = await imagine(fake_discord, world, steps=60, user=world.moderator)
    waiting = await imagine(fake_discord, world, steps=None)
    status = await waiting.wait_for_original(lambda m: bool(m.buttons), timeout=3)
    stranger = fake_discord.add_member(world.guild, "stranger")
    refused = await fake_discord.press_button(status, user=stranger, label="Cancel")
    assert (await refused.wait_for_response()).ephemeral
    press = await fake_discord.press_button(status, user=world.member, label="Cancel")
    answer = await press.wait_for_response(timeout=3)
    assert answer.ephemeral and "Cancelled" in answer.content
    await waiting.wait_for_original(lambda m: "Cancelled; credits refunded." in m.content, timeout=10)
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 0
    await finished_grid(running)


# -- across a restart, and after the interaction token expired -------------------------------------


async def test_buttons_work_after_a_restart(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    async with running_bot(fake_discord, settings, tiny_engine):
        grid = await finished_grid(await imagine(fake_discord, world))
    overwrites = fake_discord.command_overwrites
    async with running_bot(fake_discord, settings, tiny_engine):
        press = await fake_discord.press_button(grid, user=world.member, label="U1")
        upscaled = await press.wait_for_message(has_grid, timeout=180)
    assert upscaled.attachments[0].open_image().size == (128, 128)
    # Unchanged commands are not synced again on the second start.
    assert fake_discord.command_overwrites == overwrites == 1


async def test_a_result_after_the_token_expired_is_posted_with_the_bot_token(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    clock = Clock()
    async with running_bot(fake_discord, settings, tiny_engine, clock=clock):
        ix = await imagine(fake_discord, world, steps=20)
        await ix.wait_for_response(timeout=3)
        clock.offset = 15 * 60  # the job finishes "15 minutes later"
        fake_discord.expire_interaction(ix)
        posted = await fake_discord.wait_for_message(world.text_channel, has_grid, timeout=180)
    assert posted.id != ix.original_message_id and posted.interaction_id is None
    assert f"<@{world.member.user.id}>" in posted.content
    assert posted.attachments[0].open_image().size == (128, 128)


async def test_queued_jobs_survive_a_restart_and_are_delivered_to_their_channel(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    async with running_bot(fake_discord, settings, tiny_engine) as (_, core):
        running = await imagine(fake_discord, world, steps=40)
        waiting = await imagine(fake_discord, world, prompt="a lighthouse in a storm", user=world.moderator)
        await waiting.wait_for_response(timeout=3)
        await fake_discord.wait_until(lambda: core.worker.position(1) == 0, what="job 1 running")
    # Closing let the running job finish; the waiting one stayed queued in SQLite.
    await finished_grid(running, timeout=180)
    status = await waiting.wait_for_original(timeout=3)
    async with running_bot(fake_discord, settings, tiny_engine):
        delivered = await fake_discord.wait_for_message(
            world.text_channel, lambda m: has_grid(m) and "lighthouse" in m.content, timeout=180
        )
        await fake_discord.wait_until(lambda: "Finished after a restart" in status.content, what="status updated")
    assert f"<@{world.moderator.user.id}>" in delivered.content
    # The old status message said it was resumed, and no longer offers Cancel.
    assert any("Resumed after a restart" in revision.content for revision in status.revisions)
    assert not status.buttons
