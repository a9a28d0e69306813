"""/queue, /stats and /help, the bot's presence line, and the ⭐ counts of posted results.

* ``/queue`` (ephemeral): jobs waiting and running on this server and on all, the member's own
  jobs with their places, and an estimated wait from measured batch times.
* ``/stats``: this server's images today, this week and in all (UTC), its most used models,
  styles and LoRAs, its busiest hours and most ⭐-starred results; a member with Manage Server
  is also shown, ephemerally, the members who used the most credits.
* ``/help`` (ephemeral): what the bot does here and every command in one line, in one embed.
* The presence ("Watching 3 in queue · /imagine") is checked every few seconds and sent only
  when its text changed and ``PRESENCE_MIN_INTERVAL_S`` have passed since the last one sent.
* A ⭐ added to or taken from a posted result is counted (``JobStats.star``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.jobs.messages import (
    EMBED_FIELD_VALUE_LIMIT,
    EMBED_FIELDS_LIMIT,
    EMBED_TOTAL_LIMIT,
    fit_embed,
    fit_text,
)
from bot.jobs.stats import JobStats, QueueReport, ServerFacts
from cogs._shared.moderators import is_moderator
from cogs._shared.origin import origin_of
from cogs._shared.replies import reply_ephemeral
from cogs._shared.usage_text import credits, describe_usage

if TYPE_CHECKING:
    from bot.app import LatentcordBot
    from bot.jobs.stats import GuildStats, Ranked

log = logging.getLogger(__name__)

#: The least time between two presence updates the bot sends (Discord rate-limits them too).
PRESENCE_MIN_INTERVAL_S: Final = 30.0
#: How often the queue is looked at for the presence; only a change, past the interval, is sent.
PRESENCE_TICK_S: Final = 5.0
STAR: Final = frozenset({"⭐"})
NONE_YET: Final = "none yet"
#: Room kept in /help's embed for the command list, whatever the lists of models, styles and LoRAs hold.
HELP_COMMANDS_ROOM: Final = 2500


def presence_text(waiting: int) -> str:
    """The status line after "Watching"."""
    return f"{waiting} in queue · /imagine"


def about(seconds: float) -> str:
    """'about 40 s', 'about 3 min', 'about 1 h 5 min'."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"


def jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


def images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def describe_queue(report: QueueReport, *, in_guild: bool) -> str:
    counts = report.counts
    here = "On this server" if in_guild else "In direct messages"
    lines = [
        f"{here}: {counts.guild_waiting} waiting, {counts.guild_running} running.",
        f"On all servers: {counts.all_waiting} waiting, {counts.all_running} running.",
    ]
    if report.mine:
        lines.append("Your jobs:")
        for job in report.mine:
            if job.position == 0:
                lines.append(f"• job {job.job_id}: running now")
            else:
                wait = "" if job.wait_s is None else f", starts in {about(job.wait_s)}"
                lines.append(f"• job {job.job_id}: position {job.position}{wait}")
    else:
        lines.append("You have no jobs in the queue.")
    if report.workers == 0:
        lines.append("No GPU worker is online yet; jobs wait until one is.")
    elif report.new_job_wait_s is None:
        lines.append("No batch has been timed yet, so there is no estimate of the wait.")
    elif report.new_job_wait_s == 0:  # nothing waits or runs; else at least "about 1 s"
        lines.append("A job asked for now would start at once.")
    else:
        lines.append(f"A job asked for now would start in {about(report.new_job_wait_s)}.")
    return "\n".join(lines)


def _ranking(ranked: Sequence[tuple[str, int]]) -> str:
    """Numbered lines: "1. tiny — 4 jobs"."""
    if not ranked:
        return NONE_YET
    return "\n".join(f"{place}. {name} — {jobs(count)}" for place, (name, count) in enumerate(ranked, 1))


def _pairs(ranked: Sequence[Ranked], label: str = "{}") -> list[tuple[str, int]]:
    return [(label.format(item.name), item.count) for item in ranked]


def stats_embed(stats: GuildStats, guild_id: int, guild_name: str) -> dict[str, Any]:
    starred = (
        "\n".join(
            f"{place}. [job {result.job_id}](https://discord.com/channels/{guild_id}/{result.channel_id}/"
            f"{result.message_id}) — {result.stars} ⭐"
            for place, result in enumerate(stats.starred, 1)
        )
        or NONE_YET
    )
    return fit_embed(
        {
            "title": f"Latentcord on {guild_name}",
            "description": (
                f"Images made: {stats.images_today} today, {stats.images_week} this week, "
                f"{stats.images_all} in all (days and weeks in UTC)."
            ),
            "fields": [
                {"name": "Most used models", "value": _ranking(_pairs(stats.models)), "inline": False},
                {"name": "Most used styles", "value": _ranking(_pairs(stats.styles)), "inline": False},
                {"name": "Most used LoRAs", "value": _ranking(_pairs(stats.loras, "`{}`")), "inline": False},
                {"name": "Busiest hours (UTC)", "value": _ranking(_pairs(stats.hours, "{}:00")), "inline": False},
                {"name": "Most ⭐-starred results", "value": starred, "inline": False},
            ],
        }
    )


def top_members_text(stats: GuildStats) -> str:
    if not stats.members:
        return "Top members by credits used: none yet."
    lines = ["Top members by credits used (charges less refunds, in all):"]
    lines += [f"{place}. <@{member.name}> — {credits(member.count)}" for place, member in enumerate(stats.members, 1)]
    return "\n".join(lines)


def listed(names: Sequence[str], room: int) -> str:
    """``names`` joined in ``room`` characters, with "and N more" for those that do not fit."""
    if not names:
        return "none"
    shown: list[str] = []
    for index, name in enumerate(names):
        rest = len(names) - index - 1
        tail = f", and {rest} more" if rest else ""
        candidate = ", ".join([*shown, f"`{name}`"])
        if len(candidate) + len(tail) > room:
            left = len(names) - len(shown)
            return ", ".join(shown) + f", and {left} more" if shown else f"{len(names)}, too long to list here"
        shown.append(f"`{name}`")
    return ", ".join(shown)


def command_lines(commands_: Sequence[app_commands.Command[Any, ..., Any] | app_commands.Group]) -> list[str]:
    lines = []
    for command in sorted(commands_, key=lambda c: c.name):
        if isinstance(command, app_commands.Group):
            subcommands = "|".join(sorted(sub.name for sub in command.commands))
            lines.append(f"`/{command.name} {subcommands}` — {command.description}")
        else:
            lines.append(f"`/{command.name}` — {command.description}")
    return lines


def help_embed(facts: ServerFacts, credits_line: str, command_list: Sequence[str], place: str) -> dict[str, Any]:
    """One embed within Discord's limits: the command list always whole, the lists cut with "and N more"."""
    if facts.nsfw_allowed_here:
        nsfw = "Allowed: this channel is age-restricted and the server allows NSFW in such channels."
    elif facts.nsfw_mode is None:
        nsfw = "Not allowed in direct messages; images that look NSFW are withheld and refunded."
    elif facts.nsfw_mode == "age-restricted":
        nsfw = "Not here: only in this server's age-restricted channels. Images that look NSFW are withheld."
    else:
        nsfw = "Not allowed: this server blocks NSFW everywhere. Images that look NSFW are withheld and refunded."
    title = f"Latentcord on {place}"
    description = (
        "I draw images from your words on this community's own GPU: `/imagine` a prompt, then use the buttons "
        "under the grid (U1-U4 upscale, V1-V4 vary, 🔄 re-roll). ✉️ on a result sends it to you; ⭐ stars it."
    )
    fixed = [
        {"name": "Your credits", "value": credits_line},
        {"name": "NSFW in this channel", "value": nsfw},
    ]
    # 1. The commands, one line each, in as few fields as fit.
    command_fields: list[dict[str, str]] = []
    chunk: list[str] = []
    for line in command_list:
        line = fit_text(line, EMBED_FIELD_VALUE_LIMIT)
        if chunk and len("\n".join([*chunk, line])) > EMBED_FIELD_VALUE_LIMIT:
            command_fields.append(
                {"name": "Commands" if not command_fields else "More commands", "value": "\n".join(chunk)}
            )
            chunk = []
        chunk.append(line)
    if chunk:
        command_fields.append(
            {"name": "Commands" if not command_fields else "More commands", "value": "\n".join(chunk)}
        )
    # 2. What is left of the 6,000 characters goes to the lists, shared equally.
    used = len(title) + len(description) + sum(len(f["name"]) + len(f["value"]) for f in fixed + command_fields)
    list_names = ("Models", "Styles", "LoRAs")
    room = EMBED_TOTAL_LIMIT - used - sum(len(name) for name in list_names) - 50
    each = max(20, min(EMBED_FIELD_VALUE_LIMIT, room // len(list_names)))
    lists = [
        {"name": name, "value": listed(values, each)}
        for name, values in zip(list_names, (facts.models, facts.styles, facts.loras), strict=True)
    ]
    fields = (lists + fixed + command_fields)[:EMBED_FIELDS_LIMIT]
    return fit_embed({"title": title, "description": description, "fields": [{**f, "inline": False} for f in fields]})


class Status(commands.Cog):
    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot
        self.stats = JobStats(bot.service, clock=bot.clock)
        self.presence_shown: str | None = None
        self.presence_sent_at: float | None = None

    async def cog_load(self) -> None:
        self.bot.service.add_observer(self.stats.observe)
        self.update_presence.start()

    async def cog_unload(self) -> None:
        self.update_presence.cancel()
        self.bot.service.remove_observer(self.stats.observe)

    # -- presence ----------------------------------------------------------------------------

    @tasks.loop(seconds=PRESENCE_TICK_S)
    async def update_presence(self) -> None:
        text = presence_text(self.stats.queue_length())
        now = self.bot.clock()
        if text == self.presence_shown:
            return
        if self.presence_sent_at is not None and now - self.presence_sent_at < PRESENCE_MIN_INTERVAL_S:
            return
        await self.bot.change_presence(activity=discord.Activity(type=discord.ActivityType.watching, name=text))
        self.presence_shown, self.presence_sent_at = text, now

    @update_presence.before_loop
    async def _before_presence(self) -> None:
        await self.bot.wait_until_ready()

    @update_presence.error
    async def _presence_failed(self, exc: BaseException) -> None:
        log.error("the presence loop stopped", exc_info=exc)

    # -- commands ----------------------------------------------------------------------------

    @app_commands.command(name="queue", description="Jobs waiting and running, your places, and the wait.")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def queue(self, interaction: discord.Interaction[Any]) -> None:
        report = await self.stats.queue(interaction.guild_id, interaction.user.id)
        await reply_ephemeral(interaction, describe_queue(report, in_guild=interaction.guild_id is not None))

    @app_commands.command(name="stats", description="This server's images, favourite models, styles and LoRAs.")
    @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
    async def stats_command(self, interaction: discord.Interaction[Any]) -> None:
        guild_id = interaction.guild_id
        if guild_id is None:
            await reply_ephemeral(interaction, "/stats is about a server: use it in one.")
            return
        stats = await self.stats.guild_stats(guild_id)
        name = interaction.guild.name if interaction.guild is not None else "this server"
        embed = discord.Embed.from_dict(stats_embed(stats, guild_id, name))
        await interaction.response.send_message(embed=embed, allowed_mentions=discord.AllowedMentions.none())
        if is_moderator(interaction):
            await interaction.followup.send(
                top_members_text(stats), ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )

    @app_commands.command(name="help", description="What the bot does here, and every command in one line.")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def show_help(self, interaction: discord.Interaction[Any]) -> None:
        origin = origin_of(interaction)
        facts = await self.stats.server_facts(origin)
        usage, limit = await self.bot.moderation.credits_of(origin.quota_guild, origin.user_id, origin.role_ids)
        place = interaction.guild.name if interaction.guild is not None else "direct messages"
        commands_ = [
            c for c in self.bot.tree.get_commands() if isinstance(c, app_commands.Command | app_commands.Group)
        ]
        embed = help_embed(facts, describe_usage(usage, limit, self.bot.clock()), command_lines(commands_), place)
        await interaction.response.send_message(embed=discord.Embed.from_dict(embed), ephemeral=True)

    # -- ⭐ on results ------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._starred(payload, 1)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._starred(payload, -1)

    async def _starred(self, payload: discord.RawReactionActionEvent, change: int) -> None:
        me = self.bot.user.id if self.bot.user else None
        if (payload.emoji.name or "") not in STAR or payload.user_id == me:
            return
        if payload.message_author_id is not None and payload.message_author_id != me:
            return
        await self.stats.star(payload.message_id, change)


async def setup(bot: LatentcordBot) -> None:
    await bot.add_cog(Status(bot))
