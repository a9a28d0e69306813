"""/quota set, /quota show, /quota reset: the credits members may spend per 24 hours."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.errors import InvalidRequest
from cogs._shared.moderators import guild_of, moderators_only
from cogs._shared.replies import reply_ephemeral
from cogs._shared.usage_text import describe_usage
from cogs.moderation._base import ModeratorCommands, moderator_group


class QuotaCommands(ModeratorCommands):
    quota_group = moderator_group("quota", "Credits members may spend per 24 hours.")

    @quota_group.command(name="permutations", description="How many jobs one /imagine may make ({a, b}, --repeat).")
    @app_commands.describe(limit="Jobs one /imagine may make with permutations and --repeat (1-12, default 4)")
    @moderators_only()
    async def quota_permutations(
        self, interaction: discord.Interaction[Any], limit: app_commands.Range[int, 1, 12]
    ) -> None:
        entry = await self.moderation.set_permutation_limit(guild_of(interaction), limit, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"One /imagine may now make up to {limit} jobs on this server.")

    @quota_group.command(name="set", description="Set the credits per 24 hours of a member, a role, or the server.")
    @app_commands.describe(
        limit="Credits per rolling 24 hours", user="The member", role="The role (give neither for the server default)"
    )
    @moderators_only()
    async def quota_set(
        self,
        interaction: discord.Interaction[Any],
        limit: app_commands.Range[int, 0, 1_000_000],
        user: discord.Member | None = None,
        role: discord.Role | None = None,
    ) -> None:
        if user is not None and role is not None:
            raise InvalidRequest("Give a user or a role, not both.")
        if user is None and role is None:
            # Neither: the server's default for everyone without an override of their own.
            entry = await self.moderation.set_server_credits(guild_of(interaction), limit, actor_id=interaction.user.id)
            await self._changed(
                interaction, entry, f"Members without an override may now spend {limit} credits per 24 hours."
            )
            return
        entry = await self.moderation.set_credits(
            guild_of(interaction),
            user_id=user.id if user else None,
            role_id=role.id if role else None,
            credits=limit,
            actor_id=interaction.user.id,
        )
        who = user.mention if user is not None else role.mention if role is not None else "nobody"
        await self._changed(interaction, entry, f"{who} may now spend {limit} credits per 24 hours.")

    @quota_group.command(name="show", description="Show a member's credits used and left.")
    @app_commands.describe(user="The member (default: you)")
    @moderators_only()
    async def quota_show(self, interaction: discord.Interaction[Any], user: discord.Member | None = None) -> None:
        member = user or interaction.user
        roles = tuple(role.id for role in getattr(member, "roles", ()) if not role.is_default())
        usage, limit = await self.moderation.credits_of(guild_of(interaction), member.id, roles)
        await reply_ephemeral(
            interaction,
            f"{member.mention}: {describe_usage(usage, limit, self.bot.clock())}",
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @quota_group.command(name="reset", description="Give a member their full credits back now.")
    @app_commands.describe(user="The member")
    @moderators_only()
    async def quota_reset(self, interaction: discord.Interaction[Any], user: discord.Member) -> None:
        entry = await self.moderation.reset_usage(guild_of(interaction), user.id, actor_id=interaction.user.id)
        await self._changed(interaction, entry, f"{user.mention} has their full credits back.")
