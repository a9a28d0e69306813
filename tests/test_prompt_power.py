"""Prompt power and personal defaults (the parts built so far): /show, through the real bot and the loopback Discord."""

from __future__ import annotations

from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine, press_and_wait
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup
from tests.helpers import has_grid

settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot


def job_id_of(grid) -> int:
    return int(grid.button(label="Delete")["custom_id"].split(":")[2])


async def test_show_posts_a_finished_job_again_with_working_buttons(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse", seed=9))
    job_id = job_id_of(grid)

    shown = await fake_discord.run_slash("show", {"job": job_id}, user=world.member, channel=world.text_channel)
    answer = await shown.wait_for_response(timeout=5)
    assert not answer.ephemeral
    posted = await shown.wait_for_original(has_grid)
    assert posted.id != grid.id and "Seeds: 9, 10, 11, 12" in posted.content
    assert posted.attachments[0].data == grid.attachments[0].data
    upscaled = await press_and_wait(fake_discord, posted, "U2", world)  # its buttons work
    assert upscaled.attachments[0].open_image().size == (128, 128)

    by_moderator = await fake_discord.run_slash(
        "show", {"job": job_id}, user=world.moderator, channel=world.text_channel
    )
    assert not (await by_moderator.wait_for_response(timeout=5)).ephemeral


async def test_show_refuses_someone_elses_job_and_a_job_that_does_not_exist(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse"))
    stranger = fake_discord.add_member(world.guild, "stranger")
    refused = await fake_discord.run_slash("show", {"job": job_id_of(grid)}, user=stranger, channel=world.text_channel)
    answer = await refused.wait_for_response(timeout=5)
    assert answer.ephemeral and "is not yours" in answer.content
    missing = await fake_discord.run_slash("show", {"job": 99999}, user=world.member, channel=world.text_channel)
    answer = await missing.wait_for_response(timeout=5)
    assert answer.ephemeral and "Job 99999 does not exist." in answer.content
