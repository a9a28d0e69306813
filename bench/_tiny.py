"""What the benchmarks share: settings for the real bot on ``builtin:tiny``, on the CPU, in one folder.

They are the tests' settings (:func:`tests.helpers.tiny_settings`), with the token a Discord client
needs and credits enough that no benchmark runs out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.settings import Settings
from tests import helpers


def tiny_settings(folder: Path, **overrides: Any) -> Settings:
    return helpers.tiny_settings(folder, **{"discord_token": "fake-bot-token", "daily_credits": 1000, **overrides})
