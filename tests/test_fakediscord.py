"""The fake Discord works with the real discord.py client: these tests are the harness's own proof.

They drive a small test-only bot (not Latentcord's) through the features the end-to-end tests
rely on: connecting and syncing commands, answering and deferring, ephemeral replies, file
uploads, persistent ``DynamicItem`` buttons across a restart, option types with ``resolved``
data, autocomplete, modals, DMs, Discord's deadlines and error responses.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests.fakediscord import (
    CallbackType,
    FakeDiscord,
    FakeUpload,
    GuildSetup,
    MessageFlag,
    Permission,
    PermissionOverwrite,
)
from tests.fakediscord import fixtures as fakediscord_fixtures
from tests.fakediscord.fixtures import running_client

fake_discord = fakediscord_fixtures.fake_discord  # re-exported so pytest finds the fixture here


# -- the test-only bot ------------------------------------------------------------------------------


def render_png(n: int) -> bytes:
    """A small picture whose width encodes ``n``, so the test can check it got the right one."""
    buffer = io.BytesIO()
    Image.new("RGB", (16 * n, 16), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


class CounterButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"echo:b:(?P<n>[0-9]+)"):
    """A persistent button whose state (``n``) lives in its custom id, so it survives a restart."""

    def __init__(self, n: int) -> None:
        super().__init__(
            discord.ui.Button(label=f"Count {n}", style=discord.ButtonStyle.primary, custom_id=f"echo:b:{n}")
        )
        self.n = n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CounterButton:
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(CounterButton(self.n + 1))
        await interaction.response.edit_message(content=f"pressed {self.n} by {interaction.user.name}", view=view)


class NoteModal(discord.ui.Modal, title="Leave a note"):
    note: discord.ui.TextInput[NoteModal] = discord.ui.TextInput(label="Note", custom_id="note-text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"noted: {self.note.value}", ephemeral=True)


class RefreshView(discord.ui.View):
    """A classic persistent view (fixed custom id, registered with ``add_view``)."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Refresh", custom_id="echo:refresh")
    async def refresh(self, interaction: discord.Interaction, button: discord.ui.Button[RefreshView]) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content=f"refreshed by {interaction.user.name}")


class EchoBot(commands.Bot):
    """Exercises one Discord feature per command; remembers what tests need to look at."""

    def __init__(self, *, sync_commands: bool) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())
        self.sync_commands = sync_commands
        self.interactions: list[discord.Interaction] = []
        self.release_slow = asyncio.Event()
        self.slow_error: BaseException | None = None
        self._add_commands()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(CounterButton)
        self.add_view(RefreshView())
        if self.sync_commands:
            await self.tree.sync()

    def _add_commands(self) -> None:
        tree = self.tree

        @tree.command(name="echo", description="Repeat the text back")
        async def echo(interaction: discord.Interaction, text: str) -> None:
            self.interactions.append(interaction)
            await interaction.response.send_message(text)

        @tree.command(name="secret", description="Reply only to the caller")
        async def secret(interaction: discord.Interaction, text: str) -> None:
            await interaction.response.send_message(f"psst: {text}", ephemeral=True)

        @tree.command(name="picture", description="Think, then post a picture with a button")
        async def picture(interaction: discord.Interaction, n: app_commands.Range[int, 1, 9] = 1) -> None:
            await interaction.response.defer(thinking=True)
            view = discord.ui.View(timeout=None)
            view.add_item(CounterButton(n))
            file = discord.File(io.BytesIO(render_png(n)), filename="picture.png")
            await interaction.followup.send(f"picture {n}", file=file, view=view)

        @tree.command(name="progress", description="Post, edit, replace the file, follow up, clean up")
        async def progress(interaction: discord.Interaction) -> None:
            preview = discord.File(io.BytesIO(render_png(1)), filename="preview.png")
            await interaction.response.send_message("queued", file=preview)
            await interaction.edit_original_response(content="50%")
            grid = discord.File(io.BytesIO(render_png(3)), filename="grid.png")
            await interaction.edit_original_response(content="done", attachments=[grid], view=RefreshView())
            original = await interaction.original_response()
            note = await interaction.followup.send(f"finished {original.id}", ephemeral=True, wait=True)
            await note.delete()

        @tree.command(name="whereami", description="Describe the channel and the caller's permissions")
        async def whereami(interaction: discord.Interaction) -> None:
            channel = interaction.channel
            nsfw = isinstance(channel, discord.TextChannel) and channel.is_nsfw()
            where = "dm" if interaction.guild is None else f"guild:{interaction.guild.name}"
            text = (
                f"{where} nsfw={nsfw} manage_guild={interaction.permissions.manage_guild} "
                f"limit={interaction.filesize_limit} user={interaction.user.name}"
            )
            await interaction.response.send_message(text, ephemeral=True)

        @tree.command(name="slow", description="Answers only when the test says so")
        async def slow(interaction: discord.Interaction) -> None:
            await self.release_slow.wait()
            try:
                await interaction.response.send_message("finally")
            except discord.HTTPException as error:
                self.slow_error = error

        @tree.command(name="note", description="Open a modal")
        async def note(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(NoteModal())

        flavours = ["vanilla", "chocolate", "strawberry", "pistachio"]

        @tree.command(name="flavour", description="Pick a flavour")
        async def flavour(interaction: discord.Interaction, name: str) -> None:
            await interaction.response.send_message(f"flavour {name}")

        @flavour.autocomplete("name")
        async def flavour_names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=f, value=f) for f in flavours if f.startswith(current)]

        tag = app_commands.Group(
            name="tag", description="Tag people", default_permissions=discord.Permissions(manage_guild=True)
        )

        @tag.command(name="give", description="Give someone a role-flavoured tag")
        async def give(
            interaction: discord.Interaction,
            user: discord.Member,
            role: discord.Role,
            where: discord.TextChannel,
            weight: float = 1.0,
            attachment: discord.Attachment | None = None,
        ) -> None:
            if not interaction.permissions.manage_guild:
                await interaction.response.send_message("Moderators only.", ephemeral=True)
                return
            size = len(await attachment.read()) if attachment else 0
            await interaction.response.send_message(
                f"{user.name} gets {role.name} in #{where.name} nsfw={where.is_nsfw()} weight={weight} bytes={size}"
            )

        tree.add_command(tag)


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
async def bot(fake_discord: FakeDiscord, world: GuildSetup) -> AsyncIterator[EchoBot]:
    async with running_client(EchoBot(sync_commands=True), fake_discord) as client:
        yield client


# -- tests ------------------------------------------------------------------------------------------


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


async def test_unknown_route_is_recorded(fake_discord: FakeDiscord, bot: EchoBot) -> None:
    with pytest.raises(discord.NotFound):
        await bot.fetch_premium_sticker_packs()
    assert [(c.method, c.path) for c in fake_discord.unknown_calls] == [("GET", "/sticker-packs")]


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


async def test_discord_deadlines_are_enforced(fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot) -> None:
    # A follow-up after the token's 15 minutes is refused (the clock is simulated).
    ix = await fake_discord.run_slash("echo", {"text": "now"}, user=world.member, channel=world.text_channel)
    await ix.wait_for_response()
    fake_discord.clock.advance(15 * 60 + 1)
    with pytest.raises(discord.HTTPException) as late:
        await bot.interactions[-1].followup.send("too late")
    assert (late.value.status, late.value.code) == (401, 50027)

    # An acknowledgement after 3 seconds finds an unknown interaction.
    slow = await fake_discord.run_slash("slow", user=world.member, channel=world.text_channel)
    fake_discord.clock.advance(3.5)
    bot.release_slow.set()
    # The fake records the refusal before the client has read it: wait for both sides.
    await fake_discord.wait_until(lambda: slow.events and bot.slow_error, timeout=3, what="the late callback")
    assert not slow.acknowledged and slow.events[0].status == 404
    assert isinstance(bot.slow_error, discord.NotFound) and bot.slow_error.code == 10062


async def test_bot_token_routes_permissions_and_faults(
    fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot
) -> None:
    channel = bot.get_channel(world.text_channel.id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send(f"hello {world.member.mention}")
    stored = fake_discord.messages[sent.id]
    assert stored.mentions == [world.member.user] and sent.mentions[0].id == world.member.id
    await sent.edit(content="edited")
    assert stored.content == "edited" and stored.revisions[0].content.startswith("hello")
    fetched = await channel.fetch_message(sent.id)
    assert fetched.content == "edited"
    await sent.delete()
    assert stored.deleted

    bad_layout = discord.ui.View()
    for i in range(6):
        bad_layout.add_item(discord.ui.Button(label=str(i), custom_id="same", row=i % 5))
    with pytest.raises(discord.HTTPException) as invalid:
        await channel.send("too many", view=bad_layout)
    assert invalid.value.code == 50035

    readonly = fake_discord.add_text_channel(
        world.guild,
        "announcements",
        overwrites=[PermissionOverwrite(world.guild.id, 0, deny=int(Permission.SEND_MESSAGES))],
    )
    await fake_discord.wait_until(lambda: bot.get_channel(readonly.id), timeout=3, what="CHANNEL_CREATE")
    with pytest.raises(discord.Forbidden):
        await bot.get_partial_messageable(readonly.id).send("nope")

    fake_discord.rate_limit(r"^/channels/\d+/messages$", method="POST", retry_after=0.05)
    await channel.send("after a 429")
    assert [c.status for c in fake_discord.calls_to("POST", "/channels/{channel_id}/messages")][-2:] == [429, 200]


async def test_gateway_resume_keeps_the_session(fake_discord: FakeDiscord, world: GuildSetup, bot: EchoBot) -> None:
    session = fake_discord.gateway.active()
    assert session is not None
    fake_discord.force_reconnect()
    await fake_discord.wait_until(lambda: 6 in session.received_ops, timeout=5, what="a RESUME")
    ix = await fake_discord.run_slash("echo", {"text": "still here"}, user=world.member, channel=world.text_channel)
    assert (await ix.wait_for_response()).content == "still here"
    assert fake_discord.gateway.active() is session


async def test_json_replies_have_the_exact_content_type(fake_discord: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{fake_discord.api_base}/gateway") as response:
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["url"] == fake_discord.gateway_url


async def test_a_wrong_token_fails_start_up_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    async with fakediscord_fixtures.serving_fake_discord(monkeypatch, bot_token="right-token") as fake:
        with pytest.raises(fakediscord_fixtures.ClientStartupError) as failure:
            async with running_client(EchoBot(sync_commands=False), fake, token="wrong-token"):
                pass
    assert isinstance(failure.value.__cause__, discord.LoginFailure)
    assert [(c.path, c.status) for c in fake.calls] == [("/users/@me", 401)]
