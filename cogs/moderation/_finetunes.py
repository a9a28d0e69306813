"""/lora, /embedding and /model: the fine-tunes and models a server's moderators approve.

Uploads are read only after what Discord says of them (name, size) passes, and answered
after a deferral, since a 400 MB file takes longer than Discord's 3 seconds to fetch.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.jobs.messages import CHOICE_TEXT_LIMIT, fit_content, fit_select_options
from cogs._shared.moderators import describe_change, guild_of, moderators_only, post_to_modlog
from cogs._shared.replies import reply_ephemeral
from cogs.moderation._base import ModeratorCommands, moderator_group

NAME_DESCRIPTION = "2-32 letters, digits, - or _"


class FineTuneCommands(ModeratorCommands):
    lora_group = moderator_group("lora", "LoRAs members may use on this server.")
    embedding_group = moderator_group("embedding", "Textual-inversion embeddings members may use on this server.")
    model_group = moderator_group("model", "Which of the bot's models this server may use.")

    # -- /lora --------------------------------------------------------------------------------

    @lora_group.command(name="add", description="Approve a LoRA (.safetensors) under a name.")
    @app_commands.describe(
        name=f"What members type: <lora:name:0.8> in a prompt, or the lora option ({NAME_DESCRIPTION})",
        file="The LoRA, as a .safetensors file",
        weight="Its default strength, -2 to 2 (default 1)",
        nsfw="Whether it makes NSFW images: then only age-restricted channels may use it (default no)",
    )
    @moderators_only()
    async def lora_add(
        self,
        interaction: discord.Interaction[Any],
        name: app_commands.Range[str, 1, 64],
        file: discord.Attachment,
        weight: app_commands.Range[float, -2.0, 2.0] = 1.0,
        nsfw: bool = False,
    ) -> None:
        await self._add(interaction, "lora", name, file, weight=weight, nsfw=nsfw)

    @lora_group.command(name="remove", description="Take a LoRA off this server's list.")
    @app_commands.describe(name="The LoRA's name")
    @moderators_only()
    async def lora_remove(self, interaction: discord.Interaction[Any], name: app_commands.Range[str, 1, 64]) -> None:
        await self._remove(interaction, "lora", name)

    @lora_group.command(name="list", description="Show this server's LoRAs.")
    @moderators_only()
    async def lora_list(self, interaction: discord.Interaction[Any]) -> None:
        await self._list(interaction, "lora")

    # -- /embedding ---------------------------------------------------------------------------

    @embedding_group.command(name="add", description="Approve a textual-inversion embedding (.safetensors).")
    @app_commands.describe(
        name=f"The word members write in a prompt to use it ({NAME_DESCRIPTION})",
        file="The embedding, as a .safetensors file",
        nsfw="Whether it makes NSFW images: then only age-restricted channels may use it (default no)",
    )
    @moderators_only()
    async def embedding_add(
        self,
        interaction: discord.Interaction[Any],
        name: app_commands.Range[str, 1, 64],
        file: discord.Attachment,
        nsfw: bool = False,
    ) -> None:
        await self._add(interaction, "embedding", name, file, nsfw=nsfw)

    @embedding_group.command(name="remove", description="Take an embedding off this server's list.")
    @app_commands.describe(name="The embedding's name")
    @moderators_only()
    async def embedding_remove(
        self, interaction: discord.Interaction[Any], name: app_commands.Range[str, 1, 64]
    ) -> None:
        await self._remove(interaction, "embedding", name)

    @embedding_group.command(name="list", description="Show this server's embeddings.")
    @moderators_only()
    async def embedding_list(self, interaction: discord.Interaction[Any]) -> None:
        await self._list(interaction, "embedding")

    # -- /model --------------------------------------------------------------------------------

    @model_group.command(
        name="list", description="Show the bot's models, their families and licences, and which this server may use."
    )
    @moderators_only()
    async def model_list(self, interaction: discord.Interaction[Any]) -> None:
        states = await self.moderation.model_states(guild_of(interaction))
        lines = [
            f"{'✅' if state.enabled else '🚫'} `{state.model}` · {state.family} · {state.licence.name}"
            for state in states
        ]
        await reply_ephemeral(interaction, "Models on this server:\n" + "\n".join(lines))

    @model_group.command(name="enable", description="Let this server use a model.")
    @app_commands.describe(name="The model, as /model list shows it")
    @moderators_only()
    async def model_enable(self, interaction: discord.Interaction[Any], name: str) -> None:
        entry = await self.moderation.set_model_enabled(guild_of(interaction), name, True, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"`{name}` may now be used on this server.")

    @model_group.command(name="disable", description="Stop this server from using a model.")
    @app_commands.describe(name="The model, as /model list shows it")
    @moderators_only()
    async def model_disable(self, interaction: discord.Interaction[Any], name: str) -> None:
        entry = await self.moderation.set_model_enabled(
            guild_of(interaction), name, False, actor_id=interaction.user.id
        )
        await self._changed(interaction, entry, f"`{name}` may no longer be used on this server.")

    @model_enable.autocomplete("name")
    @model_disable.autocomplete("name")
    async def _model_names(self, interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        typed = current.casefold()
        # As /imagine's model autocomplete: a name too long for a choice could not come back intact.
        models = [model for model in self.bot.settings.models if typed in model.casefold()]
        return fit_select_options(
            [app_commands.Choice(name=model, value=model) for model in models if len(model) <= CHOICE_TEXT_LIMIT]
        )

    # -- inside ----------------------------------------------------------------------------------

    async def _add(
        self,
        interaction: discord.Interaction[Any],
        kind: str,
        name: str,
        file: discord.Attachment,
        *,
        weight: float = 1.0,
        nsfw: bool = False,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        fine_tune, entry = await self.moderation.add_fine_tune(
            guild_of(interaction),
            kind,
            name,
            filename=file.filename,
            size=file.size,
            read=file.read,
            actor_id=interaction.user.id,
            weight=weight,
            nsfw=nsfw,
        )
        use = f"<lora:{fine_tune.name}:{fine_tune.weight:g}>" if kind == "lora" else fine_tune.name
        marked = " It is marked NSFW: only age-restricted channels may use it." if fine_tune.nsfw else ""
        await interaction.followup.send(
            fit_content(
                f"Added the {kind} `{fine_tune.name}` ({fine_tune.family}); members use it as `{use}`.{marked}"
            ),
            ephemeral=True,
        )
        await post_to_modlog(self.bot, guild_of(interaction), describe_change(entry))

    async def _remove(self, interaction: discord.Interaction[Any], kind: str, name: str) -> None:
        entry = await self.moderation.remove_fine_tune(guild_of(interaction), kind, name, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"The {kind} `{name}` is no longer on this server's list.")

    async def _list(self, interaction: discord.Interaction[Any], kind: str) -> None:
        items = await self.moderation.fine_tunes(guild_of(interaction), kind)
        if not items:
            await reply_ephemeral(interaction, f"This server has no {kind}s yet: /{kind} add adds one.")
            return
        lines = [
            f"`{item.name}` · {item.family}"
            + (f" · weight {item.weight:g}" if kind == "lora" else "")
            + (" · NSFW" if item.nsfw else "")
            for item in items
        ]
        await reply_ephemeral(interaction, f"This server's {kind}s:\n" + "\n".join(lines))
