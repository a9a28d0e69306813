"""Prometheus metrics and /healthz (METRICS_PORT) through the real bot and the loopback Discord.

Each metric is scraped before and after the jobs it counts, and must have moved by exactly what happened:
jobs admitted, refused (by reason), finished, cancelled and refunded, their wait and run times, the images
made and the GPU seconds, delivery retries and abandons, the workers and the queue. /healthz answers 200
while the gateway is connected with a worker, and 503 once the gateway drops or no worker is left.

The fixtures (``settings``) and helpers come from ``tests/discord_bot_helpers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.settings import Settings
from models.engine import DiffusionEngine
from models.tiny import TINY_MODEL_ID
from tests import discord_bot_helpers
from tests.discord_bot_helpers import Clock, finished_grid, imagine, running_bot
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup
from tests.helpers import has_grid

# The shared fixtures, re-exported so pytest finds them here.
settings = discord_bot_helpers.settings

#: A series: its sample's name and its labels, sorted.
Series = tuple[str, tuple[tuple[str, str], ...]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def metered(settings: Settings) -> Settings:
    return replace(settings, metrics_port=free_port())


async def get(settings: Settings, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{settings.metrics_port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(30)) as response:
        return response.status, await response.text()


async def scrape(settings: Settings) -> dict[Series, float]:
    status, text = await get(settings, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def moved(before: dict[Series, float], after: dict[Series, float], name: str, **labels: str) -> float:
    """How far one series moved between two scrapes (a series not there yet counts from 0)."""
    series = (name, tuple(sorted(labels.items())))
    assert series in after, f"{series} is not among {sorted(key for key in after if key[0].startswith(name))}"
    return after[series] - before.get(series, 0.0)


async def until_health(settings: Settings, status: int, timeout: float = 120) -> str:
    """Poll /healthz until it answers ``status``; its body. Generous: CI is a busy 2-core machine."""
    answers: list[tuple[int, str]] = []
    for _ in range(int(timeout / 0.1)):
        answers.append(await get(settings, "/healthz"))
        if answers[-1][0] == status:
            return answers[-1][1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"/healthz never answered {status}; last: {answers[-1:]}")


@contextlib.contextmanager
def gateway_refusing(fake: FakeDiscord) -> Iterator[Any]:
    """The fake's gateway, closing every session that tries to start or resume until the block ends."""
    gateway = fake.gateway
    handle_op = gateway._handle_op

    async def refuse(connection, session, op, data):  # type: ignore[no-untyped-def]
        await connection.close(4000, b"the test keeps the gateway down")
        return None

    gateway._handle_op = refuse  # type: ignore[method-assign]
    try:
        yield gateway
    finally:
        gateway._handle_op = handle_op  # type: ignore[method-assign]


async def test_each_job_metric_moves_as_the_jobs_it_counts_happen(
    fake_discord: FakeDiscord, world: GuildSetup, metered: Settings, tiny_engine: DiffusionEngine
) -> None:
    model = TINY_MODEL_ID
    async with running_bot(fake_discord, metered, tiny_engine) as (_bot, core):
        start = await scrape(metered)
        for reason in ("prompt", "quota", "queue_full", "storage", "model", "invalid"):
            assert ("latentcord_jobs_refused_total", (("reason", reason),)) in start  # at 0 from the start
        assert start[("latentcord_workers", (("state", "idle"),))] == 1
        assert start[("latentcord_workers_connected_total", ())] == 1
        assert start[("latentcord_workers_lost_total", ())] == 0
        assert {"p50", "p99", "max"} <= {
            dict(labels)["stat"] for name, labels in start if name == "latentcord_event_loop_lag_seconds"
        }

        # 1. A job runs to its grid: admitted, finished, its four images, its wait and run observed.
        done = await imagine(fake_discord, world, seed=3)
        await finished_grid(done)
        # 2. A prompt the filter refuses: refused for the prompt, nothing admitted.
        refused = await imagine(fake_discord, world, prompt="a nud3 woman on a beach")
        assert (await refused.wait_for_response(timeout=30)).ephemeral
        # An option that does not parse, refused before admission: counted once, as invalid.
        unparsed = await imagine(fake_discord, world, prompt="a fox --ar 4:3")
        assert (await unparsed.wait_for_response(timeout=30)).ephemeral
        after_two = await scrape(metered)
        # 3. One job runs while another waits behind it, and the waiting one is cancelled.
        running = await imagine(fake_discord, world, steps=100, user=world.moderator)
        for _ in range(1200):  # until the first job runs, so the next one waits behind it: about two minutes
            if any(worker.busy for worker in core.worker.figures().workers):
                break
            await asyncio.sleep(0.1)
        waiting = await imagine(fake_discord, world)
        status = await waiting.wait_for_original(lambda message: bool(message.buttons), timeout=30)
        queued = await scrape(metered)
        cancelled_id = int(status.button(label="Cancel")["custom_id"].split(":")[2])
        press = await fake_discord.press_button(status, user=world.member, label="Cancel")
        assert "Cancelled" in (await press.wait_for_response(timeout=30)).content
        await finished_grid(running)
        cancelled_job = await core.store.get_job(cancelled_id)
        assert cancelled_job is not None
        end = await scrape(metered)

    assert moved(start, after_two, "latentcord_jobs_admitted_total", model=model) == 1
    assert moved(start, after_two, "latentcord_jobs_refused_total", reason="prompt") == 1
    assert moved(start, after_two, "latentcord_jobs_refused_total", reason="invalid") == 1
    assert moved(start, after_two, "latentcord_jobs_finished_total", model=model) == 1
    assert moved(start, after_two, "latentcord_images_generated_total", model=model) == 4
    assert moved(start, after_two, "latentcord_job_wait_seconds_count", model=model) == 1
    assert moved(start, after_two, "latentcord_job_run_seconds_count", model=model) == 1
    assert moved(start, after_two, "latentcord_job_run_seconds_sum", model=model) > 0
    assert moved(start, after_two, "latentcord_batch_images_count", model=model) == 1
    assert moved(start, after_two, "latentcord_batch_images_sum", model=model) == 4  # it ran alone
    assert moved(start, after_two, "latentcord_gpu_seconds_total", model=model) == pytest.approx(
        moved(start, after_two, "latentcord_job_run_seconds_sum", model=model)
    )
    assert queued[("latentcord_queue_depth", (("model", model),))] == 1  # the one waiting
    assert queued[("latentcord_workers", (("state", "busy"),))] == 1

    assert moved(start, end, "latentcord_jobs_admitted_total", model=model) == 3
    assert moved(start, end, "latentcord_jobs_finished_total", model=model) == 2
    assert moved(start, end, "latentcord_jobs_cancelled_total") == 1
    assert moved(start, end, "latentcord_jobs_failed_total") == 0
    assert moved(start, end, "latentcord_jobs_refunded_total") == 1
    assert moved(start, end, "latentcord_credits_refunded_total") == cancelled_job.cost > 0
    assert moved(start, end, "latentcord_images_generated_total", model=model) == 8
    assert moved(start, end, "latentcord_job_wait_seconds_count", model=model) == 2
    for reason in ("quota", "queue_full", "storage", "model"):
        assert moved(start, end, "latentcord_jobs_refused_total", reason=reason) == 0
    assert moved(start, end, "latentcord_jobs_refused_total", reason="invalid") == 1
    assert moved(start, end, "latentcord_delivery_retries_total") == 0
    assert moved(start, end, "latentcord_workers_lost_total") == 0
    assert ("latentcord_queue_depth", (("model", model),)) not in end  # nothing waits any more


async def test_delivery_retries_and_abandons_are_counted(
    fake_discord: FakeDiscord, world: GuildSetup, metered: Settings, tiny_engine: DiffusionEngine
) -> None:
    clock = Clock()
    clock.offset = 15 * 60  # past the interaction token's life: results go to the channel, with the bot token
    patient = replace(metered, delivery_first_retry_s=0.2, delivery_give_up_s=5.0)
    posts = rf"^/channels/{world.text_channel.id}/messages$"
    async with running_bot(fake_discord, patient, tiny_engine, clock=clock) as (_bot, core):
        start = await scrape(patient)
        # 1. Discord refuses the result twice, then takes it: two retries.
        fault = fake_discord.inject_fault(posts, method="POST", status=503, message="Service Unavailable", times=2)
        first = await imagine(fake_discord, world, seed=5, count=1, steps=2)
        await first.wait_for_response(timeout=30)
        grid = await fake_discord.wait_for_message(world.text_channel, has_grid, timeout=180)
        assert fault.remaining == 0
        first_id = int(grid.button(label="U1")["custom_id"].split(":")[2])
        retried = await scrape(patient)
        # 2. Discord never takes the next: retried until DELIVERY_GIVE_UP_S, then abandoned and refunded.
        fake_discord.inject_fault(posts, method="POST", status=503, message="Service Unavailable", times=10_000)
        second = await imagine(fake_discord, world, seed=6, count=1, steps=2)
        await second.wait_for_response(timeout=30)
        dm = fake_discord.dm_channel(world.member)
        await fake_discord.wait_for_message(dm, lambda message: "refunded" in message.content, timeout=180)
        end = await scrape(patient)
        abandoned = await core.store.get_job(first_id + 1)

    assert moved(start, retried, "latentcord_delivery_retries_total") == 2
    assert moved(start, retried, "latentcord_delivery_abandoned_total") == 0
    assert abandoned is not None and abandoned.delivery == "abandoned"
    # Every failed try of the abandoned job but its last was a retry.
    assert moved(retried, end, "latentcord_delivery_retries_total") == abandoned.delivery_attempts - 1
    assert moved(retried, end, "latentcord_delivery_abandoned_total") == 1
    assert moved(retried, end, "latentcord_jobs_refunded_total") == 1
    assert moved(retried, end, "latentcord_credits_refunded_total") == abandoned.cost == 1


async def test_healthz_is_200_while_connected_with_a_worker_and_503_when_either_goes(
    fake_discord: FakeDiscord, world: GuildSetup, metered: Settings, tiny_engine: DiffusionEngine
) -> None:
    async with running_bot(fake_discord, metered, tiny_engine) as (bot, core):
        assert await until_health(metered, 200) == "ok\n"

        # 1. The gateway drops, and the fake refuses every new session for a while: 503 until it is back.
        with gateway_refusing(fake_discord) as gateway:
            await gateway.close_all(code=4000)
            body = await until_health(metered, 503)
            assert "The Discord gateway is not connected." in body and "worker" not in body
        await until_health(metered, 200, timeout=300)  # discord.py reconnects by its own backoff

        # 2. The workers stop: no worker is ready or starting.
        await core.worker.stop()
        body = await until_health(metered, 503)
        assert "gateway" not in body


async def test_metrics_are_off_without_metrics_port(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    assert settings.metrics_port is None
    async with running_bot(fake_discord, settings, tiny_engine) as (bot, _core):
        assert bot.metrics is None


def test_metrics_port_and_host_are_read_and_checked() -> None:
    from bot.settings import SettingsError

    read = Settings.from_env({"METRICS_PORT": "9464"}, env_file=None)
    assert (read.metrics_port, read.metrics_host) == (9464, "127.0.0.1")
    assert Settings.from_env({"METRICS_HOST": "0.0.0.0"}, env_file=None).metrics_host == "0.0.0.0"
    assert Settings.from_env({}, env_file=None).metrics_port is None
    with pytest.raises(SettingsError, match="METRICS_PORT='70000' is invalid: it accepts a port from 1 to 65535"):
        Settings.from_env({"METRICS_PORT": "70000"}, env_file=None)


async def test_the_grafana_dashboard_reads_only_metrics_the_bot_serves(
    fake_discord: FakeDiscord, world: GuildSetup, metered: Settings, tiny_engine: DiffusionEngine
) -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json").read_text())
    read = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"latentcord_[a-z_]+", target["expr"])
    }
    async with running_bot(fake_discord, metered, tiny_engine):
        _status, text = await get(metered, "/metrics")
    served = {family.name for family in text_string_to_metric_families(text)}
    assert read and read <= served, read - served
    assert all(name.startswith("latentcord_") for name in served)


async def test_a_worker_s_model_load_reaches_the_metrics_through_its_heartbeat(
    fake_discord: FakeDiscord, world: GuildSetup, metered: Settings, model_cache_dir
) -> None:
    """A worker that loads its model says so in its next Ready; the bot serves it, no scrape of the worker."""
    from models.engine import EngineConfig

    fresh = DiffusionEngine(EngineConfig(device="cpu", cache_dir=model_cache_dir))  # nothing loaded yet
    assert fresh.free_memory_bytes() is None  # a CPU worker reports no GPU memory
    async with running_bot(fake_discord, metered, fresh):
        done = await imagine(fake_discord, world, count=1, steps=2)  # admission has the worker load the model
        await finished_grid(done)
        for _ in range(600):  # the next heartbeat carries the load: bounded, about a minute
            served = await scrape(metered)
            if ("latentcord_model_load_seconds_count", (("model", TINY_MODEL_ID),)) in served:
                break
            await asyncio.sleep(0.1)
    assert served[("latentcord_model_load_seconds_count", (("model", TINY_MODEL_ID),))] == 1
    assert served[("latentcord_model_load_seconds_sum", (("model", TINY_MODEL_ID),))] > 0
    assert not [name for name, _ in served if name == "latentcord_worker_gpu_free_bytes"]


async def test_healthz_of_a_sharded_bot_is_503_while_one_shard_is_down(
    fake_discord: FakeDiscord, metered: Settings, tiny_engine: DiffusionEngine
) -> None:
    from bot.runtime.core import open_core
    from bot.runtime.launcher import build_bot
    from tests.fakediscord.fixtures import running_client
    from tests.helpers import NoNsfw

    sharded = replace(metered, shard_count=2)
    async with open_core(sharded, engine=tiny_engine, classifier=NoNsfw()) as core:
        bot = await build_bot(sharded, "fake-bot-token", core)
        async with running_client(bot, fake_discord, token="fake-bot-token", ready_timeout=120):
            await until_health(sharded, 200)
            with gateway_refusing(fake_discord) as gateway:
                dropped = gateway.sharded()[1].connection
                assert dropped is not None
                await dropped.close(code=4000)
                assert "The Discord gateway is not connected." in await until_health(sharded, 503)
            await until_health(sharded, 200, timeout=300)
