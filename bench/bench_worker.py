"""Benchmark of the generation worker on ``builtin:tiny`` (CPU here; any device works).

Prints, from one run on one machine:
  (a) throughput of N jobs through the worker / the same batches as direct pipeline calls (goal >= 0.97);
  (b) images/s of 8 users' single-image jobs with cross-user batching on vs off;
  (c) event-loop lag p99 and max while generating (goal: p99 < 20 ms).

    python bench/bench_worker.py [--jobs 6] [--steps 8] [--device cpu]
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

from bot.events import Cancelled, Failed, Finished, JobEvent
from bot.worker import GenerationWorker, WorkItem
from models.engine import DiffusionEngine, EngineConfig
from models.tiny import TINY_MODEL_ID
from models.types import BatchSpec, GenerationBatch, ImageTask, Operation


def spec(steps: int) -> BatchSpec:
    return BatchSpec(
        model=TINY_MODEL_ID,
        operation=Operation.TXT2IMG,
        width=64,
        height=64,
        steps=steps,
        guidance=7.0,
        scheduler="EulerAncestralDiscreteScheduler",
    )


def jobs(count: int, images: int, steps: int, owners: int) -> list[WorkItem]:
    return [
        WorkItem(
            job_id=index,
            owner=index % owners,
            spec=spec(steps),
            tasks=tuple(
                ImageTask(prompt=f"a lighthouse in a storm, study {index}", negative_prompt="", seed=index * 10 + n)
                for n in range(images)
            ),
        )
        for index in range(count)
    ]


async def through_worker(
    engine: DiffusionEngine, items: list[WorkItem], max_batch_images: int, lags: list[float] | None = None
) -> float:
    """Seconds to run ``items`` through a fresh worker, all queued at once."""
    worker = GenerationWorker(
        engine, max_per_user=len(items), max_total=len(items), max_batch_images=max_batch_images, preview_interval_s=1.5
    )
    await worker.start()
    remaining = len(items)
    done = asyncio.Event()

    def listener(event: JobEvent) -> None:
        nonlocal remaining
        if isinstance(event, Finished | Failed | Cancelled):
            remaining -= 1
            if remaining == 0:
                done.set()

    started = time.perf_counter()
    for item in items:
        worker.submit(item, listener)
    if lags is not None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - before - 0.001)
    await done.wait()
    elapsed = time.perf_counter() - started
    await worker.stop()
    return elapsed


def direct(engine: DiffusionEngine, items: list[WorkItem]) -> float:
    started = time.perf_counter()
    for item in items:
        engine.run(GenerationBatch(spec=item.spec, tasks=item.tasks))
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=6, help="4-image jobs for (a) and (c)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        engine = DiffusionEngine(EngineConfig(device=args.device, cache_dir=Path(cache)))
        engine.load(TINY_MODEL_ID)
        engine.run(GenerationBatch(spec=spec(2), tasks=jobs(1, 4, 2, 1)[0].tasks))  # warm-up

        # (a) the worker's overhead: the same 4-image batches, one job per batch either way.
        items = jobs(args.jobs, 4, args.steps, owners=3)
        direct_s = direct(engine, items)
        lags: list[float] = []
        worker_s = await through_worker(engine, items, max_batch_images=4, lags=lags)
        print(f"(a) {args.jobs} jobs x 4 images, {args.steps} steps, 64 px on {engine.device}")
        print(f"    direct pipeline calls: {direct_s:.2f} s; through the worker: {worker_s:.2f} s")
        print(f"    throughput ratio worker/direct: {direct_s / worker_s:.3f} (goal >= 0.97)")

        # (b) 8 users, one image each: one batch of 8 vs 8 batches of 1.
        singles = jobs(8, 1, args.steps, owners=8)
        off_s = await through_worker(engine, singles, max_batch_images=1)
        on_s = await through_worker(engine, singles, max_batch_images=8)
        print("(b) 8 users x 1 image")
        print(f"    batching off: {8 / off_s:.2f} images/s; on: {8 / on_s:.2f} images/s; speed-up {off_s / on_s:.2f}x")

        # (c) loop lag sampled every 1 ms during (a).
        print(f"(c) event-loop lag while generating, {len(lags)} samples")
        print(
            f"    p50 {statistics.median(lags) * 1000:.2f} ms, p99 {percentile(lags, 0.99) * 1000:.2f} ms, "
            f"max {max(lags) * 1000:.2f} ms (goal: p99 < 20 ms)"
        )


if __name__ == "__main__":
    asyncio.run(main())
