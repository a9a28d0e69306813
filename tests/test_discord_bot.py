"""The real bot as a whole against a Discord-compatible server on 127.0.0.1: as a process, composed, under load.

The tests of what it does are by topic in ``test_discord_imagine.py``, ``test_discord_buttons.py``
and ``test_discord_moderation.py``; their shared fixtures and helpers in ``discord_bot_helpers.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bot.settings import Settings
from models.engine import DiffusionEngine
from models.tiny import TINY_MODEL_ID
from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine, running_bot
from tests.fakediscord import FakeDiscord
from tests.fakediscord.fixtures import running_client
from tests.fakediscord.server import GuildSetup
from tests.helpers import NoNsfw

ROOT = Path(__file__).resolve().parent.parent

# The shared fixtures, re-exported so pytest finds them here.
settings = discord_bot_helpers.settings


async def test_python_m_bot_serves_and_stops_cleanly_on_sigterm(
    fake_discord: FakeDiscord, world: GuildSetup, tmp_path: Path, model_cache_dir: Path
) -> None:
    """``DISCORD_TOKEN=x SD_MODEL=builtin:tiny python -m bot`` against the fake, then SIGTERM."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": "a-secret-token-123",
        "SD_MODEL": TINY_MODEL_ID,
        "DEVICE": "cpu",
        "DATABASE_PATH": str(tmp_path / "bot.sqlite3"),
        "IMAGES_DIR": str(tmp_path / "images"),
        "MODEL_CACHE_DIR": str(model_cache_dir),
        "DISCORD_API_URL": fake_discord.api_base,
        "DISCORD_GATEWAY_URL": fake_discord.gateway_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        await fake_discord.wait_until(lambda: fake_discord.find_command("imagine"), timeout=60, what="commands synced")
        await fake_discord.wait_for_gateway(timeout=30)
        ix = await imagine(fake_discord, world, seed=1)
        await ix.wait_for_response(timeout=3)
        grid = await finished_grid(ix)
        assert grid.attachments[0].open_image().size == (128, 128)
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
        log = (await process.stderr.read()).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, log
    assert "a-secret-token-123" not in log
    assert "synced" in log


async def test_the_bot_composes_from_settings_store_and_worker_as_designed(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    """``Bot(settings=..., store=..., worker=...)``: the Bot builds its service and starts the worker."""
    from bot.app import Bot
    from bot.jobs.attempts import JobAttempts
    from bot.jobs.recipe import Recipe
    from bot.workers.dispatch import Dispatcher
    from bot.workers.inprocess import InProcessTransport
    from db.store import Store

    store = await Store.open(settings.database_path, recipe=Recipe)
    worker = Dispatcher(
        InProcessTransport(tiny_engine, classifier=NoNsfw()), JobAttempts(store), preview_interval_s=0.0
    )
    bot = Bot(settings=settings, store=store, worker=worker)
    async with running_client(bot, fake_discord, token=settings.discord_token):
        assert worker.running
        grid = await finished_grid(await imagine(fake_discord, world))
        assert grid.attachments[0].open_image().size == (128, 128)
    assert not worker.running
    with pytest.raises(RuntimeError, match="closed"):
        await store.filter_terms(1)  # Bot.close() closed the database after the worker


async def test_a_hundred_concurrent_imagines_are_all_answered_in_time_and_none_lost(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    members = [fake_discord.add_member(world.guild, f"user{n}") for n in range(100)]
    busy = replace(settings, queue_max_total=100, batch_max_images=8, preview_interval_s=1.5)
    async with running_bot(fake_discord, busy, tiny_engine):
        interactions = await asyncio.gather(
            *(
                imagine(fake_discord, world, user=member, prompt=f"a fox number {n}", count=1, steps=1)
                for n, member in enumerate(members)
            )
        )
        answers = await asyncio.gather(*(ix.wait_for_response(timeout=3) for ix in interactions))
        assert max(answer.elapsed for answer in answers) < 3
        assert not any(answer.ephemeral for answer in answers)
        grids = await asyncio.gather(*(finished_grid(ix, timeout=120) for ix in interactions))
    assert len({grid.id for grid in grids}) == 100
