"""A small test-only bot (not Latentcord's) for the fake Discord's own tests, and its ``bot`` fixture.

It exercises one Discord feature per command, and remembers what the tests need to look at.
The test modules re-export the fixture (``bot = echo_bot.bot``), so that pytest finds it there.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests.fakediscord import (
    FakeDiscord,
    GuildSetup,
)
from tests.fakediscord.fixtures import running_client


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


@pytest.fixture
async def bot(fake_discord: FakeDiscord, world: GuildSetup) -> AsyncIterator[EchoBot]:
    async with running_client(EchoBot(sync_commands=True), fake_discord) as client:
        yield client
