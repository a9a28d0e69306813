"""Storage faults: the database refuses writes for a while (a full disk, a backup's lock), then answers again.

Through the real parts: the service, the dispatcher and an in-process worker on the tiny model,
and a real SQLite file made immutable (``tests/storage_faults.py``), so every commit fails with
``disk I/O error`` as it did for the operator who reported it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.errors import StorageBusy
from bot.jobs.events import Failed
from bot.jobs.lifecycle import RESULT_NOT_SAVED
from bot.jobs.recipe import Recipe
from bot.jobs.requests import ImagineOptions
from bot.jobs.service import Completed, Origin
from bot.runtime.core import Core, open_core
from db.errors import StorageUnavailable
from db.store import Store
from models.engine import DiffusionEngine
from tests.helpers import NoNsfw, ServiceEvents, tiny_settings
from tests.recipes import a_new_job
from tests.storage_faults import folder_refused, writes_refused

GUILD, CHANNEL = 100, 200
ALICE, BOB, CAROL = 1, 2, 3


async def imagine(core: Core, user_id: int, prompt: str, **options: object) -> tuple[int, ServiceEvents]:
    events = ServiceEvents()
    origin = Origin(user_id=user_id, guild_id=GUILD, channel_id=CHANNEL)
    submitted = await core.service.imagine(ImagineOptions(prompt=prompt, **options), origin, events)  # type: ignore[arg-type]
    return submitted.job_id, events


async def until(what: str, check: Callable[[], object], timeout: float = 300) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_a_storage_fault_while_a_batch_is_dispatched_delays_it_and_the_queue_resumes(
    tmp_path: Path, tiny_engine: DiffusionEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.workers.dispatch")
    settings = tiny_settings(tmp_path, daily_credits=100, preview_interval_s=0.0)
    async with open_core(settings, engine=tiny_engine, classifier=NoNsfw()) as core:
        # 1. A long job holds the only worker; two jobs of other members wait behind it, to share a batch.
        running, running_events = await imagine(core, ALICE, "a lighthouse", steps=50, seed=1)
        await until("the long job to start", lambda: core.worker.position(running) == 0)
        first, first_events = await imagine(core, BOB, "a red fox", steps=2, seed=2)
        second, second_events = await imagine(core, CAROL, "a blue heron", steps=2, seed=3)

        # 2. The database refuses writes while the long job ends and the next batch is dispatched.
        with writes_refused(settings.database_path):
            assert core.worker.position(running) == 0, "the long job ended before the fault began"
            await until(
                "the dispatch to fail",
                lambda: any(record.name == "bot.workers.dispatch" for record in caplog.records),
            )
            # Nothing is lost, nobody is told anything false: both wait at the head of the queue, in order.
            assert [core.worker.position(first), core.worker.position(second)] == [1, 2]
            assert not first_events.ends() and not second_events.ends()

        # 3. Storage answers again: each job ends once, with its images, charged once.
        for events in (running_events, first_events, second_events):
            assert isinstance(await events.end(), Completed)
        for job_id in (running, first, second):
            job = await core.store.get_job(job_id)
            assert job is not None and (job.status, job.delivery, job.refunded) == ("done", "pending", 0)

        # 4. A job admitted afterwards runs.
        later, later_events = await imagine(core, ALICE, "a quiet harbour", steps=2, seed=4)
        assert isinstance(await later_events.end(), Completed)
        for events in (running_events, first_events, second_events, later_events):
            assert len(events.ends()) == 1


async def test_a_write_the_disk_refuses_says_so_changes_nothing_and_the_next_one_works(
    store: Store[Recipe], db_path: Path
) -> None:
    job = await store.admit_job(a_new_job(), limit=None)
    with writes_refused(db_path):
        with pytest.raises(StorageUnavailable) as refused:
            await store.mark_failed(job.id, "a test")
        assert str(db_path) in str(refused.value) and "disk I/O error" in str(refused.value)
        queued = await store.get_job(job.id)  # reads still work
        assert queued is not None and queued.status == "queued"
    # The same connection takes the next write: nothing to reopen.
    assert await store.mark_failed(job.id, "a test")
    failed = await store.get_job(job.id)
    assert failed is not None and failed.status == "failed"


async def test_a_job_asked_for_while_the_disk_refuses_writes_is_refused_with_a_sentence(
    tmp_path: Path, tiny_engine: DiffusionEngine
) -> None:
    settings = tiny_settings(tmp_path, daily_credits=100, preview_interval_s=0.0)
    async with open_core(settings, engine=tiny_engine, classifier=NoNsfw()) as core:
        await core.service.worker.preset(settings.sd_model)  # loaded before the fault: only the disk fails
        with writes_refused(settings.database_path), pytest.raises(StorageBusy) as refused:
            await imagine(core, ALICE, "a lighthouse", steps=2, seed=1)
        assert str(refused.value) == (
            "The bot cannot record new jobs at the moment; nothing was charged. Try again in a few minutes."
        )
        assert (await core.store.usage(GUILD, ALICE)).used == 0
        assert core.worker.pending_jobs(ALICE) == []
        # Once the disk answers, the same request is taken and runs.
        _, events = await imagine(core, ALICE, "a lighthouse", steps=2, seed=1)
        assert isinstance(await events.end(), Completed)


async def test_a_result_the_disk_cannot_take_fails_its_job_with_a_sentence_and_a_refund(
    tmp_path: Path, tiny_engine: DiffusionEngine
) -> None:
    settings = tiny_settings(tmp_path, daily_credits=100, preview_interval_s=0.0)
    async with open_core(settings, engine=tiny_engine, classifier=NoNsfw()) as core:
        with folder_refused(settings.images_dir):
            job_id, events = await imagine(core, ALICE, "a lighthouse", steps=2, seed=1)
            ended = await events.end()
        assert isinstance(ended, Failed) and ended.message == RESULT_NOT_SAVED
        assert events.ends() == [ended]
        job = await core.store.get_job(job_id)
        assert job is not None and job.status == "failed" and job.refunded == job.charged > 0
        assert (await core.store.usage(GUILD, ALICE)).used == 0
        # The worker and the queue carry on.
        _, later = await imagine(core, ALICE, "a lighthouse", steps=2, seed=1)
        assert isinstance(await later.end(), Completed)


async def test_expired_interaction_tokens_are_forgotten_once_the_disk_answers_again(
    tmp_path: Path, tiny_engine: DiffusionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token sweeper outlives a storage fault: the tokens it could not forget then, it forgets after."""
    import bot.app
    from bot.app import Bot
    from bot.jobs.attempts import JobAttempts
    from bot.workers.dispatch import Dispatcher
    from bot.workers.inprocess import InProcessTransport

    now = [1_800_000_000.0]
    settings = tiny_settings(tmp_path)
    store = await Store.open(settings.database_path, recipe=Recipe, clock=lambda: now[0])
    job = await store.admit_job(a_new_job(), limit=100)
    await store.set_delivery(job.id, interaction_token="an-old-token", token_created_at=now[0])
    worker = Dispatcher(InProcessTransport(tiny_engine, classifier=NoNsfw()), JobAttempts(store))
    client = Bot(settings=settings, store=store, worker=worker)
    monkeypatch.setattr(bot.app, "TOKEN_SWEEP_INTERVAL_S", 0.05)
    now[0] += 16 * 60  # the token is past Discord's 15 minutes
    sweeper = asyncio.create_task(client._expire_tokens_forever())
    try:
        with writes_refused(settings.database_path):
            await asyncio.sleep(1.0)  # several sweeps meet the fault
            stored = await store.get_job(job.id)
            assert stored is not None and stored.interaction_token == "an-old-token"

        async def forgotten() -> bool:
            stored = await store.get_job(job.id)
            return stored is not None and stored.interaction_token is None

        async def poll() -> None:
            while not await forgotten():
                await asyncio.sleep(0.05)

        await asyncio.wait_for(poll(), 60)
        assert not sweeper.done()
    finally:
        sweeper.cancel()
        await store.close()
