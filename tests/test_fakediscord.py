"""The fake Discord works with the real discord.py client: these tests are the harness's own proof.

They drive a small test-only bot (not Latentcord's: ``tests/echo_bot.py``) through the features
the end-to-end tests rely on: connecting and syncing commands, answering and deferring, ephemeral
replies, file uploads, persistent ``DynamicItem`` buttons across a restart, option types with
``resolved`` data, autocomplete, modals and DMs. Discord's deadlines, error responses, faults and
reconnects are in ``test_fakediscord_protocol.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest

from tests import echo_bot
from tests.echo_bot import EchoBot, render_png
from tests.fakediscord import CallbackType, FakeDiscord, FakeUpload, GuildSetup, MessageFlag
from tests.fakediscord import fixtures as fakediscord_fixtures
from tests.fakediscord.fixtures import running_client

fake_discord = fakediscord_fixtures.fake_discord  # re-exported so pytest finds the fixture here
bot = echo_bot.bot  # likewise


async def test_client_connects_and_syncs_its_command_tree(
    fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot
) -> None:
    session = fake_discord.gateway.active()
    assert session is not None and session.ready
    assert session.intents == discord.Intents.default().value
    assert fake_discord.command_overwrites == 1
    names = {c.name for c in fake_discord.registered_commands()}
    assert {"echo", "secret", "picture", "tag", "flavour"} <= names
    echo = fake_discord.find_command("echo")
    assert echo is not None and echo.options[0]["name"] == "text" and echo.options[0]["required"]
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.me is not None
    nsfw = guild.get_channel(world.nsfw_channel.id)
    assert isinstance(nsfw, discord.TextChannel) and nsfw.is_nsfw()
    remote = await bot.tree.fetch_commands()
    assert {c.name for c in remote} == names


async def test_echo_is_answered_within_three_seconds(
    fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot
) -> None:
    ix = await fake_discord.run_slash("echo", {"text": "a fox"}, user=world.member, channel=world.text_channel)
    response = await ix.wait_for_response(timeout=3)
    assert response.type is CallbackType.CHANNEL_MESSAGE_WITH_SOURCE
    assert response.content == "a fox" and not response.ephemeral
    assert response.elapsed < 3
    message = await fake_discord.wait_for_message(world.text_channel, lambda m: m.content == "a fox", timeout=3)
    assert message.author.id == fake_discord.bot_user.id and message.interaction_id == ix.id
    assert ix.original_message is message
    assert bot.interactions[-1].channel.id == world.text_channel.id


async def test_ephemeral_reply_carries_flag_64(fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot) -> None:
    ix = await fake_discord.run_slash("secret", {"text": "shh"}, user=world.member, channel=world.text_channel)
    response = await ix.wait_for_response()
    assert response.flags & MessageFlag.EPHEMERAL == 64
    message = await ix.wait_for_original()
    assert message.ephemeral and message.content == "psst: shh"
    assert message not in fake_discord.channel_messages(world.text_channel, include_ephemeral=False)


async def test_deferred_png_followup_and_dynamic_button_after_restart(
    fake_discord: FakeDiscord, world: GuildSetup
) -> None:
    # 1. The first bot instance defers, then follows up with a PNG and a persistent button.
    async with running_client(EchoBot(sync_commands=True), fake_discord):
        ix = await fake_discord.run_slash("picture", {"n": 2}, user=world.member, channel=world.text_channel)
        deferred = await ix.wait_for_response()
        assert deferred.type is CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
        posted = await ix.wait_for_followup(lambda m: bool(m.attachments))
    assert posted.id == ix.original_message_id and not posted.loading
    assert posted.attachments[0].filename == "picture.png"
    assert posted.attachments[0].open_image().size == (32, 16)
    assert [b["custom_id"] for b in posted.buttons] == ["echo:b:2"]

    # 2. A new instance (a restart) knows the button only through its DynamicItem template.
    restarted = EchoBot(sync_commands=False)
    async with running_client(restarted, fake_discord):
        press = await fake_discord.press_button(posted, "echo:b:2", user=world.moderator)
        update = await press.wait_for_response()
        assert update.type is CallbackType.UPDATE_MESSAGE
        assert press.payload["message"]["components"] == list(posted.revisions[-1].components)
    assert posted.content == "pressed 2 by moderator"
    assert [b["custom_id"] for b in posted.buttons] == ["echo:b:3"]
    assert [r.via for r in posted.revisions] == ["followup", "callback"]
    assert fake_discord.command_overwrites == 1


async def test_webhook_edits_followups_and_deferred_update(
    fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot
) -> None:
    ix = await fake_discord.run_slash("progress", user=world.member, channel=world.text_channel)
    await fake_discord.wait_until(lambda: any(e.kind == "delete_message" for e in ix.events), timeout=5, what="cleanup")
    assert [e.kind for e in ix.events] == [
        "callback",
        "edit_message",
        "edit_message",
        "get_message",
        "followup",
        "delete_message",
    ]
    assert all(e.status < 300 for e in ix.events)
    original = ix.original_message
    assert original is not None and original.content == "done"
    assert [r.content for r in original.revisions] == ["queued", "50%"]
    assert [a.filename for a in original.attachments] == ["grid.png"]
    assert original.attachments[0].dimensions == (48, 16)
    note = ix.followups[0]
    assert note.ephemeral and note.deleted and note.content == f"finished {original.id}"

    press = await fake_discord.press_button(original, label="Refresh", user=world.member)
    assert (await press.wait_for_response()).type is CallbackType.DEFERRED_UPDATE_MESSAGE
    await press.wait_for_original(lambda m: m.content == "refreshed by member")
    assert original.revisions[-1].via == "webhook"


async def test_hundred_concurrent_commands_are_all_answered_in_time(
    fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot
) -> None:
    texts = [f"fox {i}" for i in range(100)]
    ixs = await asyncio.gather(
        *(fake_discord.run_slash("echo", {"text": t}, user=world.member, channel=world.text_channel) for t in texts)
    )
    responses = await asyncio.gather(*(ix.wait_for_response(timeout=3) for ix in ixs))
    assert sorted(str(r.content) for r in responses) == sorted(texts)
    assert max(r.elapsed for r in responses) < 3
    assert len(fake_discord.channel_messages(world.text_channel)) == 100


async def test_options_are_typed_and_resolved_from_the_registered_definition(
    fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot
) -> None:
    upload = FakeUpload("sketch.png", render_png(1))
    options = {"user": world.member, "role": world.moderator_role, "where": world.nsfw_channel, "weight": 2}
    ix = await fake_discord.run_slash(
        "tag", {**options, "attachment": upload}, subcommand="give", user=world.moderator, channel=world.text_channel
    )
    response = await ix.wait_for_response()
    assert response.content == f"member gets Moderators in #after-dark nsfw=True weight=2.0 bytes={len(upload.data)}"

    refused = await fake_discord.run_slash("tag give", options, user=world.member, channel=world.text_channel)
    assert (await refused.wait_for_response()).content == "Moderators only."
    with pytest.raises(PermissionError):
        await fake_discord.run_slash(
            "tag give", options, user=world.member, channel=world.text_channel, enforce_default_permissions=True
        )
    with pytest.raises(ValueError, match="unknown option"):
        await fake_discord.run_slash("echo", {"txt": "typo"}, user=world.member, channel=world.text_channel)
    with pytest.raises(ValueError, match="above max_value"):
        await fake_discord.run_slash("picture", {"n": 10}, user=world.member, channel=world.text_channel)


async def test_interaction_carries_channel_permissions_and_upload_limit(
    fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot
) -> None:
    async def describe(user: Any, channel: Any) -> str:
        ix = await fake_discord.run_slash("whereami", user=user, channel=channel)
        return str((await ix.wait_for_response()).content)

    limit = world.guild.attachment_size_limit
    guild = f"guild:{world.guild.name}"
    assert await describe(world.member, world.text_channel) == (
        f"{guild} nsfw=False manage_guild=False limit={limit} user=member"
    )
    assert await describe(world.moderator, world.nsfw_channel) == (
        f"{guild} nsfw=True manage_guild=True limit={limit} user=moderator"
    )
    dm = fake_discord.dm_channel(world.member)
    assert await describe(world.member.user, dm) == f"dm nsfw=False manage_guild=False limit={limit} user=member"


async def test_autocomplete_and_modal_round_trips(fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot) -> None:
    ix = await fake_discord.autocomplete(
        "flavour", {"name": "p"}, focused="name", user=world.member, channel=world.text_channel
    )
    response = await ix.wait_for_response()
    assert response.type is CallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
    assert [c["value"] for c in response.choices] == ["pistachio"]

    opened = await fake_discord.run_slash("note", user=world.member, channel=world.text_channel)
    assert (await opened.wait_for_response()).type is CallbackType.MODAL
    submitted = await fake_discord.submit_modal(opened, {"note-text": "hello"})
    reply = await submitted.wait_for_response()
    assert reply.content == "noted: hello" and reply.ephemeral
