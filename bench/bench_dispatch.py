"""What the trip to a worker costs a batch, beyond the work itself (goal: median <= 5 ms on loopback).

For each of N one-image, one-step jobs on ``builtin:tiny``, one after another: the time from
``submit`` to ``Finished`` through the real dispatcher, with SQLite recording every attempt,
less the worker's own ``generation_s`` and ``finishing_s``. What is left is the dispatch
overhead: the attempt's transaction, encoding, the transport both ways, the hand-off to the
side process and back, and the event reaching the loop.

    python bench/bench_dispatch.py [--jobs 50] [--transport processes|thread]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.gpu.config import WorkerConfig
from bot.jobs.attempts import JobAttempts
from bot.jobs.events import Cancelled, Failed, Finished, JobEvent
from bot.jobs.generation import work_order
from bot.jobs.recipe import Recipe
from bot.workers.dispatch import Dispatcher, Transport
from bot.workers.inprocess import InProcessTransport
from bot.workers.processes import ProcessTransport
from db.records import NewJob
from db.store import Store
from models.engine import DiffusionEngine, EngineConfig
from models.tiny import TINY_MODEL_ID
from tests.recipes import a_recipe


def recipe(index: int) -> Recipe:
    return a_recipe(
        prompt=f"a lighthouse, study {index}",
        negative_prompt="",
        model=TINY_MODEL_ID,
        width=64,
        height=64,
        steps=1,
        guidance=7.0,
        seeds=(index,),
    )


async def measure(jobs: int, kind: str) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        store = await Store.open(root / "bot.sqlite3", recipe=Recipe)
        transport: Transport
        if kind == "processes":
            config = WorkerConfig(
                worker_id="local-0",
                device="cpu",
                cache_dir=root / "models",
                models=(TINY_MODEL_ID,),
                max_batch_images=1,
            )
            transport = ProcessTransport([config])
        else:
            engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=root / "models"))
            transport = InProcessTransport(engine, classifier=None, max_batch_images=1)
        dispatcher = Dispatcher(transport, JobAttempts(store), max_per_user=10, max_total=10, preview_interval_s=60)
        await dispatcher.start()
        await dispatcher.preset(TINY_MODEL_ID)
        overheads: list[float] = []
        try:
            for index in range(jobs + 3):  # the first three warm up
                job = await store.admit_job(
                    NewJob(recipe=recipe(index), guild_id=None, channel_id=None, user_id=1, cost=1), limit=None
                )
                done: asyncio.Future[JobEvent] = asyncio.get_running_loop().create_future()

                def listener(event: JobEvent, done: asyncio.Future[JobEvent] = done) -> None:
                    if isinstance(event, Finished | Failed | Cancelled) and not done.done():
                        done.set_result(event)

                started = time.perf_counter()
                dispatcher.submit(work_order(job.id, 1, job.recipe, classify=False), listener)
                event = await asyncio.wait_for(done, 120)
                elapsed = time.perf_counter() - started
                if not isinstance(event, Finished):
                    raise SystemExit(f"job {job.id} did not finish: {event}")
                timings = event.output.timings
                if index >= 3:
                    overheads.append(elapsed - timings["generation_s"] - timings.get("finishing_s", 0.0))
        finally:
            await dispatcher.stop()
            await store.close()
        return overheads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--transport", choices=("processes", "thread"), default="processes")
    args = parser.parse_args()
    overheads = sorted(asyncio.run(measure(args.jobs, args.transport)))
    median = statistics.median(overheads) * 1000
    p95 = overheads[min(len(overheads) - 1, int(0.95 * len(overheads)))] * 1000
    print(
        f"dispatch overhead per batch, {args.transport}, {len(overheads)} batches of one 64 px image on builtin:tiny:"
    )
    print(f"    median {median:.2f} ms, p95 {p95:.2f} ms, max {overheads[-1] * 1000:.2f} ms (goal: median <= 5 ms)")


if __name__ == "__main__":
    main()
