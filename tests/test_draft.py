"""Draft mode through the real bot and the loopback Discord: /draft turns a channel's /imagine into fast previews."""

from __future__ import annotations

from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup

settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot

# The tiny model's default is 20 steps of Euler a; a draft is 40% of that with DPM++ 2M.
DRAFT_STEPS = 8


def job_id_of(grid) -> int:
    return int(grid.button(label="Delete")["custom_id"].split(":")[2])


async def draft(fake: FakeDiscord, world: GuildSetup, options: dict, user=None):
    ix = await fake.run_slash("draft", options, user=user or world.moderator, channel=world.text_channel)
    return await ix.wait_for_response()


async def test_a_draft_channel_draws_with_dpm_in_fewer_steps_until_it_is_turned_off(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    modlog = await fake_discord.run_slash(
        "modlog", {"channel": world.log_channel}, user=world.moderator, channel=world.text_channel
    )
    await modlog.wait_for_response()
    answer = await draft(fake_discord, world, {"mode": "on"})
    assert answer.ephemeral and f"Draft mode is now on in <#{world.text_channel.id}>" in answer.content

    ix = await imagine(fake_discord, world, steps=None, count=1, seed=5)
    accepted = await ix.wait_for_response()
    assert f"Draft channel: a fast preview, DPM++ 2M at {DRAFT_STEPS} steps." in accepted.content
    grid = await finished_grid(ix)
    assert f"{DRAFT_STEPS} steps (draft, DPM++ 2M)" in grid.content
    parameters = grid.attachments[0].open_image().text["parameters"]
    assert f"Steps: {DRAFT_STEPS}," in parameters and "Sampler: DPM++ 2M" in parameters
    job = await core.store.get_job(job_id_of(grid))
    assert job is not None and job.recipe.steps == DRAFT_STEPS

    # Steps a member chooses win; the sampler stays the draft's.
    chosen = await finished_grid(await imagine(fake_discord, world, steps=3, count=1))
    assert "3 steps (draft, DPM++ 2M)" in chosen.content

    # Only that channel: the age-restricted one still draws full renders.
    elsewhere = await finished_grid(await imagine(fake_discord, world, steps=None, count=1, channel=world.nsfw_channel))
    assert "20 steps ·" in elsewhere.content and "draft" not in elsewhere.content

    answer = await draft(fake_discord, world, {"mode": "off"})
    assert f"Draft mode is now off in <#{world.text_channel.id}>" in answer.content
    full = await finished_grid(await imagine(fake_discord, world, steps=None, count=1))
    assert "20 steps ·" in full.content and "Sampler: Euler a" in full.attachments[0].open_image().text["parameters"]

    audit = [entry for entry in await core.store.audit_log(world.guild.id) if entry.action == "draft_mode"]
    assert [(entry.target, entry.before, entry.after) for entry in reversed(audit)] == [
        (f"channel:{world.text_channel.id}", "off", "on"),
        (f"channel:{world.text_channel.id}", "on", "off"),
    ]
    logged = await fake_discord.wait_for_message(world.log_channel, lambda m: "draft mode" in m.content, timeout=10)
    assert f"<#{world.text_channel.id}>" in logged.content


async def test_a_moderator_can_name_another_channel_and_a_member_cannot_turn_drafts_on(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    refused = await draft(fake_discord, world, {"mode": "on"}, user=world.member)
    assert refused.ephemeral and "Manage Server" in refused.content
    assert (await core.store.guild_settings(world.guild.id)).draft_channels == frozenset()

    answer = await draft(fake_discord, world, {"mode": "on", "channel": world.nsfw_channel})
    assert f"Draft mode is now on in <#{world.nsfw_channel.id}>" in answer.content
    assert (await core.store.guild_settings(world.guild.id)).draft_channels == {world.nsfw_channel.id}
