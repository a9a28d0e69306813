"""The two buttons of a question a member answers with Yes or No (a /imagine plan, /privacy delete)."""

from __future__ import annotations

from typing import Any

import discord


def choice_button(custom_id: str, choice: str, *, yes: str, yes_style: discord.ButtonStyle) -> discord.ui.Button[Any]:
    """The button for ``choice`` ("yes" or "no"): ``yes`` in ``yes_style``, or a grey No."""
    label, style = (yes, yes_style) if choice == "yes" else ("No", discord.ButtonStyle.secondary)
    return discord.ui.Button(label=label, style=style, custom_id=custom_id)
