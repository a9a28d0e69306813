"""Members' pictures for /imagine are kept while a job may still start from them, and deleted after.

A picture is kept under ``IMAGES_DIR/sources`` while a job that names it waits, runs, or is done with its
result still posted (its re-roll starts from the same picture). Deleting the last such result, a job that
failed, an admission refused, all let it go; a restart sweeps what a crash left. Through the real service
(real SQLite, the tiny model), and through the real bot and the loopback Discord for Delete and ❌.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.errors import JobNotFound, NotAllowed, PromptRejected
from bot.images.uploads import SOURCES_FOLDER, UNUSED_PICTURE_GRACE_S
from bot.jobs.events import Cancelled
from bot.jobs.requests import ImagineOptions
from bot.jobs.service import Completed, Origin
from bot.runtime.core import Core, open_core
from bot.settings import Settings
from models.engine import DiffusionEngine
from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine, press_and_wait
from tests.fakediscord import FakeDiscord, FakeUpload
from tests.fakediscord.server import GuildSetup
from tests.helpers import NoNsfw, ServiceEvents, tiny_settings

settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot

GUILD, CHANNEL = 100, 200
ALICE, BOB = 1, 2


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


PICTURE = png(96, 96, (200, 40, 40))


def alice() -> Origin:
    return Origin(user_id=ALICE, guild_id=GUILD, channel_id=CHANNEL)


def core_settings(folder: Path) -> Settings:
    return tiny_settings(folder, daily_credits=100, preview_interval_s=0.0)


@pytest.fixture
async def core(tmp_path: Path, tiny_engine: DiffusionEngine) -> AsyncIterator[Core]:
    async with open_core(core_settings(tmp_path), engine=tiny_engine, classifier=NoNsfw()) as core:
        yield core


async def from_picture(core: Core, prompt: str = "a red barn", **options: object) -> int:
    """An /imagine from ``PICTURE``, run to its end; its job id."""
    ended = ServiceEvents()
    submitted = await core.service.imagine(
        ImagineOptions(prompt=prompt, **{"steps": 3, **options}), alice(), ended, picture=PICTURE
    )
    await ended.end()
    return submitted.job_id


def sources(core: Core) -> list[str]:
    folder = core.settings.images_dir / SOURCES_FOLDER
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


async def test_a_picture_goes_with_the_last_result_that_may_start_from_it(core: Core) -> None:
    first_id = await from_picture(core)
    ended = ServiceEvents()
    second_id = (await core.service.reroll(first_id, alice(), ended)).job_id  # 🔄: the same picture
    assert isinstance(await ended.end(), Completed)
    first, second = await core.store.get_job(first_id), await core.store.get_job(second_id)
    assert first is not None and second is not None
    picture = Path(str(first.recipe.source))
    assert second.recipe.source == first.recipe.source and picture.is_file()
    await core.service.delivered(first_id, 1001)  # the messages holding the two results
    await core.service.delivered(second_id, 1002)

    await core.service.result_deleted(first_id, 1001, actor_id=ALICE)
    assert picture.is_file()  # the re-roll's result may still be re-rolled
    await core.service.result_deleted(second_id, 5555, actor_id=ALICE)  # a copy /show posted, not the result
    assert picture.is_file()
    with pytest.raises(NotAllowed, match="Only the person who asked"):
        await core.service.result_deleted(second_id, 1002, actor_id=BOB)
    assert picture.is_file()

    await core.service.result_deleted(second_id, 1002, actor_id=BOB, is_moderator=True)
    assert not picture.exists() and sources(core) == []
    deleted = await core.store.get_job(second_id)
    assert deleted is not None and deleted.result_deleted_at is not None
    shown = await core.service.shown(second_id, actor_id=ALICE, guild_id=GUILD, is_moderator=False)
    assert shown.grid.data  # the job's own images stay: /show posts them again
    with pytest.raises(JobNotFound, match="The picture this job starts from is no longer available."):
        await core.service.reroll(second_id, alice())


async def test_a_picture_no_job_was_recorded_for_or_whose_job_was_cancelled_is_let_go(core: Core) -> None:
    await core.store.add_filter_term(GUILD, "clown", actor_id=99)
    with pytest.raises(PromptRejected):
        await core.service.imagine(ImagineOptions(prompt="a clown", steps=3), alice(), picture=PICTURE)
    assert sources(core) == []

    # Cancelled while it waits behind a longer job of the same member: it will never start.
    running = ServiceEvents()
    await core.service.imagine(ImagineOptions(prompt="a long one", steps=30), alice(), running)
    waiting = ServiceEvents()
    submitted = await core.service.imagine(
        ImagineOptions(prompt="a red barn", steps=3), alice(), waiting, picture=PICTURE
    )
    assert len(sources(core)) == 1
    await core.service.cancel(submitted.job_id, actor_id=ALICE)
    assert isinstance(await waiting.end(), Cancelled)
    assert sources(core) == []
    await running.end()

    # Refused while another job may start from the same picture: it stays.
    kept_id = await from_picture(core)
    with pytest.raises(PromptRejected):
        await core.service.imagine(ImagineOptions(prompt="a clown", steps=3), alice(), picture=PICTURE)
    kept = await core.store.get_job(kept_id)
    assert kept is not None and sources(core) == [Path(str(kept.recipe.source)).name]


async def test_a_restart_sweeps_the_pictures_no_job_names_once_past_the_grace(
    tmp_path: Path, tiny_engine: DiffusionEngine
) -> None:
    settings = core_settings(tmp_path)
    async with open_core(settings, engine=tiny_engine, classifier=NoNsfw()) as core:
        job = await core.store.get_job(await from_picture(core))
    assert job is not None
    folder = settings.images_dir / SOURCES_FOLDER
    long_ago = time.time() - UNUSED_PICTURE_GRACE_S - 60
    used, orphan, fresh, part = (
        Path(str(job.recipe.source)),
        folder / f"{'a' * 64}.png",  # written, and then the process died before its job was recorded
        folder / f"{'b' * 64}.png",  # an admission of another process may still record its job
        folder / f".{'c' * 64}.png.123-456.part",  # a write a crash cut short
    )
    for path in (orphan, fresh, part):
        path.write_bytes(PICTURE)
    for path in (used, orphan, part):
        os.utime(path, (long_ago, long_ago))

    async with open_core(settings, engine=tiny_engine, classifier=NoNsfw()) as core:
        await core.service.resume()  # what the bot does at start-up
        assert sources(core) == sorted([used.name, fresh.name])


# -- through Discord: the Delete button and ❌ ------------------------------------------------------------


async def test_deleting_the_results_through_discord_deletes_the_picture_after_the_last(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    picture = FakeUpload("barn.png", PICTURE, "image/png")
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a red barn", image=picture, seed=5))
    again = await press_and_wait(fake_discord, grid, "🔄", world)
    first_id = int(grid.button(label="Delete")["custom_id"].split(":")[2])
    path = Path(str((await core.store.get_job(first_id)).recipe.source))
    assert path.is_file()

    press = await fake_discord.press_button(grid, user=world.member, label="Delete")
    await press.wait_for_response()
    await fake_discord.wait_until(lambda: grid.deleted or None, timeout=30, what="the first result deleted")

    async def recorded() -> bool:
        job = await core.store.get_job(first_id)
        return job is not None and job.result_deleted_at is not None

    deadline = time.monotonic() + 30
    while not await recorded():
        assert time.monotonic() < deadline, "the deletion was never recorded"
        await asyncio.sleep(0.05)
    assert path.is_file()  # the re-roll may still start from it

    await fake_discord.react(again, "❌", user=world.member)
    await fake_discord.wait_until(
        lambda: (again.deleted and not path.exists()) or None, timeout=30, what="the picture deleted"
    )
