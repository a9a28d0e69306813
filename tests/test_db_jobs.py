"""Job rows on a real SQLite file: their life, requeue after a crash, delivery and token expiry."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.jobs.recipe import Recipe
from db import INTERACTION_TOKEN_LIFETIME_S, NewJob, Store, UnknownJob
from tests.helpers import T0, FakeClock
from tests.recipes import a_new_job


def new_job(*, user_id: int = 1, kind: str = "imagine", cost: int = 4, **changes: object) -> NewJob[Recipe]:
    return a_new_job(user_id=user_id, kind=kind, cost=cost, **changes)


def charges_per_job(path: Path) -> dict[int, int]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT job_id, COUNT(*) FROM ledger WHERE kind = 'charge' GROUP BY job_id").fetchall()
    conn.close()
    return dict(rows)


async def test_admitted_job_round_trips_every_field(store: Store) -> None:
    parent = await store.admit_job(new_job(), limit=100)
    job = await store.admit_job(
        new_job(
            kind="variation",
            parent_job_id=parent.id,
            parent_image=2,
            strength=0.6,
            cost=4,
            scheduler="DPMSolverMultistepScheduler",
            nsfw_allowed=True,
        ),
        limit=100,
    )

    stored = await store.get_job(job.id)
    assert stored == job
    assert stored.recipe.kind == "variation"
    assert (stored.recipe.parent_job_id, stored.recipe.parent_image, stored.recipe.strength) == (parent.id, 2, 0.6)
    assert stored.recipe.seeds == (11, 22, 33, 2**63 + 5)
    assert (stored.recipe.width, stored.recipe.height, stored.recipe.steps, stored.recipe.guidance) == (
        1024,
        768,
        30,
        6.5,
    )
    assert (stored.status, stored.created_at, stored.started_at, stored.finished_at) == ("queued", T0, None, None)
    assert (stored.cost, stored.charged, stored.refunded) == (4, 4, 0)
    assert (stored.recipe.scheduler, stored.nsfw_allowed) == ("DPMSolverMultistepScheduler", True)
    assert (parent.recipe.scheduler, parent.nsfw_allowed) == ("EulerAncestralDiscreteScheduler", False)
    assert await store.get_job(999) is None


async def test_a_job_moves_through_its_life(store: Store, clock: FakeClock) -> None:
    job = await store.admit_job(new_job(), limit=100)

    clock.now = T0 + 5
    assert await store.mark_running(job.id) is True
    clock.now = T0 + 12
    assert await store.mark_done(
        job.id,
        image_paths=["images/1/0.png", "images/1/1.png", "images/1/2.png", "images/1/3.png"],
        withheld=[3, 1],
        timings={"queue": 5.0, "gpu": 6.5},
    )

    done = await store.get_job(job.id)
    assert done is not None
    assert (done.status, done.started_at, done.finished_at) == ("done", T0 + 5, T0 + 12)
    assert done.image_paths == ("images/1/0.png", "images/1/1.png", "images/1/2.png", "images/1/3.png")
    assert done.withheld == (1, 3)
    assert done.timings == {"queue": 5.0, "gpu": 6.5}


async def test_transitions_from_the_wrong_status_change_nothing(store: Store) -> None:
    job = await store.admit_job(new_job(), limit=100)

    assert await store.mark_done(job.id, image_paths=[], withheld=[], timings={}) is False  # still queued
    assert await store.mark_cancelled(job.id) is True
    assert await store.mark_running(job.id) is False  # a cancelled job never starts
    assert await store.mark_failed(job.id, "too late") is False

    stored = await store.get_job(job.id)
    assert stored is not None and (stored.status, stored.error, stored.started_at) == ("cancelled", None, None)


async def test_failure_keeps_its_reason(store: Store) -> None:
    job = await store.admit_job(new_job(), limit=100)
    await store.mark_running(job.id)

    assert await store.mark_failed(job.id, "CUDA out of memory") is True

    stored = await store.get_job(job.id)
    assert stored is not None and (stored.status, stored.error) == ("failed", "CUDA out of memory")


async def test_unknown_jobs_raise(store: Store) -> None:
    with pytest.raises(UnknownJob):
        await store.mark_running(12345)
    with pytest.raises(UnknownJob):
        await store.refund(12345, 1, "nothing")
    with pytest.raises(UnknownJob):
        await store.set_delivery(12345, message_id=1)


async def test_requeue_after_a_crash_keeps_order_and_charges_once(db_path: Path, clock: FakeClock) -> None:
    store = await Store.open(db_path, clock=clock, recipe=Recipe)
    first = await store.admit_job(new_job(user_id=1), limit=100)
    second = await store.admit_job(new_job(user_id=2), limit=100)
    finished = await store.admit_job(new_job(user_id=1), limit=100)
    third = await store.admit_job(new_job(user_id=3), limit=100)
    await store.mark_running(finished.id)
    await store.mark_done(finished.id, image_paths=["x.png"], withheld=[], timings={})
    await store.mark_running(first.id)
    await store.close()  # the process dies here with `first` running

    restarted = await Store.open(db_path, clock=clock, recipe=Recipe)
    try:
        requeued = await restarted.requeue_unfinished()
        assert [job.id for job in requeued] == [first.id, second.id, third.id]
        assert all(job.status == "queued" and job.started_at is None for job in requeued)
        assert [job.id for job in await restarted.unfinished_jobs()] == [first.id, second.id, third.id]
        # Run the requeued job to the end: still exactly one charge each.
        assert await restarted.mark_running(first.id)
        assert await restarted.mark_done(first.id, image_paths=["y.png"], withheld=[], timings={})
        assert (await restarted.usage(10, 1)).used == 8
    finally:
        await restarted.close()
    assert charges_per_job(db_path) == {first.id: 1, second.id: 1, finished.id: 1, third.id: 1}


async def test_the_schema_refuses_a_second_charge_for_a_job(store: Store, db_path: Path) -> None:
    job = await store.admit_job(new_job(), limit=100)

    conn = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO ledger (guild_id, user_id, kind, credits, job_id, at, recorded_at) "
            "VALUES (10, 1, 'charge', 4, ?, 0, 0)",
            (job.id,),
        )
    conn.close()


async def test_queued_jobs_of_one_user(store: Store) -> None:
    a = await store.admit_job(new_job(user_id=1), limit=100)
    await store.admit_job(new_job(user_id=2), limit=100)
    b = await store.admit_job(new_job(user_id=1), limit=100)
    c = await store.admit_job(new_job(user_id=1), limit=100)
    await store.mark_running(a.id)

    assert [job.id for job in await store.queued_jobs_of(1)] == [b.id, c.id]


async def test_admit_rejects_a_cost_that_differs_from_the_job(store: Store, db_path: Path) -> None:
    with pytest.raises(ValueError, match="cost"):
        await store.admit_job(new_job(cost=4), cost=3, limit=100)
    assert charges_per_job(db_path) == {}


async def test_a_cancelled_caller_does_not_break_the_store(store: Store, db_path: Path) -> None:
    """Cancelling the awaiting task must not leave a transaction open or a job without its charge."""
    task = asyncio.ensure_future(store.admit_job(new_job(), limit=100))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    job = await store.admit_job(new_job(), limit=100)  # the connection still works

    unfinished = await store.unfinished_jobs()
    assert job.id in [j.id for j in unfinished]
    assert set(charges_per_job(db_path)) == {j.id for j in unfinished}


# ---------------------------------------------------------------------- delivery and tokens


async def test_set_delivery_updates_only_what_is_given(store: Store, clock: FakeClock) -> None:
    job = await store.admit_job(new_job(), limit=100)

    await store.set_delivery(job.id, interaction_token="tok-1")
    await store.set_delivery(job.id, message_id=777)

    stored = await store.get_job(job.id)
    assert stored is not None
    assert (stored.message_id, stored.interaction_token, stored.token_created_at) == (777, "tok-1", T0)

    await store.set_delivery(job.id, interaction_token=None)
    stored = await store.get_job(job.id)
    assert stored is not None
    assert (stored.message_id, stored.interaction_token, stored.token_created_at) == (777, None, None)


async def test_interaction_tokens_expire_after_fifteen_minutes(store: Store, clock: FakeClock) -> None:
    old = await store.admit_job(new_job(), limit=100)
    fresh = await store.admit_job(new_job(), limit=100)
    await store.set_delivery(old.id, message_id=5, interaction_token="old", token_created_at=T0)
    await store.set_delivery(fresh.id, interaction_token="fresh", token_created_at=T0 + 600)

    clock.now = T0 + INTERACTION_TOKEN_LIFETIME_S
    assert await store.expire_interaction_tokens() == 0  # exactly 15 minutes old: still alive

    clock.now = T0 + INTERACTION_TOKEN_LIFETIME_S + 1
    assert await store.expire_interaction_tokens() == 1

    expired = await store.get_job(old.id)
    kept = await store.get_job(fresh.id)
    assert expired is not None and (expired.interaction_token, expired.token_created_at) == (None, None)
    assert expired.message_id == 5  # the message is still how the result gets delivered
    assert kept is not None and kept.interaction_token == "fresh"


async def test_opening_the_store_expires_old_tokens(db_path: Path, clock: FakeClock) -> None:
    store = await Store.open(db_path, clock=clock, recipe=Recipe)
    job = await store.admit_job(new_job(), limit=100)
    await store.set_delivery(job.id, interaction_token="secret")
    await store.close()

    clock.now = T0 + 3600  # the bot was down for an hour
    reopened = await Store.open(db_path, clock=clock, recipe=Recipe)
    try:
        stored = await reopened.get_job(job.id)
        assert stored is not None and stored.interaction_token is None
    finally:
        await reopened.close()
