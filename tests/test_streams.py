"""The streams transport through a real Valkey server: the bot's side, and workers in threads of this process.

The workers are the real ``StreamWorker`` around the real ``WorkerRunner`` on the tiny model;
only the process around them is the test's. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.gpu.stream_main import STALE_RUN, StreamWorker
from bot.jobs.events import Finished, Progress, Queued, Started
from bot.jobs.generation import work_order
from bot.jobs.lifecycle import NO_WORKER_YET
from bot.runtime.worker import worker_main
from bot.settings import Settings, SettingsError
from bot.wire import Cancel, Message, Ready, Result, Run, RunJob, decode, encode
from bot.workers.dispatch import Dispatcher, WorkerLost
from bot.workers.protocol import WorkOrder
from bot.workers.streams import (
    BOOT_FIELD,
    GROUP,
    MESSAGE_FIELD,
    BrokerUnreachable,
    StreamKeys,
    StreamsTransport,
    not_available_yet,
    redacted,
)
from models.engine import DiffusionEngine
from models.errors import ModelUnavailable
from models.tiny import TINY_MODEL_ID
from models.types import ModelPreset
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup
from tests.helpers import MemoryAttempts, Recorder, has_grid, output_images
from tests.recipes import a_recipe
from tests.test_startup import bot_env
from tests.valkey_server import ThreadWorker, ValkeyServer
from tests.valkey_server import valkey as valkey_fixture

valkey = valkey_fixture  # a fresh server for each test

KEYS = StreamKeys()
RECIPE = a_recipe(
    prompt="a fox", negative_prompt="", model=TINY_MODEL_ID, width=64, height=64, steps=3, guidance=7.0, seeds=(1,)
)
WAIT_S = 60.0  # generous: CI is a busy 2-core machine


def item(job_id: int, owner: int, seeds: tuple[int, ...] = (1,)) -> WorkOrder:
    return work_order(job_id, owner, replace(RECIPE, seeds=seeds))


def a_run(batch_id: str, job_id: int = 1) -> Run:
    return Run(
        batch_id=batch_id,
        jobs=(RunJob(item(job_id, owner=1).request, attempt=1, token=f"token-{batch_id}"),),
        nsfw_threshold=0.7,
        preview_interval_s=0.0,
    )


class GatedEngine:
    """The tiny engine whose runs wait for ``gate``: a hung GPU, which calls back no step and so sends no heartbeat."""

    def __init__(self, engine: DiffusionEngine) -> None:
        self._engine = engine
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.should_interrupt: Callable[[], bool] = lambda: False  # the running batch's, once entered

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.should_interrupt = kwargs["should_interrupt"]
        self.entered.set()
        self.gate.wait(WAIT_S)
        return self._engine.run(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@pytest.fixture
def workers(valkey: ValkeyServer, tiny_engine: DiffusionEngine) -> Iterator[Callable[..., ThreadWorker]]:
    """Starts workers on the test's server; stops them all after the test."""
    started: list[tuple[ThreadWorker, GatedEngine | None]] = []

    def start(worker_id: str, engine: Any = None) -> ThreadWorker:
        worker = ThreadWorker(valkey.url, engine or tiny_engine, worker_id).start()
        started.append((worker, engine if isinstance(engine, GatedEngine) else None))
        return worker

    yield start
    for worker, gated in started:
        if gated is not None:
            gated.gate.set()
        worker.stop()


class Collected:
    """What a transport delivered, for a test to wait on."""

    def __init__(self) -> None:
        self.messages: list[Message | WorkerLost] = []
        self._changed = asyncio.Event()

    def __call__(self, message: Message | WorkerLost) -> None:
        self.messages.append(message)
        self._changed.set()

    async def first(self, wanted: Callable[[Message | WorkerLost], bool], timeout_s: float = WAIT_S) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            found = next((message for message in self.messages if wanted(message)), None)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            assert left > 0, f"nothing wanted arrived in {timeout_s:.0f} s; got {self.messages!r}"
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass


def results_in_stream(valkey: ValkeyServer) -> list[Message]:
    client = valkey.client()
    try:
        return [decode(fields[MESSAGE_FIELD]) for _, fields in client.xrange(KEYS.results)]
    finally:
        client.close()


def pending_count(valkey: ValkeyServer) -> int:
    client = valkey.client()
    try:
        return int(client.xpending(KEYS.results, GROUP)["pending"])
    finally:
        client.close()


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        await asyncio.sleep(0.05)


def has_progress_subscriber(valkey: ValkeyServer) -> bool:
    client = valkey.client()
    try:
        return any(count >= 1 for _, count in client.pubsub_numsub(KEYS.progress))
    finally:
        client.close()


@contextlib.asynccontextmanager
async def bot_side(valkey: ValkeyServer, deliver: Collected) -> AsyncIterator[StreamsTransport]:
    """A bot's end of the streams, started with ``deliver`` as its dispatcher and stopped on the way out."""
    transport = StreamsTransport(valkey.url, block_s=0.2)
    await transport.start(deliver)
    try:
        yield transport
    finally:
        await transport.stop()


def ready_from(worker_id: str) -> Callable[[Message | WorkerLost], bool]:
    return lambda message: isinstance(message, Ready) and message.worker_id == worker_id


def result_of(batch_id: str) -> Callable[[Message | WorkerLost], bool]:
    return lambda message: isinstance(message, Result) and message.batch_id == batch_id


# -- through the dispatcher ---------------------------------------------------------------------


async def test_a_job_dispatched_through_a_real_server_finishes_with_its_images(
    valkey: ValkeyServer, workers: Callable[..., ThreadWorker]
) -> None:
    transport = StreamsTransport(valkey.url, block_s=0.2)
    dispatcher = Dispatcher(transport, MemoryAttempts(), preview_interval_s=0.0)
    await dispatcher.start()
    try:
        workers("w1")
        # The model's preset and tokenizer came with the worker's Ready, through the stream.
        preset = await asyncio.wait_for(dispatcher.preset(TINY_MODEL_ID), WAIT_S)
        assert preset.model == TINY_MODEL_ID
        assert await dispatcher.count_prompt_tokens(TINY_MODEL_ID, "a red fox in the snow") > 0
        await eventually(lambda: has_progress_subscriber(valkey), "the bot subscribed to progress")

        recorder = Recorder()
        dispatcher.submit(item(1, owner=1, seeds=(11, 12)), recorder)
        await asyncio.wait_for(recorder.done.wait(), WAIT_S)

        (finished,) = recorder.of(Finished)
        assert finished.output.token.endswith("-w1")
        assert [image.size for image in output_images(finished.output)] == [(64, 64)] * 2
        assert finished.output.seeds == (11, 12)
        assert recorder.of(Started)
        assert recorder.of(Progress), "progress travelled by pub/sub"
    finally:
        await dispatcher.stop(timeout_s=WAIT_S)


async def test_a_worker_that_stops_heartbeating_is_lost_and_its_job_runs_on_another(
    valkey: ValkeyServer, workers: Callable[..., ThreadWorker], tiny_engine: DiffusionEngine
) -> None:
    ledger = MemoryAttempts()
    transport = StreamsTransport(valkey.url, block_s=0.2)
    dispatcher = Dispatcher(transport, ledger, preview_interval_s=0.0, heartbeat_timeout_s=10.0)
    await dispatcher.start()
    hung = GatedEngine(tiny_engine)
    try:
        workers("w1", hung)
        await asyncio.wait_for(dispatcher.preset(TINY_MODEL_ID), WAIT_S)
        recorder = Recorder()
        dispatcher.submit(item(1, owner=1), recorder)
        assert await asyncio.to_thread(hung.entered.wait, WAIT_S), "w1 never started the job"
        workers("w2")  # ready while w1 hangs in its batch, sending nothing

        await asyncio.wait_for(recorder.done.wait(), WAIT_S)

        (finished,) = recorder.of(Finished)
        assert finished.output.token.endswith("-w2")
        assert finished.output.attempt == 2
        assert ledger.requeued == [1]
    finally:
        hung.gate.set()
        await dispatcher.stop(timeout_s=WAIT_S)


async def test_a_batch_that_never_reaches_its_worker_is_put_back_though_the_worker_heartbeats(
    valkey: ValkeyServer, workers: Callable[..., ThreadWorker]
) -> None:
    ledger = MemoryAttempts()
    transport = StreamsTransport(valkey.url, block_s=0.2, stale_after_s=2.0)
    dispatcher = Dispatcher(transport, ledger, preview_interval_s=0.0)
    await dispatcher.start()
    # A worker that says it is ready, again and again, and never reads its inbox.
    ghost = Ready(worker_id="ghost", boot_id="ghost-boot", free_slots=1, models=(TINY_MODEL_ID,), max_batch_images=8)
    client = valkey.client()
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            client.xadd(KEYS.results, {MESSAGE_FIELD: encode(ghost)})
            await asyncio.sleep(0.2)

    beating = asyncio.create_task(heartbeat())
    try:
        recorder = Recorder()
        dispatcher.submit(item(1, owner=1), recorder)
        await eventually(lambda: bool(recorder.of(Started)), "the job was sent to the ghost")
        workers("w2")
        await asyncio.wait_for(recorder.done.wait(), WAIT_S)

        (finished,) = recorder.of(Finished)
        assert finished.output.token.endswith("-w2")
        assert ledger.requeued == [1]
    finally:
        stop.set()
        await beating
        client.close()
        await dispatcher.stop(timeout_s=WAIT_S)


async def test_a_server_restarted_without_its_data_loses_no_job(
    valkey: ValkeyServer, workers: Callable[..., ThreadWorker]
) -> None:
    transport = StreamsTransport(valkey.url, block_s=0.2)
    dispatcher = Dispatcher(transport, MemoryAttempts(), preview_interval_s=0.0)
    await dispatcher.start()
    try:
        workers("w1")
        first = Recorder()
        dispatcher.submit(item(1, owner=1), first)
        await asyncio.wait_for(first.done.wait(), WAIT_S)

        await asyncio.to_thread(valkey.restart)  # persistence off: the group, the inbox and the rest are gone

        second = Recorder()
        dispatcher.submit(item(2, owner=2), second)
        await asyncio.wait_for(second.done.wait(), WAIT_S)
        assert first.of(Finished) and second.of(Finished)
    finally:
        await dispatcher.stop(timeout_s=WAIT_S)


async def test_python_m_bot_worker_serves_the_bot_and_stops_on_sigterm(valkey: ValkeyServer, tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "REDIS_URL": valkey.url,
        "SD_MODEL": TINY_MODEL_ID,
        "DEVICE": "cpu",
        "WORKER_ID": "process-1",
        "MODEL_CACHE_DIR": str(tmp_path / "models"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "worker", env=environment, cwd=tmp_path)
    transport = StreamsTransport(valkey.url, block_s=0.2)
    dispatcher = Dispatcher(transport, MemoryAttempts(), preview_interval_s=0.0)
    await dispatcher.start()
    try:
        await asyncio.wait_for(dispatcher.preset(TINY_MODEL_ID), WAIT_S)
        recorder = Recorder()
        dispatcher.submit(item(1, owner=1, seeds=(1, 2)), recorder)
        await asyncio.wait_for(recorder.done.wait(), WAIT_S)
        (finished,) = recorder.of(Finished)
        assert finished.output.token.endswith("-process-1") and finished.output.count == 2

        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), WAIT_S) == 0
        client = valkey.client()
        try:
            assert not client.exists(KEYS.inbox("process-1"))  # a worker that stops leaves no inbox behind
        finally:
            client.close()
    finally:
        if worker.returncode is None:
            worker.kill()
            await asyncio.wait_for(worker.wait(), 10)
        await dispatcher.stop(timeout_s=WAIT_S)


# -- the transport itself ----------------------------------------------------------------------


async def test_a_result_is_kept_until_settled_then_deleted_from_the_stream(
    valkey: ValkeyServer, workers: Callable[..., ThreadWorker]
) -> None:
    collected = Collected()
    async with bot_side(valkey, collected) as transport:
        workers("w1")
        await collected.first(ready_from("w1"))
        await transport.send("w1", a_run("b1"))
        result = await collected.first(result_of("b1"))
        assert result.error is None and result.outputs[0].count == 1

        held = [message for message in results_in_stream(valkey) if isinstance(message, Result)]
        assert [message.batch_id for message in held] == ["b1"]
        assert pending_count(valkey) >= 1

        await transport.settled(result)
        assert not [message for message in results_in_stream(valkey) if isinstance(message, Result)]
        await eventually(lambda: pending_count(valkey) == 0, "nothing pending")


async def test_a_cancel_reaches_the_worker_while_its_batch_runs(
    valkey: ValkeyServer, workers: Callable[..., ThreadWorker], tiny_engine: DiffusionEngine
) -> None:
    held = GatedEngine(tiny_engine)
    workers("w1", held)
    collected = Collected()
    async with bot_side(valkey, collected) as transport:
        await collected.first(ready_from("w1"))
        await transport.send("w1", a_run("b1", job_id=7))
        assert await asyncio.to_thread(held.entered.wait, WAIT_S)
        await transport.send("w1", Cancel((7,)))
        await eventually(lambda: held.should_interrupt(), "the worker took the cancel")
        held.gate.set()

        result = await collected.first(result_of("b1"))
        assert result.cancelled == (7,) and not result.outputs


async def test_a_restarted_bot_gets_the_result_written_while_none_read_and_the_one_it_never_settled(
    valkey: ValkeyServer, workers: Callable[..., ThreadWorker], tiny_engine: DiffusionEngine
) -> None:
    held = GatedEngine(tiny_engine)
    workers("w1", held)
    first_bot = Collected()
    transport = StreamsTransport(valkey.url, block_s=0.2)
    await transport.start(first_bot)
    await first_bot.first(ready_from("w1"))
    await transport.send("w1", a_run("b1"))
    assert await asyncio.to_thread(held.entered.wait, WAIT_S)
    await transport.stop()  # the bot goes away while the worker runs

    held.gate.set()
    await eventually(
        lambda: any(isinstance(m, Result) for m in results_in_stream(valkey)), "the result written with no bot"
    )

    second_bot = Collected()
    transport = StreamsTransport(valkey.url, block_s=0.2)
    await transport.start(second_bot)
    result = await second_bot.first(result_of("b1"))
    assert result.outputs[0].token == "token-b1" and result.outputs[0].count == 1
    await transport.stop()  # read, never settled: as if this bot crashed before it took the result

    third_bot = Collected()
    async with bot_side(valkey, third_bot) as transport:
        again = await third_bot.first(result_of("b1"))  # claimed from the group's pending entries
        assert again.outputs[0].token == "token-b1"
        await transport.settled(again)
        assert not [m for m in results_in_stream(valkey) if isinstance(m, Result)]
        await eventually(lambda: pending_count(valkey) == 0, "nothing pending")


async def test_a_worker_drops_runs_meant_for_its_last_life_and_answers_one_that_waited_too_long(
    valkey: ValkeyServer, workers: Callable[..., ThreadWorker]
) -> None:
    collected = Collected()
    async with bot_side(valkey, collected) as transport:
        worker = workers("w1")
        await collected.first(ready_from("w1"))
        client = valkey.client()
        try:
            inbox = KEYS.inbox("w1")
            boot = worker.runner.boot_id.encode()
            # Written (by its id) long ago: a worker that reads it now was away while the bot moved on.
            client.xadd(inbox, {MESSAGE_FIELD: encode(a_run("stale")), BOOT_FIELD: boot}, id="1000-0")
            client.xadd(inbox, {MESSAGE_FIELD: encode(a_run("earlier-life")), BOOT_FIELD: b"another-boot"})
        finally:
            client.close()
        await transport.send("w1", a_run("now"))

        stale = await collected.first(result_of("stale"))
        assert stale.error == STALE_RUN and not stale.outputs
        done = await collected.first(result_of("now"))
        assert done.error is None and len(done.outputs) == 1
        assert not [m for m in collected.messages if isinstance(m, Result) and m.batch_id == "earlier-life"]


async def test_a_restarted_bot_learns_the_tokenizer_a_worker_announced_to_its_predecessor(
    valkey: ValkeyServer, workers: Callable[..., ThreadWorker]
) -> None:
    first_bot = Collected()
    transport = StreamsTransport(valkey.url, block_s=0.2)
    await transport.start(first_bot)
    workers("w1")
    announced = await first_bot.first(lambda m: isinstance(m, Ready) and bool(m.tokenizers))
    await transport.stop()

    second_bot = Collected()
    async with bot_side(valkey, second_bot) as transport:
        ready = await second_bot.first(ready_from("w1"))
        assert ready.tokenizers == announced.tokenizers  # the worker sends its tokenizer once per boot


# -- started in any order --------------------------------------------------------------------------


async def test_a_restarted_bot_with_no_worker_online_knows_the_presets_workers_announced_and_refuses_others_at_once(
    valkey: ValkeyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub model is told from this host's cache alone, never fetched
    announced = ModelPreset(
        model="latentcord-test/announced-only",
        family="sd1",
        width=512,
        height=512,
        steps=30,
        guidance=7.5,
        scheduler="EulerAncestralDiscreteScheduler",
        max_prompt_tokens=77,
    )
    ready = Ready(
        worker_id="gone",
        boot_id="gone-boot",
        free_slots=1,
        models=(announced.model,),
        max_batch_images=8,
        presets=(announced,),
    )
    first_bot = Collected()
    async with bot_side(valkey, first_bot):
        client = valkey.client()
        try:
            client.xadd(KEYS.results, {MESSAGE_FIELD: encode(ready)})
        finally:
            client.close()
        await first_bot.first(ready_from("gone"))
    # The worker is gone; a new bot starts with nobody online.
    dispatcher = Dispatcher(StreamsTransport(valkey.url, block_s=0.2), MemoryAttempts(), preview_interval_s=0.0)
    await dispatcher.start()
    try:
        assert await asyncio.wait_for(dispatcher.preset(announced.model), WAIT_S) == announced
        tiny = await asyncio.wait_for(dispatcher.preset(TINY_MODEL_ID), WAIT_S)  # told without a worker or weights
        assert (tiny.family, tiny.width, tiny.steps) == ("tiny", 64, 20)
        with pytest.raises(ModelUnavailable) as refused:
            await asyncio.wait_for(dispatcher.preset("latentcord-test/never-announced"), WAIT_S)
        assert str(refused.value) == not_available_yet("latentcord-test/never-announced")
        assert str(refused.value) == (
            "The model latentcord-test/never-announced is not available yet: no GPU worker has announced it; "
            "try again once one is online."
        )
        # A job waits for a worker rather than being refused.
        recorder = Recorder()
        assert dispatcher.submit(item(1, owner=1), recorder) == 1
        assert dispatcher.health().workers == 0 and dispatcher.health().problem is None
        assert [type(event) for event in recorder.events] == [Queued]
    finally:
        await dispatcher.stop(timeout_s=WAIT_S)


async def test_the_bot_starts_before_any_worker_and_a_worker_started_later_runs_the_jobs_that_waited(
    valkey: ValkeyServer, fake_discord: FakeDiscord, world: GuildSetup, tmp_path: Path, model_cache_dir: Path
) -> None:
    env = bot_env(
        tmp_path,
        model_cache_dir,
        REDIS_URL=valkey.url,
        DISCORD_TOKEN="fake-bot-token",
        DISCORD_API_URL=fake_discord.api_base,
        DISCORD_GATEWAY_URL=fake_discord.gateway_url,
    )
    logs = {name: tmp_path / f"{name}.log" for name in ("bot", "worker")}
    processes: list[asyncio.subprocess.Process] = []

    async def start(name: str, *args: str, **settings: str) -> None:
        with logs[name].open("wb") as log:
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot",
                    *args,
                    env={**env, **settings},
                    cwd=tmp_path,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )

    async def usage() -> str:
        asked = await fake_discord.run_slash("usage", user=world.member, channel=world.text_channel)
        answer = await asked.wait_for_response(timeout=10)
        assert answer.ephemeral
        return str(answer.content)

    async def imagine(prompt: str) -> Any:
        options = {"prompt": prompt, "steps": 2, "count": 1}
        return await fake_discord.run_slash("imagine", options, user=world.member, channel=world.text_channel)

    def accepted(message: Any) -> bool:
        return NO_WORKER_YET in message.content and bool(message.buttons)

    try:
        # 1. No worker anywhere: the bot connects all the same (it used to wait 10 minutes for one, then exit).
        await start("bot")
        await fake_discord.wait_until(lambda: fake_discord.find_command("imagine"), timeout=120, what="commands")
        await fake_discord.wait_for_gateway(timeout=60)

        # 2. A job is accepted, publicly, saying it waits for a worker.
        kept = await imagine("a red fox in snow")
        status = await kept.wait_for_message(accepted, timeout=30)
        assert not status.ephemeral and "Queued: position 1" in status.content
        before = await usage()
        assert "job" in before and "position 1" in before and "a red fox in snow" in before
        assert NO_WORKER_YET in before

        # 3. A waiting job cancelled is refunded: /usage counts the same credits as before it.
        dropped = await imagine("a blue fox in snow")
        dropped_status = await dropped.wait_for_message(accepted, timeout=30)
        press = await fake_discord.press_button(dropped_status, user=world.member, label="Cancel")
        assert (await press.wait_for_response(timeout=10)).ephemeral
        await dropped.wait_for_message(lambda m: "Cancelled; credits refunded." in m.content, timeout=30)
        after = await usage()
        assert after.splitlines()[0] == before.splitlines()[0]  # "N of M credits used ..."
        assert "a blue fox" not in after and "a red fox in snow" in after

        # 4. A worker started now takes the job that waited, and its grid is posted.
        await start("worker", "worker", WORKER_ID="late-1")
        grid = await kept.wait_for_message(has_grid, timeout=240)
        assert NO_WORKER_YET not in grid.content
        assert NO_WORKER_YET not in await usage()

        # 5. Generation runs elsewhere, so the bot's process never loaded torch: not at start, not for
        #    admission, /usage, a cancel, or posting a grid and cutting its images.
        maps = Path(f"/proc/{processes[0].pid}/maps").read_text()
        assert "libtorch" not in maps and "libc10" not in maps
    except BaseException:
        for name, path in logs.items():
            if path.exists():
                print(f"--- {name} log ---\n{path.read_text(errors='replace')[-6000:]}")
        raise
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), WAIT_S)
            except TimeoutError:
                process.kill()
                await process.wait()


def test_workers_and_bots_retry_an_unreachable_server_on_jittered_schedules_of_their_own() -> None:
    """Full jitter: the n-th wait is random in [0, min(5, 0.1 * 2**n)] s, each process from its own numbers."""
    caps = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0]
    refused = ConnectionError("Connection refused")
    url = "redis://127.0.0.1:1/0"  # nothing listens; nothing is sent either: only the waits are drawn
    workers = [StreamWorker(url, rng=random.Random(seed)) for seed in (1, 2)] + [StreamWorker(url), StreamWorker(url)]
    try:
        outages = [worker.backoff("sending to the server") for worker in workers]
        outages += [StreamsTransport(url, rng=random.Random(seed)).backoff("reading the results") for seed in (1, 2)]
        schedules = [[outage.failed(refused) for _ in caps] for outage in outages]
    finally:
        for worker in workers:
            worker.close()
    for schedule in schedules:
        assert all(0.0 <= wait <= cap for wait, cap in zip(schedule, caps, strict=True)), schedule
    seeded, unseeded = schedules[:2], schedules[2:4]
    assert seeded[0] != seeded[1] and unseeded[0] != unseeded[1]  # two workers never retry in step
    assert schedules[4:] == seeded  # a bot's waits come from its own random numbers the same way

    outage = workers[0].backoff("reading the inbox")
    for _ in range(8):
        outage.failed(refused)
    outage.over()  # the server answered: the next outage starts from the shortest waits again
    assert [outage.failed(refused) <= cap for cap in caps[:3]] == [True] * 3


# -- settings and the command ---------------------------------------------------------------------


def test_redis_url_accepts_valkey_and_redis_urls_and_refuses_others_without_quoting_them() -> None:
    for url in ("redis://valkey:6379/0", "rediss://:secret@host:6380/1", "unix:///run/valkey.sock"):
        assert Settings.from_env({"REDIS_URL": url}, env_file=None).redis_url == url
    assert Settings.from_env({}, env_file=None).redis_url is None
    with pytest.raises(SettingsError, match="REDIS_URL is invalid") as refused:
        Settings.from_env({"REDIS_URL": "http://user:hunter22@host/"}, env_file=None)
    assert "hunter22" not in str(refused.value)
    assert "hunter22" not in repr(Settings.from_env({"REDIS_URL": "redis://:hunter22@h/0"}, env_file=None))
    assert redacted("redis://user:hunter22@host:6379/0") == "redis://user:***@host:6379/0"


async def test_a_bot_that_cannot_reach_the_server_says_so_in_a_sentence_without_the_password() -> None:
    transport = StreamsTransport("redis://:hunter22@127.0.0.1:1/0", connect_timeout_s=0.5)
    with pytest.raises(BrokerUnreachable, match="Cannot use the Valkey or Redis server at") as refused:
        await transport.start(Collected())
    assert "hunter22" not in str(refused.value)


def test_worker_id_is_checked() -> None:
    assert Settings.from_env({"WORKER_ID": "gpu-box.2"}, env_file=None).worker_id == "gpu-box.2"
    with pytest.raises(SettingsError, match="WORKER_ID"):
        Settings.from_env({"WORKER_ID": "a b"}, env_file=None)


def test_the_worker_command_without_redis_url_says_what_to_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker_main(Settings()) == 2
    assert "REDIS_URL is not set" in capsys.readouterr().err
