"""The worker: fair order, batching, cancellation, and a responsive event loop."""

from __future__ import annotations

import asyncio
import io
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from bot.errors import QueueFull
from bot.images.encoding import EncodedImage
from bot.jobs.events import Cancelled, Failed, Finished, Progress, Queued, Started
from bot.jobs.generation import work_order
from bot.jobs.recipe import Recipe
from bot.workers.dispatch import Dispatcher, _Entry
from bot.workers.fair_queue import FairQueue
from bot.workers.inprocess import InProcessTransport
from bot.workers.protocol import WorkOrder
from models.engine import DiffusionEngine
from models.tiny import TINY_MODEL_ID
from tests.helpers import MemoryAttempts, NoNsfw, Recorder, output_images, pixels
from tests.recipes import a_recipe

RECIPE = a_recipe(
    prompt="a fox", negative_prompt="", model=TINY_MODEL_ID, width=64, height=64, steps=3, guidance=7.0, seeds=(1,)
)


def item(
    job_id: int, owner: int, seeds: tuple[int, ...] = (1,), recipe: Recipe = RECIPE, prompt: str = "a fox"
) -> WorkOrder:
    return work_order(job_id, owner, replace(recipe, seeds=seeds, prompt=prompt))


def entry(order: WorkOrder) -> _Entry:
    return _Entry(order=order, spec=order.request.spec, listener=lambda event: None, queued_at=0.0)


# -- the fair queue -------------------------------------------------------------------


def test_round_robin_keeps_each_users_order() -> None:
    queue = FairQueue(max_per_owner=10, max_total=100)
    # User 1 queues three jobs before users 2 and 3 queue theirs.
    for job_id, owner in [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3)]:
        queue.push(entry(item(job_id, owner, seeds=(1, 2, 3, 4))))
    assert [queue.position(job_id) for job_id in range(1, 7)] == [1, 4, 6, 2, 5, 3]
    started = []
    while len(queue):
        started += [e.job_id for e in queue.take_batch(max_images=4)]
    assert started == [1, 4, 6, 2, 5, 3]


def test_a_user_who_queues_ten_jobs_does_not_push_others_back_ten() -> None:
    queue = FairQueue(max_per_owner=10, max_total=100)
    for job_id in range(1, 11):
        queue.push(entry(item(job_id, owner=1, seeds=(1, 2, 3, 4))))
    queue.push(entry(item(99, owner=2, seeds=(1, 2, 3, 4))))
    assert queue.position(99) == 2


def test_compatible_heads_of_other_users_share_a_batch_up_to_the_image_bound() -> None:
    queue = FairQueue(max_per_owner=10, max_total=100)
    queue.push(entry(item(1, 1, seeds=(1, 2))))
    queue.push(entry(item(2, 1, seeds=(3, 4))))  # same user: must wait for its turn
    queue.push(entry(item(3, 2, seeds=(5, 6))))
    bigger = replace(RECIPE, width=128)
    queue.push(entry(item(4, 3, seeds=(7,), recipe=bigger)))  # incompatible size
    queue.push(entry(item(5, 4, seeds=(8, 9))))
    batch = [e.job_id for e in queue.take_batch(max_images=5)]
    # Job 1 first; job 3 fits (4 images); job 5 would make 6 > 5; job 2 is behind job 1.
    assert batch == [1, 3]
    # Next round starts with the users not yet served, in order.
    assert [e.job_id for e in queue.take_batch(max_images=8)] == [4]
    assert [e.job_id for e in queue.take_batch(max_images=8)] == [5, 2]


def test_queue_bounds_raise_queue_full_with_a_sentence() -> None:
    queue = FairQueue(max_per_owner=2, max_total=3)
    queue.push(entry(item(1, 1)))
    queue.push(entry(item(2, 1)))
    with pytest.raises(QueueFull, match="already have 2 jobs waiting"):
        queue.push(entry(item(3, 1)))
    queue.push(entry(item(4, 2)))
    with pytest.raises(QueueFull, match="queue is full"):
        queue.push(entry(item(5, 3)))
    assert len(queue) == 3


def test_jobs_put_back_after_a_lost_worker_run_again_in_their_owner_s_order() -> None:
    queue = FairQueue(max_per_owner=4, max_total=10)
    entries = {job_id: entry(item(job_id, owner=1)) for job_id in (1, 2, 3, 4)}
    for job_id in (1, 2, 3, 4):
        queue.push(entries[job_id])
    assert [e.job_id for e in queue.take_batch(max_images=2)] == [1, 2]  # on a worker that will be lost
    assert len(queue) == 2
    # Two workers are lost one after the other: job 2's first, then job 1's.
    queue.put_back(entries[2])
    queue.put_back(entries[1])
    assert [e.job_id for e in queue.order()] == [1, 2, 3, 4]


def test_a_batch_whose_dispatch_was_not_recorded_goes_back_first_in_its_order() -> None:
    queue = FairQueue(max_per_owner=4, max_total=10)
    entries = {job_id: entry(item(job_id, owner=job_id % 3)) for job_id in range(1, 8)}
    for job_id in range(1, 8):
        queue.push(entries[job_id])
    before = [e.job_id for e in queue.order()]
    batch = queue.take_batch(max_images=3)
    assert [e.job_id for e in batch] == [1, 2, 3]
    # SQLite refused to record the dispatch: the batch is returned last to first.
    for taken in reversed(batch):
        queue.put_first(taken)
    assert [e.job_id for e in queue.order()] == before
    assert [e.job_id for e in queue.take_batch(max_images=3)] == [1, 2, 3]


def test_a_job_admitted_before_a_restart_is_queued_again_past_the_bounds() -> None:
    queue = FairQueue(max_per_owner=1, max_total=1)
    queue.push(entry(item(1, owner=1)))
    with pytest.raises(QueueFull):
        queue.push(entry(item(2, owner=1)))
    queue.push(entry(item(2, owner=1)), bounded=False)
    assert [e.job_id for e in queue.order()] == [1, 2]


# -- the worker on the tiny model ------------------------------------------------------


@pytest.fixture
async def worker(tiny_engine: DiffusionEngine):
    transport = InProcessTransport(tiny_engine, classifier=NoNsfw(), max_batch_images=8)
    worker = Dispatcher(
        transport, MemoryAttempts(), max_per_user=5, max_total=20, max_batch_images=8, preview_interval_s=0.0
    )
    await worker.start()
    yield worker
    await worker.stop(timeout_s=60)


def decoded(image: EncodedImage) -> Image.Image:
    return Image.open(io.BytesIO(image.data))


async def test_two_users_batched_get_the_images_they_get_apart(worker: Dispatcher) -> None:
    alone_a, alone_b = Recorder(), Recorder()
    worker.submit(item(1, owner=1, seeds=(11, 12), prompt="a red fox"), alone_a)
    await asyncio.wait_for(alone_a.done.wait(), 60)
    worker.submit(item(2, owner=2, seeds=(21,), prompt="a lighthouse"), alone_b)
    await asyncio.wait_for(alone_b.done.wait(), 60)

    # Both queued while a blocker runs, so they are taken as one batch afterwards.
    blocker, together_a, together_b = Recorder(), Recorder(), Recorder()
    worker.submit(item(3, owner=3, seeds=(5,), recipe=replace(RECIPE, steps=4)), blocker)
    worker.submit(item(4, owner=1, seeds=(11, 12), prompt="a red fox"), together_a)
    worker.submit(item(5, owner=2, seeds=(21,), prompt="a lighthouse"), together_b)
    await asyncio.wait_for(asyncio.gather(together_a.done.wait(), together_b.done.wait()), 60)

    (a1,) = alone_a.of(Finished)
    (b1,) = alone_b.of(Finished)
    (a2,) = together_a.of(Finished)
    (b2,) = together_b.of(Finished)
    assert a2.output.timings["generation_s"] == b2.output.timings["generation_s"]  # one pipeline call
    assert [image.size for image in output_images(a2.output)] == [(64, 64), (64, 64)]
    before_images = output_images(a1.output) + output_images(b1.output)
    after_images = output_images(a2.output) + output_images(b2.output)
    for before, after in zip(before_images, after_images, strict=True):
        assert np.abs(pixels(before) - pixels(after)).max() <= 2
    different = np.abs(pixels(output_images(a2.output)[0]) - pixels(output_images(b2.output)[0])).max()
    assert different > 10  # different jobs differ


async def test_events_arrive_in_order_with_progress_previews(worker: Dispatcher) -> None:
    recorder = Recorder()
    position = worker.submit(item(1, owner=1, seeds=(1, 2, 3, 4)), recorder)
    await asyncio.wait_for(recorder.done.wait(), 60)
    assert position == 1
    kinds = [type(event) for event in recorder.events]
    assert kinds[0] is Queued and kinds[1] is Started and kinds[-1] is Finished
    progress = recorder.of(Progress)
    assert [p.step for p in progress] == list(range(1, RECIPE.steps + 1))
    assert all(p.total == RECIPE.steps for p in progress)
    assert progress[-1].preview is not None
    with Image.open(io.BytesIO(progress[-1].preview)) as preview:
        assert preview.format == "PNG" and preview.size == (128, 128)
    (finished,) = recorder.of(Finished)
    assert finished.output.seeds == (1, 2, 3, 4)
    assert decoded(finished.output.grid).size == (128, 128)


async def test_waiting_jobs_hear_their_place_move_up(worker: Dispatcher) -> None:
    recorders = [Recorder() for _ in range(3)]
    for job_id, recorder in enumerate(recorders, start=1):
        worker.submit(item(job_id, owner=job_id, recipe=replace(RECIPE, width=64 + 8 * job_id)), recorder)
    await asyncio.wait_for(recorders[-1].done.wait(), 60)
    # Job 3 was third, then second when job 1 started, then first when job 2 started.
    assert [event.position for event in recorders[2].of(Queued)] == [3, 2, 1]
    assert [event.position for event in recorders[0].of(Queued)] == [1]


async def test_cancel_a_queued_job_removes_it(worker: Dispatcher) -> None:
    first, second = Recorder(), Recorder()
    worker.submit(item(1, owner=1, recipe=replace(RECIPE, steps=6)), first)
    worker.submit(item(2, owner=1), second)
    assert worker.cancel(2) is True
    await asyncio.wait_for(first.done.wait(), 60)
    assert [type(e) for e in second.events] == [Queued, Cancelled]
    assert worker.position(2) is None
    assert worker.cancel(2) is False


async def test_cancel_a_running_job_interrupts_it_and_spares_its_batch_mates(worker: Dispatcher) -> None:
    long = replace(RECIPE, steps=40)
    mine, theirs = Recorder(), Recorder()
    blocker = Recorder()
    worker.submit(item(1, owner=1, seeds=(1,)), blocker)  # keeps the GPU busy while 2 and 3 queue
    worker.submit(item(2, owner=2, seeds=(2,), recipe=long), mine)
    worker.submit(item(3, owner=3, seeds=(3,), recipe=long), theirs)
    while not mine.of(Progress):
        await asyncio.sleep(0.01)
    assert worker.cancel(2)
    await asyncio.wait_for(theirs.done.wait(), 120)
    assert mine.of(Cancelled) and not mine.of(Finished)
    assert theirs.of(Finished)

    alone = Recorder()
    worker.submit(item(4, owner=4, seeds=(4,), recipe=long), alone)
    while not alone.of(Progress):
        await asyncio.sleep(0.01)
    started = time.monotonic()
    worker.cancel(4)
    await asyncio.wait_for(alone.done.wait(), 30)
    # Interrupted at the next step, not after the remaining 39.
    await asyncio.wait_for(_idle(worker), 10)
    assert time.monotonic() - started < 5
    assert alone.of(Cancelled) and not alone.of(Finished)


async def test_event_loop_stays_responsive_while_generating(worker: Dispatcher) -> None:
    recorder = Recorder()
    worker.submit(item(1, owner=1, seeds=(1, 2, 3, 4), recipe=replace(RECIPE, steps=8)), recorder)
    lags: list[float] = []
    while not recorder.done.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - before - 0.005)
    assert recorder.of(Finished)
    assert len(lags) > 10
    assert max(lags) < 0.050, f"max loop lag {max(lags) * 1000:.1f} ms, median {statistics.median(lags) * 1000:.1f} ms"


async def _idle(worker: Dispatcher) -> None:
    while worker.pending_jobs(4):
        await asyncio.sleep(0.01)


# -- a loop that crashes --------------------------------------------------------------


async def test_a_worker_loop_that_crashes_is_restarted_and_the_queue_still_runs(worker: Dispatcher) -> None:
    failures = iter([RuntimeError("a bug in the loop")])
    announce = worker._announce_positions

    def flaky() -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        announce()

    worker._announce_positions = flaky  # type: ignore[method-assign]
    first, second = Recorder(), Recorder()
    worker.submit(item(1, owner=1), first)
    await asyncio.sleep(0.1)  # the loop dies on its first batch and is started again
    worker.submit(item(2, owner=2), second)
    await asyncio.wait_for(asyncio.gather(first.done.wait(), second.done.wait()), 60)
    # The job in hand when the loop failed is failed with a sentence (the service refunds it), not lost.
    assert "Generation failed unexpectedly" in first.events[-1].message
    assert [type(event).__name__ for event in second.events][-1] == "Finished"
    assert worker.running


async def test_a_bug_in_the_attempt_ledger_fails_its_batch_rather_than_retrying_it_forever(
    worker: Dispatcher,
) -> None:
    """Only a storage refusal (AttemptsUnrecorded) is waited out; any other error of the ledger is a bug."""
    ledger = worker._ledger
    start = ledger.start_attempts
    failures = iter([RuntimeError("a bug in the ledger")])

    async def buggy(job_ids: Sequence[int], worker_id: str) -> dict[int, tuple[int, str]]:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return await start(job_ids, worker_id)

    ledger.start_attempts = buggy  # type: ignore[method-assign]
    first, second = Recorder(), Recorder()
    worker.submit(item(1, owner=1), first)
    await asyncio.wait_for(first.done.wait(), 60)
    assert "Generation failed unexpectedly" in first.events[-1].message
    worker.submit(item(2, owner=2), second)
    await asyncio.wait_for(second.done.wait(), 60)
    assert [type(event).__name__ for event in second.events][-1] == "Finished"


async def test_a_loop_that_keeps_crashing_stops_taking_jobs_with_a_sentence(worker: Dispatcher) -> None:
    def broken() -> None:
        raise RuntimeError("a bug in the loop")

    worker._announce_positions = broken  # type: ignore[method-assign]
    for job_id in range(1, 6):
        try:
            worker.submit(item(job_id, owner=job_id), Recorder())
        except QueueFull:
            break
        await asyncio.sleep(0.05)
    for _ in range(100):  # bounded: the restarts happen within a few loop turns
        if not worker.running:
            break
        await asyncio.sleep(0.05)
    assert not worker.running
    with pytest.raises(QueueFull, match="Image generation has stopped after repeated errors"):
        worker.check_room(owner=42)


async def test_jobs_left_waiting_when_the_loop_stops_for_good_are_told_so(worker: Dispatcher) -> None:
    def broken() -> None:
        raise RuntimeError("a bug in the loop")

    worker._announce_positions = broken  # type: ignore[method-assign]
    # Five jobs that cannot share a batch: each crash fails one of them, and the loop stays down after four.
    recorders = [Recorder() for _ in range(5)]
    for job_id, recorder in enumerate(recorders, start=1):
        worker.submit(item(job_id, owner=1, recipe=replace(RECIPE, steps=job_id)), recorder)
    await asyncio.wait_for(asyncio.gather(*(recorder.done.wait() for recorder in recorders)), 60)
    assert not worker.running
    endings = [recorder.events[-1] for recorder in recorders]
    assert all(isinstance(ending, Failed) for ending in endings)
    assert [e.message.startswith("Generation failed unexpectedly") for e in endings] == [True] * 4 + [False]
    assert endings[-1].message == (
        "Image generation has stopped after repeated errors, so this job was given up; its credits are refunded."
    )
    assert worker.queued_count == 0
