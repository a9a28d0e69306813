"""Chaos: the bot process is killed (SIGKILL) twenty times at random moments while it works; and,
in another run, its database refuses writes for a few seconds at random moments.

Ten members queue thirty jobs through the loopback Discord; then the real ``python -m bot``
process is killed at random moments and started again, twenty times, and finally left to
finish. Afterwards every job was delivered exactly once (one message in the channel holds
its result) or failed with a refund, and every member's ledger equals what their delivered
jobs cost. The storage run holds the same to account, and then asks for more jobs, which
must run. Seeded: ``CHAOS_SEED=<n>`` replays a run. Not part of the quick suite
(``-m chaos`` runs it; CI does).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from bot.jobs.service import STORAGE_BUSY
from models.tiny import TINY_MODEL_ID
from tests.fakediscord import FakeChannel, FakeDiscord, FakeMember
from tests.fakediscord.gateway import GatewaySession
from tests.storage_faults import writes_refused

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parent.parent
SEED = int(os.environ.get("CHAOS_SEED", "20261128"))
KILLS = 20
MEMBERS = 10
JOBS = 30
# The storage run: refusals of one to three seconds, a second or two apart, under a dozen jobs.
REFUSALS = 6
STORAGE_MEMBERS = 4
STORAGE_JOBS = 12


def bot_env(fake: FakeDiscord, tmp_path: Path, model_cache_dir: Path) -> dict[str, str]:
    """The real bot on the tiny model, on the CPU, against the loopback Discord, its files in ``tmp_path``."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": "a-secret-token-123",
        "SD_MODEL": TINY_MODEL_ID,
        "DEVICE": "cpu",
        "DATABASE_PATH": str(tmp_path / "bot.sqlite3"),
        "IMAGES_DIR": str(tmp_path / "images"),
        "MODEL_CACHE_DIR": str(model_cache_dir),
        "DISCORD_API_URL": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "DAILY_CREDITS": "1000",
        "QUEUE_MAX_PER_USER": "5",
        "LOG_LEVEL": "WARNING",
    }


async def start_bot(fake: FakeDiscord, env: dict[str, str], log: Path, previous: GatewaySession | None):
    with log.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=log.parent, env=env, stdout=subprocess.DEVNULL, stderr=sink
        )
    session = await fake.wait_until(
        lambda: (active := fake.gateway.active()) is not None and active is not previous and active,
        timeout=120,
        what="the restarted bot's READY session",
    )
    return process, session


def ledger_and_jobs(database: Path) -> tuple[list[sqlite3.Row], dict[int, int]]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        jobs = conn.execute(
            "SELECT j.*, "
            "COALESCE((SELECT SUM(l.credits) FROM ledger AS l WHERE l.job_id = j.id), 0) AS net "
            "FROM jobs AS j ORDER BY j.id"
        ).fetchall()
        balances = dict(conn.execute("SELECT user_id, SUM(credits) FROM ledger GROUP BY user_id").fetchall())
    finally:
        conn.close()
    return jobs, balances


def assert_each_delivered_once_or_refunded(
    fake: FakeDiscord,
    channel: FakeChannel,
    jobs: Sequence[sqlite3.Row],
    balances: Mapping[int, int],
    members: Sequence[FakeMember],
    seed: int,
) -> None:
    """Each job done and delivered is posted once and charged; any other is refunded and posted nowhere."""
    holders: Counter[int] = Counter()
    for message in fake.channel_messages(channel):
        for button in message.buttons:
            parts = str(button.get("custom_id", "")).split(":")
            if parts[:2] == ["lc", "del"]:
                holders[int(parts[2])] += 1
    owed: defaultdict[int, int] = defaultdict(int)
    for job in jobs:
        if job["status"] == "done" and job["delivery"] == "delivered":
            assert holders[job["id"]] == 1, f"job {job['id']} was posted {holders[job['id']]} times (seed {seed})"
            owed[job["user_id"]] += job["net"]
        else:
            assert job["net"] == 0, f"job {job['id']} ended {job['status']}/{job['delivery']} unrefunded (seed {seed})"
            assert holders[job["id"]] == 0
    for member in members:
        assert balances.get(member.user.id, 0) == owed[member.user.id], f"ledger of {member.user.id} (seed {seed})"


def settled(database: Path) -> bool:
    try:
        jobs, _ = ledger_and_jobs(database)
    except sqlite3.Error:
        return False
    return bool(jobs) and all(
        job["status"] in ("failed", "cancelled") or (job["status"] == "done" and job["delivery"] != "pending")
        for job in jobs
    )


async def test_twenty_kills_lose_no_job_and_deliver_none_twice(
    fake_discord: FakeDiscord, tmp_path: Path, model_cache_dir: Path, tiny_engine: object
) -> None:
    # tiny_engine builds builtin:tiny into model_cache_dir once, so each start only loads it.
    rng = random.Random(SEED)
    world = fake_discord.add_standard_guild()
    members = [fake_discord.add_member(world.guild, f"member{n}") for n in range(MEMBERS)]
    database = tmp_path / "bot.sqlite3"
    env = bot_env(fake_discord, tmp_path, model_cache_dir)
    log = tmp_path / "bot.log"
    process, session = await start_bot(fake_discord, env, log, None)
    try:
        # 1. Thirty jobs from ten members, each admitted (answered) before the chaos starts.
        interactions = []
        for n in range(JOBS):
            options = {"prompt": f"a lighthouse, take {n}", "count": 1 + n % 2, "steps": 2 + n % 3, "seed": n}
            interactions.append(
                await fake_discord.run_slash("imagine", options, user=members[n % MEMBERS], channel=world.text_channel)
            )
        answers = await asyncio.gather(*(ix.wait_for_response(timeout=60) for ix in interactions))
        assert not any(answer.ephemeral for answer in answers), "every job must have been admitted"

        # 2. Twenty kills at random moments, each followed by a restart.
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.2, 3.0))
            process.kill()
            await process.wait()
            process, session = await start_bot(fake_discord, env, log, session)

        # 3. Left alone, it finishes everything.
        await fake_discord.wait_until(lambda: settled(database), timeout=600, what="every job to settle")
        process.terminate()
        await asyncio.wait_for(process.wait(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    jobs, balances = ledger_and_jobs(database)
    assert len(jobs) == JOBS, "a job was lost or made twice"
    assert_each_delivered_once_or_refunded(fake_discord, world.text_channel, jobs, balances, members, SEED)


async def test_storage_refusing_writes_at_random_moments_loses_no_job_and_the_queue_resumes(
    fake_discord: FakeDiscord, tmp_path: Path, model_cache_dir: Path, tiny_engine: object
) -> None:
    rng = random.Random(SEED)
    world = fake_discord.add_standard_guild()
    members = [fake_discord.add_member(world.guild, f"member{n}") for n in range(STORAGE_MEMBERS)]
    database = tmp_path / "bot.sqlite3"
    log = tmp_path / "bot.log"
    process, _ = await start_bot(fake_discord, bot_env(fake_discord, tmp_path, model_cache_dir), log, None)
    admitted = 0

    async def ask(n: int, *, steps: int) -> bool:
        """One member's /imagine; whether it was admitted (else refused with the storage's sentence)."""
        options = {"prompt": f"a lighthouse, take {n}", "count": 1 + n % 2, "steps": steps, "seed": n}
        interaction = await fake_discord.run_slash(
            "imagine", options, user=members[n % STORAGE_MEMBERS], channel=world.text_channel
        )
        if not (await interaction.wait_for_response(timeout=60)).ephemeral:
            return True
        # An ephemeral first answer: "thinking" while a slow check ran, then "Accepted" or the refusal.
        said = await interaction.wait_for_message(lambda message: bool(message.content), timeout=120)
        if said.content.startswith("Accepted"):
            return True
        assert said.content == STORAGE_BUSY, f"refused for another reason: {said.content!r} (seed {SEED})"
        return False

    try:
        # 1. A dozen jobs, admitted before the storage fails.
        for n in range(STORAGE_JOBS):
            assert await ask(n, steps=2 + n % 3), "every job before the faults must be admitted"
        admitted = STORAGE_JOBS

        # 2. While they run, the database refuses every write for a few seconds, six times; a member
        #    asks for a job during each refusal (refused with a sentence, or admitted if it came first).
        for refusal in range(REFUSALS):
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            with writes_refused(database):
                asking = asyncio.ensure_future(ask(STORAGE_JOBS + refusal, steps=2))
                await asyncio.sleep(rng.uniform(1.0, 3.0))
            admitted += await asking

        # 3. Storage answers again: everything settles, and jobs asked for afterwards run.
        await fake_discord.wait_until(lambda: settled(database), timeout=300, what="every job to settle")
        for n in range(STORAGE_JOBS + REFUSALS, STORAGE_JOBS + REFUSALS + 2):
            assert await ask(n, steps=2), "a job after the faults must be admitted"
        admitted += 2
        await fake_discord.wait_until(lambda: settled(database), timeout=120, what="the later jobs to settle")
        process.terminate()
        await asyncio.wait_for(process.wait(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    jobs, balances = ledger_and_jobs(database)
    assert len(jobs) == admitted, "a job was lost or made twice"
    assert all(job["status"] == "done" and job["delivery"] == "delivered" for job in jobs[-2:]), (
        "the jobs after the faults did not run"
    )
    assert_each_delivered_once_or_refunded(fake_discord, world.text_channel, jobs, balances, members, SEED)
