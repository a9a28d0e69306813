"""Crash recovery with a real process: SIGKILL it mid-job, restart, and every job finishes once, charged once.

A child Python process opens the core on a database in ``tmp_path`` (the tiny model,
built once per session by ``tiny_engine``), submits jobs, then freezes its event loop at
a chosen moment and tells the test so. Freezing the loop pins the crash state exactly:
SQLite cannot move past what it says at that instant (every write of the service goes
through the loop), so the test never races the worker. The test reads the SQLite file
read-only until it shows that state, SIGKILLs the child, opens a new core on the same
file in its own process, resumes, and checks the outcome and the quota ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.jobs.events import Cancelled, Failed, Progress, Started
from bot.jobs.recipe import Recipe
from bot.jobs.service import Completed, ServiceEvent
from bot.runtime.core import open_core
from db.store import Store
from models.engine import DiffusionEngine
from tests.helpers import NoNsfw
from tests.test_service import CHANNEL, GUILD, settings_for

REPO_ROOT = Path(__file__).resolve().parents[1]
USER = 1
DAILY_CREDITS = 100
WAIT_S = 240.0  # generous: a 60-step job on a busy 2-core CI machine

# The child: argv = tmp_path, model cache dir, scenario, daily credits. It prints one line
# "SUBMITTED <json list of [job id, cost]>" once the crash state is reached, then
# freezes (time.sleep blocks its event loop, so nothing more reaches SQLite) until killed.
CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path

    from bot.runtime.core import open_core
    from bot.jobs.events import Progress
    from bot.jobs.requests import ImagineOptions
    from bot.jobs.service import Completed, Origin
    from tests.helpers import NoNsfw
    from tests.test_service import settings_for

    tmp_path, cache_dir, scenario = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    ORIGIN = Origin(user_id=1, guild_id=100, channel_id=200)


    def freeze(jobs):
        print("SUBMITTED " + json.dumps(jobs), flush=True)
        time.sleep(3600)  # blocks the event loop: the crash state cannot change any more
        sys.exit("not killed within an hour")


    async def main():
        settings = settings_for(tmp_path, model_cache_dir=cache_dir, daily_credits=int(sys.argv[4]))
        async with open_core(settings, classifier=NoNsfw()) as core:
            seen = []
            core.service.add_listener(seen.append)
            if scenario == "running":
                # A long job that starts at once, and a short one (another BatchSpec, so never in
                # the same batch) that waits behind it.
                first = await core.service.imagine(ImagineOptions(prompt="a lighthouse in a storm", steps=60, seed=11), ORIGIN)
                second = await core.service.imagine(ImagineOptions(prompt="a red fox in snow", steps=8, seed=21), ORIGIN)
                deadline = time.monotonic() + 240  # a worker process starts first; CI may be busy
                # Wait until the first job is mid-generation: SQLite says 'running' (Started is
                # published only after it is recorded) and at least one step has run.
                while not any(isinstance(e, Progress) and e.job_id == first.job_id for e in seen):
                    if any(isinstance(e, Completed) for e in seen) or time.monotonic() > deadline:
                        sys.exit(f"job {first.job_id} never seen mid-generation: {seen!r}")
                    await asyncio.sleep(0.005)
                freeze([[first.job_id, first.cost], [second.job_id, second.cost]])
            elif scenario == "queued":
                # imagine returns right after the worker queued the job, without yielding to the
                # loop: freezing now leaves the job queued and never started.
                job = await core.service.imagine(ImagineOptions(prompt="a quiet harbour", steps=4, seed=31), ORIGIN)
                freeze([[job.job_id, job.cost]])
            sys.exit(f"unknown scenario {scenario!r}")


    asyncio.run(main())
    """
)


@contextmanager
def child_process(tmp_path: Path, model_cache_dir: Path, scenario: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    with (tmp_path / "child.out").open("wb") as out, (tmp_path / "child.err").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(model_cache_dir), scenario, str(DAILY_CREDITS)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def child_output(tmp_path: Path) -> str:
    out = (tmp_path / "child.out").read_text(errors="replace")
    err = (tmp_path / "child.err").read_text(errors="replace")
    return f"--- stdout ---\n{out}\n--- stderr (end) ---\n{err[-4000:]}"


async def wait_until(what: str, check: Callable[[], Any], proc: subprocess.Popen[bytes], tmp_path: Path) -> Any:
    """Poll ``check`` until it returns something truthy; fail early if the child died."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = check()
        if value:
            return value
        assert proc.poll() is None, f"the child exited ({proc.returncode}) before {what}\n{child_output(tmp_path)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{child_output(tmp_path)}"
        await asyncio.sleep(0.02)


def submitted_jobs(tmp_path: Path) -> list[tuple[int, int]] | None:
    for line in (tmp_path / "child.out").read_text().splitlines():
        if line.startswith("SUBMITTED "):
            return [(int(job_id), int(cost)) for job_id, cost in json.loads(line.removeprefix("SUBMITTED "))]
    return None


def read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)


def job_rows(db: Path) -> dict[int, tuple[str, float | None]]:
    """{job id: (status, started_at)} straight from the file, or {} before the schema exists."""
    if not db.exists():
        return {}
    conn = read_only(db)
    try:
        return {row[0]: (row[1], row[2]) for row in conn.execute("SELECT id, status, started_at FROM jobs")}
    except sqlite3.OperationalError:  # the child has not migrated the file yet
        return {}
    finally:
        conn.close()


def ledger_rows(db: Path) -> list[tuple[int, str, int]]:
    conn = read_only(db)
    try:
        return list(conn.execute("SELECT job_id, kind, credits FROM ledger ORDER BY id"))
    finally:
        conn.close()


def all_exist(paths: list[Path]) -> bool:
    return all(path.exists() for path in paths)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


async def crash(
    tmp_path: Path, model_cache_dir: Path, scenario: str, expected: Callable[[list[int]], dict[int, str]]
) -> list[tuple[int, int]]:
    """Run the child until the crash state, check it in SQLite, SIGKILL it; return [(job id, cost)]."""
    db = settings_for(tmp_path).database_path
    with child_process(tmp_path, model_cache_dir, scenario) as proc:
        jobs = await wait_until("the jobs to be submitted", lambda: submitted_jobs(tmp_path), proc, tmp_path)
        ids = [job_id for job_id, _ in jobs]
        want = expected(ids)

        def in_crash_state() -> bool:
            rows = job_rows(db)
            return {job_id: rows.get(job_id, (None,))[0] for job_id in ids} == want

        await wait_until(f"SQLite to show {want}", in_crash_state, proc, tmp_path)
        kill(proc)
    # The kill landed before anything was delivered: no images, nothing refunded, one charge each.
    assert job_rows(db).keys() == set(ids)
    assert not any((tmp_path / "images" / str(job_id)).exists() for job_id in ids)
    assert ledger_rows(db) == [(job_id, "charge", cost) for job_id, cost in jobs]
    return jobs


async def restart_and_resume(
    tmp_path: Path, model_cache_dir: Path, engine: DiffusionEngine, ids: list[int]
) -> tuple[list[int], list[ServiceEvent]]:
    """A new core in this process on the same file: resume, and wait until every job has ended."""
    settings = settings_for(tmp_path, model_cache_dir=model_cache_dir, daily_credits=DAILY_CREDITS)
    events: list[ServiceEvent] = []
    all_ended = asyncio.Event()

    def listener(event: ServiceEvent) -> None:
        events.append(event)
        ended = {e.job_id for e in events if isinstance(e, Completed | Failed | Cancelled)}
        if ended >= set(ids):
            all_ended.set()

    async with open_core(settings, engine=engine, classifier=NoNsfw()) as core:
        core.service.add_listener(listener)  # before resume, so no event of a resumed job is missed
        resumed = await core.service.resume()
        try:
            await asyncio.wait_for(all_ended.wait(), WAIT_S)
        except TimeoutError:
            seen = [(type(event).__name__, event.job_id) for event in events if not isinstance(event, Progress)]
            raise AssertionError(
                f"jobs {ids} did not all end within {WAIT_S:.0f} s; resumed {resumed}, saw {seen}"
            ) from None
    # Closing the core waited for every follower: no event can come after this point.
    return resumed, events


async def check_finished_once(tmp_path: Path, jobs: list[tuple[int, int]], events: list[ServiceEvent]) -> None:
    ids = [job_id for job_id, _ in jobs]
    completed = [event for event in events if isinstance(event, Completed)]
    assert Counter(event.job_id for event in completed) == Counter(ids)  # exactly one Completed per job
    assert not [event for event in events if isinstance(event, Failed | Cancelled)]
    for event in completed:
        result = event.result
        assert [path.exists() for path in result.image_paths] == [True] * 4
        assert (tmp_path / "images" / str(event.job_id) / result.grid.filename).exists()

    settings = settings_for(tmp_path)
    stored_paths: list[Path] = []
    store = await Store.open(settings.database_path, recipe=Recipe)
    try:
        for job_id, cost in jobs:
            job = await store.get_job(job_id)
            assert job is not None and job.status == "done", job
            assert job.cost == cost and job.charged == cost and job.refunded == 0
            assert len(job.image_paths) == 4
            stored_paths.extend(Path(path) for path in job.image_paths)
        assert await store.unfinished_jobs() == []
        assert (await store.usage(GUILD, USER)).used == sum(cost for _, cost in jobs)
    finally:
        await store.close()
    assert all_exist(stored_paths)
    # Nothing was charged or refunded a second time: the ledger is still the admissions' charges.
    assert ledger_rows(settings.database_path) == [(job_id, "charge", cost) for job_id, cost in jobs]


async def test_a_job_killed_mid_generation_finishes_once_after_restart(
    tmp_path: Path, model_cache_dir: Path, tiny_engine: DiffusionEngine
) -> None:
    # tiny_engine has built the tiny model into model_cache_dir, so the child only loads it.
    jobs = await crash(tmp_path, model_cache_dir, "running", lambda ids: {ids[0]: "running", ids[1]: "queued"})
    ids = [job_id for job_id, _ in jobs]
    assert [cost for _, cost in jobs] == [12, 2]  # 4 images x 60/20 and 4 x 8/20 (rounded up) of the default steps

    resumed, events = await restart_and_resume(tmp_path, model_cache_dir, tiny_engine, ids)

    assert resumed == ids  # in their original order
    started = [event.job_id for event in events if isinstance(event, Started)]
    assert started == ids  # each started once, the interrupted one first
    await check_finished_once(tmp_path, jobs, events)
    # The restart regenerated the same images: the stored seeds were reused.
    first = next(event.result for event in events if isinstance(event, Completed) and event.job_id == ids[0])
    assert first.job.recipe.seeds == (11, 12, 13, 14)
    assert first.job.channel_id == CHANNEL and first.job.guild_id == GUILD


async def test_a_job_still_queued_when_killed_runs_once_after_restart(
    tmp_path: Path, model_cache_dir: Path, tiny_engine: DiffusionEngine
) -> None:
    jobs = await crash(tmp_path, model_cache_dir, "queued", lambda ids: {ids[0]: "queued"})
    ids = [job_id for job_id, _ in jobs]
    assert job_rows(settings_for(tmp_path).database_path)[ids[0]] == ("queued", None)  # never started

    resumed, events = await restart_and_resume(tmp_path, model_cache_dir, tiny_engine, ids)

    assert resumed == ids
    assert [event.job_id for event in events if isinstance(event, Started)] == ids
    await check_finished_once(tmp_path, jobs, events)
