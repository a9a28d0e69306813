"""Moderation through the real bot and the fake Discord: who may change the filter, and the mod log."""

from __future__ import annotations

from tests import discord_bot_helpers
from tests.discord_bot_helpers import imagine
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup

# The shared fixtures, re-exported so pytest finds them here (``bot`` needs ``settings`` too).
settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot


async def test_a_regular_member_is_refused_at_filter_add(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    _, core = bot
    ix = await fake_discord.run_slash("filter add", {"term": "clown"}, user=world.member, channel=world.text_channel)
    answer = await ix.wait_for_response()
    assert answer.ephemeral and "Manage Server" in answer.content
    assert await core.store.filter_terms(world.guild.id) == []


async def test_moderators_filter_terms_and_every_change_reaches_the_log(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    mod, general = world.moderator, world.text_channel

    async def run(command: str, options: dict | None = None, user=None) -> str:
        ix = await fake_discord.run_slash(command, options, user=user or mod, channel=general)
        answer = await ix.wait_for_response()
        assert answer.ephemeral
        return answer.content

    assert f"now go to <#{world.log_channel.id}>" in await run("modlog", {"channel": world.log_channel})
    assert "now blocked" in await run("filter add", {"term": "Clown"})
    assert "`clown`" in await run("filter list")
    assert await run("filter add", {"term": "clown"}) == "`clown` is already on this server's filter list."

    refused = await imagine(fake_discord, world, prompt="a scary cl0wn")
    assert (await refused.wait_for_response(timeout=3)).ephemeral
    assert "no longer blocked" in await run("filter remove", {"term": "clown"})
    assert await run("filter remove", {"term": "clown"}) == "`clown` is not on this server's filter list."

    assert "may now spend 7 credits" in await run("quota set", {"limit": 7, "user": world.member})
    assert "0 of 7 credits used" in await run("quota show", {"user": world.member})
    assert "full credits back" in await run("quota reset", {"user": world.member})
    assert "Give a user or a role, not both." == await run(
        "quota set", {"limit": 7, "user": world.member, "role": world.moderator_role}
    )
    assert "Members without an override may now spend 50 credits" in await run("quota set", {"limit": 50})
    assert "0 of 50 credits used" in await run("quota show", {"user": world.owner})

    log = await fake_discord.wait_for_message(world.log_channel, lambda m: "rejected" in m.content, timeout=5)
    assert f"<@{world.member.user.id}>" in log.content
    entries = [m.content for m in fake_discord.channel_messages(world.log_channel)]
    assert any("filter term added" in entry for entry in entries)
    assert any("quota override set" in entry for entry in entries)
    audit = await core.store.audit_log(world.guild.id)
    assert {entry.action for entry in audit} >= {"log_channel", "filter_term_added", "filter_term_removed"}
