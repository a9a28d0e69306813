"""The HTTP server of the metrics port: ``GET /metrics`` (Prometheus' text format) and ``GET /healthz``.

aiohttp's, on the bot's event loop, bound to METRICS_HOST (127.0.0.1 unless set): the metrics hold
model names and workers' names, so they are for the machine's own scraper unless the owner opens them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.observability.health import HealthCheck
from bot.observability.metrics import JobMetrics

if TYPE_CHECKING:
    from bot.jobs.recipe import Recipe
    from bot.jobs.service import GenerationService
    from bot.runtime.loop_monitor import LagFigures
    from bot.settings import Settings
    from bot.workers.protocol import WorkerClient
    from db.store import Store

log = logging.getLogger(__name__)


class PortUnavailable(Exception):
    """A port of the bot's (METRICS_PORT, WEB_PORT) cannot be listened on; the message says which and what to do."""


async def listen(runner: web.AppRunner, host: str, port: int, *, serving: str, setting: str) -> None:
    """Serve ``runner`` on ``host:port``; ``PortUnavailable`` (the runner cleaned up) when the OS refuses it."""
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        await runner.cleanup()
        raise PortUnavailable(
            f"cannot serve {serving} on {host}:{port} ({why_not_listening(error)}); "
            f"choose another {setting}, or leave it unset to turn {serving} off."
        ) from None


def metrics_server(
    *,
    settings: Settings,
    port: int,
    service: GenerationService,
    store: Store[Recipe],
    worker: WorkerClient,
    gateway_connected: Callable[[], bool],
    loop_lag: Callable[[], LagFigures] | None = None,
) -> MetricsServer:
    """The metrics (observing every job of ``service``) and the health check, served on METRICS_HOST:``port``."""
    metrics = JobMetrics(worker=worker, loop_lag=loop_lag, models=settings.models)
    service.add_observer(metrics.observe)
    health = HealthCheck(gateway_connected=gateway_connected, store_answers=store.schema_version, worker=worker)
    return MetricsServer(metrics, health, host=settings.metrics_host, port=port)


class MetricsServer:
    """Serves ``metrics`` and ``health`` on ``host:port`` from ``start`` until ``stop``."""

    def __init__(self, metrics: JobMetrics, health: HealthCheck, *, host: str, port: int) -> None:
        self.metrics = metrics
        self._health = health
        self._host = host
        self._port = port
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await listen(self._runner, self._host, self._port, serving="metrics", setting="METRICS_PORT")
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self._host, self._port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        verdict = await self._health.verdict()
        if verdict.healthy:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="\n".join(verdict.problems) + "\n")


def why_not_listening(error: OSError) -> str:
    """Why a port could not be taken, as the OS says it ("Address already in use")."""
    return os.strerror(error.errno) if error.errno else str(error)
