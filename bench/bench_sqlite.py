"""Why ``db/`` keeps its own connection thread instead of aiosqlite: 100 admissions at once, both ways.

The design names aiosqlite; ``db/`` does not use it, and this benchmark is the reason. A
member's ``/imagine`` is admitted in one ``BEGIN IMMEDIATE`` transaction (check the quota,
record the job, charge the ledger, read the row back). Two ways to run it from the event loop:

* ``one hop``: the store as it is (``db.connection``): the whole transaction is one function
  that runs in the connection's thread, so it costs the loop one thread hop;
* ``aiosqlite``: the same statements through aiosqlite's public API, one ``await`` per
  statement (each a hop to aiosqlite's thread and back). A transaction's statements must not
  interleave with another coroutine's on the same connection, so each admission holds an
  ``asyncio.Lock`` from ``BEGIN`` to ``COMMIT``, as an application of aiosqlite has to.

The aiosqlite side replays exactly the statements the store ran for an admission (recorded
with sqlite3's trace callback from a real ``Store.admit_job``), on a file with the real
migrations, so both sides do the same SQL. All N admissions start at the same moment; the
figure is each one's time from that moment to its commit, over several rounds.

    pip install -e ".[bench]"   # aiosqlite (MIT); only this benchmark needs it
    python bench/bench_sqlite.py [--admissions 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.jobs.recipe import Recipe
from db.records import QuotaRule
from db.store import Store
from tests.recipes import a_new_job

RULE = QuotaRule(role_ids=(101, 102), default=1_000_000)


def percentiles(latencies_s: list[float]) -> str:
    ordered = sorted(latencies_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  max {ordered[-1] * 1000:6.1f} ms"
    )


async def at_once(count: int, admit: Callable[[int], Awaitable[None]]) -> list[float]:
    """Start ``count`` admissions together; each one's seconds from the start to its commit."""
    latencies: list[float] = []
    start = time.perf_counter()

    async def timed(index: int) -> None:
        await admit(index)
        latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(timed(index) for index in range(count)))
    return latencies


def record_admission_sql(path: Path) -> list[str]:
    """The statements one admission runs, from a real ``Store.admit_job``, ready to run again.

    sqlite3's trace callback gives each statement with its values written in. Replayed as they
    are, the ledger's charge would name the recorded job again (the ledger allows one charge a
    job), so the charge names the job just inserted and the read-back reads the newest job.
    """
    statements: list[str] = []

    async def admit_one() -> int:
        store = await Store.open(path, recipe=Recipe)
        try:
            # Trace the store's own connection while it admits one job.
            await store._conn.run(lambda conn: conn.set_trace_callback(statements.append))
            job = await store.admit_job(a_new_job(user_id=7), limit=RULE)
            await store._conn.run(lambda conn: conn.set_trace_callback(None))
            return job.id
        finally:
            await store.close()

    job_id = asyncio.run(admit_one())
    replay = []
    for statement in statements:
        if statement.startswith("INSERT INTO ledger"):
            columns, values = statement.split(" VALUES ")
            names = columns[columns.index("(") + 1 : -1].split(", ")
            literals = values.strip()[1:-1].split(", ")
            literals[names.index("job_id")] = "last_insert_rowid()"
            statement = f"{columns} VALUES ({', '.join(literals)})"
        elif statement.rstrip().endswith(f"WHERE j.id = {job_id}"):
            statement = statement.rstrip().removesuffix(str(job_id)) + "(SELECT MAX(id) FROM jobs)"
        replay.append(statement)
    return replay


async def one_hop_round(path: Path, count: int) -> list[float]:
    store = await Store.open(path, recipe=Recipe)
    try:
        return await at_once(count, lambda index: _admit(store, index))
    finally:
        await store.close()


async def _admit(store: Store[Recipe], index: int) -> None:
    await store.admit_job(a_new_job(user_id=1000 + index % 50), limit=RULE)


async def aiosqlite_round(path: Path, count: int, statements: list[str]) -> list[float]:
    import aiosqlite  # only this benchmark needs it

    lock = asyncio.Lock()
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await conn.execute("PRAGMA busy_timeout = 5000")
        await conn.execute("PRAGMA foreign_keys = ON")

        async def admit(_index: int) -> None:
            async with lock:
                for statement in statements:
                    cursor = await conn.execute(statement)
                    await cursor.fetchall()

        return await at_once(count, admit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--admissions", type=int, default=100, help="admissions started at the same moment")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    try:
        import aiosqlite
    except ImportError:
        raise SystemExit("This benchmark compares against aiosqlite: pip install aiosqlite") from None

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.sqlite3"
        statements = record_admission_sql(path)
        writes = sum(1 for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")))
        print(
            f"one admission is {len(statements)} statements ({writes} writes) in BEGIN IMMEDIATE ... COMMIT; "
            f"{args.admissions} admissions at once, {args.rounds} rounds; aiosqlite {aiosqlite.__version__}, "
            f"SQLite {sqlite3.sqlite_version}"
        )
        for round_number in range(1, args.rounds + 1):
            hop = asyncio.run(one_hop_round(path, args.admissions))
            via_aiosqlite = asyncio.run(aiosqlite_round(path, args.admissions, statements))
            print(f"round {round_number}  one hop:   {percentiles(hop)}")
            print(f"round {round_number}  aiosqlite: {percentiles(via_aiosqlite)}")


if __name__ == "__main__":
    main()
