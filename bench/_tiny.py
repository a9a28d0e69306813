"""What the benchmarks share: settings for the real bot on ``builtin:tiny``, on the CPU, in one folder."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.settings import Settings
from models.tiny import TINY_MODEL_ID


def tiny_settings(folder: Path, **overrides: Any) -> Settings:
    defaults = Settings(
        discord_token="fake-bot-token",
        sd_model=TINY_MODEL_ID,
        database_path=folder / "bot.sqlite3",
        images_dir=folder / "images",
        model_cache_dir=folder / "models",
        device="cpu",
        daily_credits=1000,
    )
    return replace(defaults, **overrides)
