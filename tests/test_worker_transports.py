"""The contract every worker transport keeps, run against each: a thread, worker processes, and Valkey Streams.

Through the real dispatcher (the fair queue, attempts) and the real worker body on the tiny
model: fairness, batching, cancel, progress, and, for worker processes, a worker killed with
SIGKILL mid-batch.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from bot.gpu.config import WorkerConfig
from bot.jobs.events import Cancelled, Failed, Finished, JobEvent, Progress, Started
from bot.jobs.generation import work_order
from bot.workers.dispatch import LOST_TWICE, Dispatcher, Transport
from bot.workers.inprocess import InProcessTransport
from bot.workers.processes import ProcessTransport
from bot.workers.protocol import WorkOrder
from bot.workers.streams import StreamsTransport
from models.engine import DiffusionEngine
from models.tiny import TINY_MODEL_ID
from tests.helpers import MemoryAttempts, NoNsfw, Recorder, output_images
from tests.recipes import a_recipe
from tests.valkey_server import ThreadWorker, ValkeyServer

RECIPE = a_recipe(model=TINY_MODEL_ID, width=64, height=64, steps=3, guidance=7.0, seeds=(1,), negative_prompt="")


def order(job_id: int, owner: int, **changes: object) -> WorkOrder:
    return work_order(job_id, owner, replace(RECIPE, prompt=f"job {job_id}", **changes))  # type: ignore[arg-type]


@pytest.fixture(params=["in-process", "processes", "streams"])
async def transport_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def dispatcher(
    transport_kind: str, tiny_engine: DiffusionEngine, model_cache_dir: Path, tmp_path: Path
) -> AsyncIterator[Dispatcher]:
    transport: Transport
    server: ValkeyServer | None = None
    worker: ThreadWorker | None = None
    if transport_kind == "streams":
        # A real Valkey server on loopback, and `python -m bot worker`'s parts in threads of the test.
        (tmp_path / "valkey").mkdir()
        server = ValkeyServer(tmp_path / "valkey")
        server.start()
        worker = ThreadWorker(server.url, tiny_engine, "stream-0").start()
        transport = StreamsTransport(server.url, block_s=0.2)
    elif transport_kind == "in-process":
        transport = InProcessTransport(tiny_engine, classifier=NoNsfw(), max_batch_images=8)
    else:
        config = WorkerConfig(
            worker_id="local-0",
            device="cpu",
            cache_dir=model_cache_dir,
            models=(TINY_MODEL_ID,),
            max_batch_images=8,
            heartbeat_s=0.5,
            classifier=NoNsfw(),
        )
        transport = ProcessTransport([config])
    dispatcher = Dispatcher(
        transport, MemoryAttempts(), max_per_user=5, max_total=50, preview_interval_s=0.0, heartbeat_timeout_s=30
    )
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(timeout_s=60)
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        if server is not None:
            server.stop()


async def wait_all(*recorders: Recorder, timeout: float = 180) -> None:
    await asyncio.wait_for(asyncio.gather(*(recorder.done.wait() for recorder in recorders)), timeout)


async def test_each_owner_s_jobs_start_in_order_and_owners_take_turns(dispatcher: Dispatcher) -> None:
    starts: list[int] = []
    recorders = {}
    # Different sizes: no two jobs share a batch, so the start order is the queue's order.
    plan = [(1, 1), (2, 1), (3, 1), (4, 2), (5, 3)]
    for job_id, owner in plan:
        recorder = recorders[job_id] = Recorder()

        def listener(event: JobEvent, recorder: Recorder = recorder) -> None:
            if isinstance(event, Started):
                starts.append(event.job_id)
            recorder(event)

        dispatcher.submit(order(job_id, owner, width=64 + 8 * job_id), listener)
    await wait_all(*recorders.values())
    assert all(recorder.of(Finished) for recorder in recorders.values())
    assert starts == [1, 4, 5, 2, 3]


async def test_compatible_jobs_of_two_owners_share_one_batch(dispatcher: Dispatcher) -> None:
    blocker, first, second = Recorder(), Recorder(), Recorder()
    dispatcher.submit(order(1, 1, steps=6, width=72), blocker)
    dispatcher.submit(order(2, 2, seeds=(5, 6)), first)
    dispatcher.submit(order(3, 3, seeds=(7,)), second)
    await wait_all(blocker, first, second)
    (a,) = first.of(Finished)
    (b,) = second.of(Finished)
    assert a.output.timings["generation_s"] == b.output.timings["generation_s"]  # one pipeline call
    assert [image.size for image in output_images(a.output)] == [(64, 64), (64, 64)]


async def test_progress_comes_with_a_png_preview(dispatcher: Dispatcher) -> None:
    recorder = Recorder()
    dispatcher.submit(order(1, 1, seeds=(1, 2, 3, 4)), recorder)
    await wait_all(recorder)
    progress = recorder.of(Progress)
    assert [p.step for p in progress] == [1, 2, 3]
    with Image.open(io.BytesIO(progress[-1].preview)) as preview:
        assert preview.format == "PNG" and preview.size == (128, 128)


async def test_cancel_stops_a_queued_and_a_running_job(dispatcher: Dispatcher) -> None:
    running, queued = Recorder(), Recorder()
    dispatcher.submit(order(1, 1, steps=60), running)
    dispatcher.submit(order(2, 1), queued)
    assert dispatcher.cancel(2)
    for _ in range(6000):  # bounded: the running job reports progress within a few steps
        if running.of(Progress):
            break
        await asyncio.sleep(0.01)
    assert dispatcher.cancel(1)
    await wait_all(running, queued)
    assert running.of(Cancelled) and not running.of(Finished)
    assert [type(event).__name__ for event in queued.events] == ["Queued", "Cancelled"]
    assert dispatcher.cancel(1) is False


@pytest.mark.parametrize("transport_kind", ["processes"], indirect=True)
async def test_a_worker_killed_mid_batch_is_replaced_and_its_job_runs_again_then_fails_on_a_second_loss(
    dispatcher: Dispatcher, transport_kind: str
) -> None:
    transport = dispatcher._transport
    assert isinstance(transport, ProcessTransport)

    async def kill_when_generating(recorder: Recorder) -> None:
        for _ in range(18000):  # bounded: 3 minutes
            if recorder.of(Progress):
                break
            await asyncio.sleep(0.01)
        pid = transport.pids()["local-0"]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    once = Recorder()
    dispatcher.submit(order(1, 1, steps=200), once)
    await kill_when_generating(once)
    # Requeued once, on the worker process started in its place: it finishes.
    for _ in range(18000):
        if len(once.of(Started)) == 2 and len(once.of(Progress)) > len(once.of(Started)):
            break
        await asyncio.sleep(0.01)
    await wait_all(once, timeout=300)
    assert once.of(Finished) and len(once.of(Started)) == 2

    twice = Recorder()
    dispatcher.submit(order(2, 2, steps=200), twice)
    await kill_when_generating(twice)
    for _ in range(18000):
        if len(twice.of(Started)) == 2 and len(twice.of(Progress)) >= 2:
            break
        await asyncio.sleep(0.01)
    progressed = len(twice.of(Progress))
    for _ in range(18000):
        if len(twice.of(Progress)) > progressed:
            break
        await asyncio.sleep(0.01)
    pid = transport.pids()["local-0"]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await wait_all(twice, timeout=120)
    (failed,) = twice.of(Failed)
    assert failed.message == LOST_TWICE


async def test_a_worker_thread_idle_past_the_heartbeat_timeout_still_takes_jobs(tiny_engine: DiffusionEngine) -> None:
    """WORKERS=thread: an idle worker thread says Ready as a worker process does, so a quiet spell
    longer than the heartbeat timeout does not lose it (and with it every later job)."""
    transport = InProcessTransport(tiny_engine, classifier=NoNsfw(), heartbeat_s=0.2)
    dispatcher = Dispatcher(transport, MemoryAttempts(), preview_interval_s=0.0, heartbeat_timeout_s=3.0)
    await dispatcher.start()
    try:
        await asyncio.sleep(8.0)  # idle for well over the timeout
        assert dispatcher.health().workers == 1
        recorder = Recorder()
        dispatcher.submit(order(1, 1), recorder)
        await wait_all(recorder)
        assert [image.size for image in output_images(recorder.of(Finished)[0].output)] == [(64, 64)]
    finally:
        await dispatcher.stop(timeout_s=60)
