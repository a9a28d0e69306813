"""The service end to end without Discord: real SQLite, real worker, the tiny model."""

from __future__ import annotations

import asyncio
import io
import math
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.errors import InvalidRequest, JobNotFound, NotAllowed, PromptRejected, QueueFull, QuotaExceeded
from bot.images.grid import grid_cells
from bot.jobs.events import Cancelled, Failed, Progress, Queued, Started
from bot.jobs.recipe import JobKind
from bot.jobs.requests import ImagineOptions
from bot.jobs.service import Completed, Origin, ServiceEvent
from bot.runtime.core import Core, open_core
from bot.settings import Settings
from models.engine import DiffusionEngine
from models.tiny import TINY_MODEL_ID
from tests.helpers import NoNsfw, pixels, tiny_settings
from tests.recipes import a_recipe

GUILD, CHANNEL, NSFW_CHANNEL = 100, 200, 201
ALICE, BOB = 1, 2


class Events:
    """A listener that records one job's events and waits for its end."""

    def __init__(self) -> None:
        self.events: list[ServiceEvent] = []
        self.ended = asyncio.Event()
        self.started = asyncio.Event()

    def __call__(self, event: ServiceEvent) -> None:
        self.events.append(event)
        if isinstance(event, Started):
            self.started.set()
        if isinstance(event, Completed | Failed | Cancelled):
            self.ended.set()

    async def start(self, timeout: float = 60) -> None:
        await asyncio.wait_for(self.started.wait(), timeout)

    async def end(self, timeout: float = 60) -> ServiceEvent:
        await asyncio.wait_for(self.ended.wait(), timeout)
        return self.events[-1]


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    """The tiny model's settings with these tests' budget: 20 credits a day, and no previews to wait for."""
    return tiny_settings(tmp_path, **{"daily_credits": 20, "preview_interval_s": 0.0, **overrides})


@pytest.fixture
def classifier() -> NoNsfw:
    return NoNsfw()


@pytest.fixture
async def core(tmp_path: Path, tiny_engine: DiffusionEngine, classifier: NoNsfw) -> AsyncIterator[Core]:
    async with open_core(settings_for(tmp_path), engine=tiny_engine, classifier=classifier) as core:
        yield core


def alice(channel: int = CHANNEL, **kwargs: object) -> Origin:
    return Origin(user_id=ALICE, guild_id=GUILD, channel_id=channel, **kwargs)


FAST = {"steps": 3}


async def imagine(core: Core, prompt: str = "a red fox in snow", origin: Origin | None = None, **options):
    events = Events()
    submitted = await core.service.imagine(
        ImagineOptions(prompt=prompt, **{**FAST, **options}), origin or alice(), events
    )
    return submitted, events


async def test_a_job_is_charged_recorded_generated_and_written(core: Core) -> None:
    submitted, events = await imagine(core, seed=7)
    assert submitted.cost == 1  # 4 images x 3/20 of the default steps, rounded up
    finished = await events.end()
    assert isinstance(finished, Completed)
    kinds = [type(event) for event in events.events]
    assert kinds[:2] == [Queued, Started] and Progress in kinds
    result = finished.result
    assert result.job.status == "done"
    assert result.job.recipe.seeds == (7, 8, 9, 10)
    with Image.open(io.BytesIO(result.grid.data)) as grid:
        assert grid.format == "PNG" and grid.size == (128, 128)
        assert 'Seeds: "7, 8, 9, 10"' in grid.text["parameters"]
        cells = [pixels(cell) for cell in grid_cells(grid.convert("RGB"), 4)]
    # Each image's own file follows the grid: the same pixels, its own seed.
    paths = await core.service.image_files(result.job)
    assert paths == result.image_paths
    for path, cell, seed in zip(paths, cells, (7, 8, 9, 10), strict=True):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (64, 64)
            assert f"Seed: {seed}," in image.text["parameters"] and "Seeds:" not in image.text["parameters"]
            assert np.array_equal(pixels(image.convert("RGB")), cell)
    usage = await core.store.usage(GUILD, ALICE)
    assert usage.used == 1


async def test_image_files_lost_in_a_crash_are_cut_again_from_the_grid(core: Core) -> None:
    _, events = await imagine(core, seed=3)
    finished = await events.end()
    assert isinstance(finished, Completed)
    paths = await core.service.image_files(finished.result.job)
    before = [path.read_bytes() for path in paths]
    for path in paths:
        path.unlink()  # as if the bot died between posting the grid and writing these
    assert [path.read_bytes() for path in await core.service.image_files(finished.result.job)] == before
    # A variation of image 2 cut again from the grid starts from it as usual.
    paths[1].unlink()
    variation_events = Events()
    await core.service.variation(finished.result.job.id, 1, alice(), variation_events)
    variation = await variation_events.end()
    assert isinstance(variation, Completed) and variation.result.job.recipe.parent_image == 1
    assert paths[1].read_bytes() == before[1]


async def test_a_default_imagine_costs_four_credits(core: Core) -> None:
    submitted, events = await imagine(core, steps=None)
    assert submitted.cost == 4
    await events.end()


async def test_rejected_prompt_charges_and_queues_nothing(core: Core) -> None:
    with pytest.raises(PromptRejected, match="NSFW prompts are not allowed in this channel"):
        await imagine(core, "a n u d e woman on a beach")
    await core.store.add_filter_term(GUILD, "clown", actor_id=99)
    with pytest.raises(PromptRejected, match="moderators have blocked"):
        await imagine(core, "a scary cl0wn", origin=alice(channel_age_restricted=True))
    assert (await core.store.usage(GUILD, ALICE)).used == 0
    assert await core.store.unfinished_jobs() == []
    assert core.worker.queued_count == 0


async def test_nsfw_prompts_pass_only_in_age_restricted_channels_of_permissive_guilds(core: Core) -> None:
    with pytest.raises(PromptRejected, match="this server blocks them everywhere"):
        await imagine(core, "nsfw art", origin=alice(NSFW_CHANNEL, channel_age_restricted=True))
    await core.store.set_nsfw_mode(GUILD, "age-restricted", actor_id=99)
    with pytest.raises(PromptRejected, match="only in this server's age-restricted channels"):
        await imagine(core, "nsfw art", origin=alice(channel_age_restricted=False))
    submitted, events = await imagine(core, "nsfw art", origin=alice(NSFW_CHANNEL, channel_age_restricted=True))
    await events.end()
    assert submitted.job_id
    dm = Origin(user_id=ALICE)
    with pytest.raises(PromptRejected, match="direct messages"):
        await imagine(core, "nsfw art", origin=dm)


async def test_quota_runs_out_with_a_sentence_and_nothing_charged(core: Core) -> None:
    await core.store.set_quota_override(GUILD, user_id=ALICE, credits=5, actor_id=99)
    first, events = await imagine(core, steps=None)  # 4 credits
    await events.end()
    with pytest.raises(QuotaExceeded) as raised:
        await imagine(core, steps=None)
    message = str(raised.value)
    assert message.startswith("This job costs 4 credits but you have 1 of 5 left in the last 24 hours")
    assert "free up in" in message
    assert (await core.store.usage(GUILD, ALICE)).used == 4


async def test_queue_full_is_refused_before_charging(tmp_path: Path, tiny_engine: DiffusionEngine) -> None:
    settings = settings_for(tmp_path, queue_max_per_user=1)
    async with open_core(settings, engine=tiny_engine, classifier=NoNsfw()) as core:
        _, first = await imagine(core, steps=20)
        await first.start()
        _, second = await imagine(core)  # the first is running, so there is room for one waiting
        with pytest.raises(QueueFull, match="already have 1 jobs waiting"):
            await imagine(core)
        used = (await core.store.usage(GUILD, ALICE)).used
        await first.end()
        await second.end()
    assert used == 4 + 1


async def test_withheld_images_are_blurred_and_refunded(tmp_path: Path, tiny_engine: DiffusionEngine) -> None:
    classifier = NoNsfw(flagged=[1])
    async with open_core(settings_for(tmp_path), engine=tiny_engine, classifier=classifier) as core:
        submitted, events = await imagine(core, steps=None)
        result = (await events.end()).result
        usage = await core.store.usage(GUILD, ALICE)
    assert result.withheld == frozenset({1}) and result.job.withheld == (1,)
    assert result.refunded == 1 and usage.used == 3
    with Image.open(io.BytesIO(result.grid.data)) as grid:
        cells = [np.asarray(grid.crop((x, y, x + 64, y + 64)), dtype=float) for y in (0, 64) for x in (0, 64)]
    # The blurred cell is far smoother than the others.
    roughness = [np.abs(np.diff(cell, axis=1)).mean() for cell in cells]
    assert roughness[1] < min(roughness[0], roughness[2], roughness[3]) / 3
    assert classifier.calls == 1


async def test_no_classification_where_nsfw_is_allowed(tmp_path: Path, tiny_engine: DiffusionEngine) -> None:
    classifier = NoNsfw(flagged=[0, 1, 2, 3])
    async with open_core(settings_for(tmp_path), engine=tiny_engine, classifier=classifier) as core:
        await core.store.set_nsfw_mode(GUILD, "age-restricted", actor_id=99)
        _, events = await imagine(core, origin=alice(NSFW_CHANNEL, channel_age_restricted=True))
        result = (await events.end()).result
    assert classifier.calls == 0 and not result.withheld


async def test_a_failed_job_is_refunded(core: Core) -> None:
    # One step at strength 0.3 leaves no step to run: the engine refuses the batch.
    parent, events = await imagine(core)
    parent_job = (await events.end()).result.job
    request = a_recipe(
        kind=JobKind.VARIATION,
        prompt="a red fox",
        negative_prompt="",
        model=TINY_MODEL_ID,
        width=64,
        height=64,
        steps=1,
        guidance=7.0,
        seeds=(1,),
        strength=0.3,
        parent_job_id=parent_job.id,
        parent_image=0,
    )
    failing = Events()
    submitted = await core.service.submit(request, alice(), failing)
    outcome = await failing.end()
    assert isinstance(outcome, Failed) and outcome.message.endswith(".")
    job = await core.store.get_job(submitted.job_id)
    assert job.status == "failed" and job.refunded == job.charged == submitted.cost
    assert (await core.store.usage(GUILD, ALICE)).used == parent.cost


async def test_cancel_refunds_and_only_the_owner_or_a_moderator_may(core: Core) -> None:
    _, running = await imagine(core, steps=30)
    submitted, waiting = await imagine(core, steps=None)
    with pytest.raises(NotAllowed):
        await core.service.cancel(submitted.job_id, actor_id=BOB)
    await core.service.cancel(submitted.job_id, actor_id=ALICE)
    assert isinstance(await waiting.end(), Cancelled)
    await running.end()
    job = await core.store.get_job(submitted.job_id)
    assert job.status == "cancelled" and job.refunded == 4


async def test_upscale_variation_and_reroll_are_charged_to_whoever_pressed(core: Core) -> None:
    parent, events = await imagine(core, seed=3)
    parent_job = (await events.end()).result.job
    bob = Origin(user_id=BOB, guild_id=GUILD, channel_id=CHANNEL)

    upscale_events = Events()
    upscale = await core.service.upscale(parent_job.id, 2, bob, upscale_events)
    up = (await upscale_events.end()).result
    assert up.job.recipe.kind == "upscale" and up.job.recipe.parent_image == 2 and up.job.recipe.seeds == (5,)
    assert Image.open((await core.service.image_files(up.job))[0]).size == (128, 128)
    # One image of 4x the native pixels, at its share of the default 20 steps, rounded up.
    assert upscale.recipe.steps == 4  # enough for one step at strength 0.3
    assert upscale.cost == math.ceil(4 * 4 / 20)

    variation_events = Events()
    await core.service.variation(parent_job.id, 0, bob, variation_events)
    variation = (await variation_events.end()).result
    assert len(variation.image_paths) == 4 and variation.job.recipe.kind == "variation"
    assert Image.open((await core.service.image_files(variation.job))[0]).size == (64, 64)

    reroll_events = Events()
    await core.service.reroll(parent_job.id, bob, reroll_events)
    reroll = (await reroll_events.end()).result
    assert reroll.job.recipe.prompt == parent_job.recipe.prompt and reroll.job.recipe.seeds != parent_job.recipe.seeds

    assert (await core.store.usage(GUILD, ALICE)).used == parent.cost
    assert (await core.store.usage(GUILD, BOB)).used == up.job.charged + variation.job.charged + reroll.job.charged

    with pytest.raises(JobNotFound, match="Job 1 has no image 5."):
        await core.service.upscale(parent_job.id, 4, bob)


async def test_a_prompt_past_the_token_limit_runs_whole_in_chunks_without_a_notice(core: Core) -> None:
    submitted, events = await imagine(core, "a lighthouse " * 40)
    assert submitted.notice is None
    assert submitted.recipe.chunks >= 2  # compel encodes every 75-token window; nothing is cut
    await events.end()


async def test_unknown_model_is_refused(core: Core) -> None:
    with pytest.raises(InvalidRequest, match="Unknown model 'nope': choose one of builtin:tiny"):
        await imagine(core, model="nope")


async def test_rerolling_variations_makes_new_variations_of_the_same_image(core: Core) -> None:
    _, events = await imagine(core, seed=3)
    parent = (await events.end()).result.job
    variation_events = Events()
    await core.service.variation(parent.id, 1, alice(), variation_events)
    variation = (await variation_events.end()).result.job
    reroll_events = Events()
    reroll = await core.service.reroll(variation.id, alice(), reroll_events)
    again = (await reroll_events.end()).result.job
    assert reroll.recipe.kind == "variation"
    assert (again.recipe.parent_job_id, again.recipe.parent_image, again.recipe.strength) == (
        parent.id,
        1,
        variation.recipe.strength,
    )
    assert again.recipe.seeds != variation.recipe.seeds


async def test_a_variation_whose_source_is_gone_is_refused_without_naming_server_paths(core: Core) -> None:
    _, events = await imagine(core)
    parent = (await events.end()).result.job
    shutil.rmtree(Path((await core.service.image_files(parent))[0]).parent)  # the grid and every image
    with pytest.raises(JobNotFound) as raised:
        await core.service.variation(parent.id, 0, alice())
    assert str(raised.value) == f"The images of job {parent.id} are no longer available, so they cannot be used."
    assert (await core.store.usage(GUILD, ALICE)).used == parent.cost


async def test_no_charge_is_taken_once_the_worker_has_stopped_for_good(core: Core) -> None:
    def broken() -> None:
        raise RuntimeError("a bug in the worker's loop")

    core.worker._announce_positions = broken  # type: ignore[method-assign]
    ended = []
    with pytest.raises(QueueFull, match="Image generation has stopped after repeated errors"):
        for _ in range(10):  # each dies with the loop; the loop gives up after a few restarts
            _, events = await imagine(core)
            ended.append(await events.end())
    assert ended and all(isinstance(event, Failed) for event in ended)
    assert (await core.store.usage(GUILD, ALICE)).used == 0  # the failed ones were refunded, the last not charged
