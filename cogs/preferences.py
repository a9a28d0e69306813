"""/prefer and /settings: a member's own switches and defaults, answered to them alone.

``/settings`` is an ephemeral panel, Midjourney's way: select menus for the model, the style and
the steps; buttons that step through the aspect, guidance and count presets; a button that opens
a window for the default negative prompt; Remix on/off; and **Reset**, back to the server's
defaults. Each change is kept in SQLite at once and the panel redrawn. Options given on a command
always win over these. The panel's parts are ``DynamicItem``s (``lcset:<what>``): they act for
whoever presses them, so a panel still works after a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import send_ephemeral
from bot.jobs.messages import fit_content
from bot.jobs.options import ASPECT, COUNT, GUIDANCE, OPTIONS, STEPS, NumberOption
from bot.jobs.records import MemberPreferences
from cogs._shared.replies import reply_ephemeral
from cogs._shared.windows import submitted_value

if TYPE_CHECKING:
    from bot.app import LatentcordBot

REMIX_ON = (
    "Remix mode is now on: V1-V4, 🔄, Vary, Zoom Out and Pan first open a window where you can change the prompt."
)
REMIX_OFF = "Remix mode is now off: those buttons start at once with the same prompt."
DEFAULT = "default"  # the value of a menu's "the server's default" entry
NEGATIVE_WINDOW_ID = "lcset-window:negative"
NEGATIVE_INPUT_ID = "negative"
# What the panel offers, from the option table (bot.jobs.options); None: the server's default.
STEP_PRESETS = STEPS.presets
GUIDANCE_PRESETS = (None, *GUIDANCE.presets)
ASPECT_PRESETS = (None, *ASPECT.choices)
COUNT_PRESETS = (None, *range(COUNT.low, COUNT.high + 1))
#: The buttons that step through presets, by the option each sets.
STEPPED: dict[str, tuple[Any, ...]] = {
    ASPECT.name: ASPECT_PRESETS,
    GUIDANCE.name: GUIDANCE_PRESETS,
    COUNT.name: COUNT_PRESETS,
}


def _next(presets: tuple[Any, ...], current: Any) -> Any:
    index = presets.index(current) if current in presets else 0
    return presets[(index + 1) % len(presets)]


def describe(preferences: MemberPreferences) -> str:
    def shown(value: Any, default: str = "server default") -> str:
        return default if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    return "\n".join(
        [
            "**Your defaults** (an option you give on a command always wins):",
            f"Model: {shown(preferences.model)} · Aspect: {shown(preferences.aspect)} · "
            f"Steps: {shown(preferences.steps, 'the model’s')} · Guidance: {shown(preferences.guidance, 'the model’s')} · "
            f"Count: {shown(preferences.count)}",
            f"Style: {shown(preferences.style, 'none')} · Negative prompt: {shown(preferences.negative, 'none')} · "
            f"Remix: {'on' if preferences.remix else 'off'}",
        ]
    )


def settings_panel(preferences: MemberPreferences, models: list[str], styles: list[str]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(
        SettingSelect(
            "model",
            [(DEFAULT, "Model: the server's default", preferences.model is None)]
            + [(model, f"Model: {model}"[:100], model == preferences.model) for model in models[:24]],
            row=0,
        )
    )
    view.add_item(
        SettingSelect(
            "style",
            [(DEFAULT, "Style: none", preferences.style is None)]
            + [(name, f"Style: {name}", name == preferences.style) for name in styles[:24]],
            row=1,
        )
    )
    view.add_item(
        SettingSelect(
            "steps",
            [(DEFAULT, "Steps: the model's", preferences.steps is None)]
            + [(str(steps), f"Steps: {steps}", steps == preferences.steps) for steps in STEP_PRESETS],
            row=2,
        )
    )
    aspect = preferences.aspect or "server default"
    guidance = "model's" if preferences.guidance is None else f"{preferences.guidance:g}"
    count = "server default" if preferences.count is None else str(preferences.count)
    view.add_item(SettingButton("aspect", f"Aspect: {aspect}", row=3))
    view.add_item(SettingButton("guidance", f"Guidance: {guidance}", row=3))
    view.add_item(SettingButton("count", f"Count: {count}", row=3))
    view.add_item(SettingButton("negative", "Negative prompt…", row=3))
    remix = "on" if preferences.remix else "off"
    view.add_item(SettingButton("remix", f"Remix: {remix}", row=3, primary=preferences.remix))
    view.add_item(SettingButton("reset", "Reset", row=4, danger=True))
    return view


class SettingSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"lcset:(?P<what>model|style|steps)"):
    def __init__(
        self, what: str, options: list[tuple[str, str, bool]] | None = None, *, row: int | None = None
    ) -> None:
        choices = [
            discord.SelectOption(label=label, value=value, default=chosen) for value, label, chosen in options or []
        ]
        select: discord.ui.Select[Any] = discord.ui.Select(
            custom_id=f"lcset:{what}", options=choices or [discord.SelectOption(label="-", value=DEFAULT)]
        )
        super().__init__(select, row=row)
        self.what = what

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> SettingSelect:
        return cls(match["what"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        values = interaction.data.get("values") if interaction.data else None
        chosen = str(values[0]) if isinstance(values, list) and values else DEFAULT
        value: str | int | float | None = None if chosen == DEFAULT else chosen
        option = OPTIONS[self.what]
        if isinstance(option, NumberOption) and value is not None:
            value = option.kind(value)
        await _change(interaction, lambda service, user: service.set_default(user, self.what, value))


class SettingButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"lcset:(?P<what>aspect|guidance|count|negative|remix|reset)",
):
    def __init__(
        self, what: str, label: str = "", *, row: int | None = None, primary: bool = False, danger: bool = False
    ) -> None:
        style = (
            discord.ButtonStyle.danger
            if danger
            else discord.ButtonStyle.primary
            if primary
            else discord.ButtonStyle.secondary
        )
        button: discord.ui.Button[Any] = discord.ui.Button(label=label or what, style=style, custom_id=f"lcset:{what}")
        super().__init__(button, row=row)
        self.what = what

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> SettingButton:
        return cls(match["what"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        service = interaction.client.service
        user = interaction.user.id
        current = await service.preferences(user)
        match self.what:
            case what if what in STEPPED:
                chosen = _next(STEPPED[what], getattr(current, what))
                await _change(interaction, lambda s, u: s.set_default(u, what, chosen))
            case "remix":
                await _change(interaction, lambda s, u: s.toggle_remix(u))
            case "reset":
                await _change(interaction, lambda s, u: s.reset_preferences(u))
            case "negative":
                await interaction.response.send_modal(NegativeModal(current.negative or ""))
            case _:
                await send_ephemeral(interaction, "This button is from a newer or older version of the bot.")


class NegativeModal(discord.ui.Modal, title="Default negative prompt"):
    """The window for the default negative prompt.

    Its submission is answered by the cog from its custom id (``Preferences.on_interaction``), not by
    this object, which a restart or its 15 minutes would lose while the window is still open.
    """

    def __init__(self, current: str) -> None:
        super().__init__(timeout=15 * 60, custom_id=NEGATIVE_WINDOW_ID)
        self.negative: discord.ui.TextInput[NegativeModal] = discord.ui.TextInput(
            label="Negative prompt (empty: none)",
            custom_id=NEGATIVE_INPUT_ID,
            style=discord.TextStyle.paragraph,
            default=current[:1000],
            required=False,
            max_length=1000,
        )
        self.add_item(self.negative)


async def _change(interaction: discord.Interaction[Any], change: Any) -> None:
    """Apply ``change(service, user_id)``, then redraw the panel (or answer with one, from a window)."""
    bot = interaction.client
    try:
        preferences = await change(bot.service, interaction.user.id)
        if isinstance(preferences, bool):  # toggle_remix answers with the new state only
            preferences = await bot.service.preferences(interaction.user.id)
        content, view = await _panel(bot, interaction, preferences)
        if interaction.type == discord.InteractionType.modal_submit and interaction.message is None:
            await interaction.response.send_message(content, view=view, ephemeral=True)
        else:
            await interaction.response.edit_message(content=content, view=view)
    except Exception as error:
        await bot.report_error(interaction, error)


async def _panel(
    bot: LatentcordBot, interaction: discord.Interaction[Any], preferences: MemberPreferences
) -> tuple[str, discord.ui.View]:
    models = await bot.service.enabled_models(interaction.guild_id)
    styles = [style.name for style in await bot.service.styles(interaction.guild_id)]
    return fit_content(describe(preferences)), settings_panel(preferences, models, styles)


class Preferences(commands.Cog):
    prefer = app_commands.Group(
        name="prefer",
        description="Your own preferences",
        allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=False),
    )

    def __init__(self, bot: LatentcordBot) -> None:
        self.bot = bot

    @prefer.command(name="remix", description="Turn Remix mode on or off: edit the prompt when you vary or re-roll.")
    async def remix(self, interaction: discord.Interaction[Any]) -> None:
        on = await self.bot.service.toggle_remix(interaction.user.id)
        await reply_ephemeral(interaction, REMIX_ON if on else REMIX_OFF)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """A submitted negative prompt window, read from its custom id: the one opened before a restart too."""
        data = interaction.data
        if interaction.type is not discord.InteractionType.modal_submit or data is None:
            return
        if data.get("custom_id") != NEGATIVE_WINDOW_ID:
            return
        text = " ".join((submitted_value(data, NEGATIVE_INPUT_ID) or "").split()) or None
        await _change(interaction, lambda service, user: service.set_default(user, "negative", text))

    @app_commands.command(name="settings", description="Your default model, aspect, steps, style and more.")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def settings(self, interaction: discord.Interaction[Any]) -> None:
        preferences = await self.bot.service.preferences(interaction.user.id)
        content, view = await _panel(self.bot, interaction, preferences)
        await interaction.response.send_message(content, view=view, ephemeral=True)


async def setup(bot: LatentcordBot) -> None:
    bot.add_dynamic_items(SettingSelect, SettingButton)
    await bot.add_cog(Preferences(bot))
