"""The bot's Prometheus metrics, every name ``latentcord_``, on a registry of the bot's own (no global one).

Two sources, and no call spread through the code:

* ``JobMetrics.observe`` is a job observer (``GenerationService.add_observer``). Admission's verdicts
  (``Admitted``, ``Refused`` with its reason), each job's end (``Completed``, ``Failed``, ``Cancelled``)
  and each delivery that failed (``DeliveryFailed``) move the counters and histograms. A finished job's
  timings come from its worker's result (``JobOutput.timings``: queued_s, generation_s, batch_images),
  so a worker in another process or on another host is measured through the bot, never scraped itself.
* At each scrape, ``WorkerClient.figures`` (what the workers' latest heartbeats said: models, free GPU
  memory, busy; how many came and were lost; the queue by model) and the event loop's lag are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from bot.jobs.outcomes import (
    Admitted,
    Cancelled,
    Completed,
    DeliveryFailed,
    Failed,
    ObservedEvent,
    RefusalReason,
    Refused,
)

if TYPE_CHECKING:
    from bot.runtime.loop_monitor import LagFigures
    from bot.workers.protocol import WorkerClient

PREFIX = "latentcord"

#: Seconds a job waits in the queue: from at once to half an hour behind a busy GPU.
WAIT_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
#: Seconds a batch runs on the GPU: a tiny model on a CPU to a large one at 4096 px.
RUN_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
#: Images in the batch a job ran in (BATCH_MAX_IMAGES is at most 64).
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


class JobMetrics:
    """The metrics registry and the job observer that feeds it; ``registry`` is what ``/metrics`` serves."""

    def __init__(
        self,
        *,
        worker: WorkerClient,
        loop_lag: Callable[[], LagFigures] | None = None,
        models: Sequence[str] = (),
    ) -> None:
        self.registry = CollectorRegistry()
        self._costs: dict[int, int] = {}  # admitted jobs' charges until they end: what a failure refunds

        def counter(name: str, what: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", what, labels, registry=self.registry)

        def histogram(name: str, what: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", what, ["model"], buckets=buckets, registry=self.registry)

        self.admitted = counter("jobs_admitted", "Jobs admitted: checked, charged, recorded and queued.", ["model"])
        self.refused = counter("jobs_refused", "Requests admission refused, by reason; nothing charged.", ["reason"])
        self.finished = counter("jobs_finished", "Jobs finished with their images (or text) recorded.", ["model"])
        self.failed = counter("jobs_failed", "Jobs that failed after admission (refunded).")
        self.cancelled = counter("jobs_cancelled", "Jobs cancelled by a member or a moderator (refunded).")
        self.refunded = counter("jobs_refunded", "Jobs given credits back: failed, cancelled, withheld, abandoned.")
        self.credits_refunded = counter("credits_refunded", "Credits given back, where the charge was seen.")
        self.images = counter("images_generated", "Images made by the workers; rate() is images per second.", ["model"])
        self.gpu_seconds = counter("gpu_seconds", "Seconds of GPU time, each batch's shared among its jobs.", ["model"])
        self.delivery_retries = counter("delivery_retries", "Tries to post a result that failed and were retried.")
        self.delivery_abandoned = counter("delivery_abandoned", "Results given up (and refunded) after retrying.")
        self.wait_seconds = histogram("job_wait_seconds", "Seconds a job waited in the queue.", WAIT_BUCKETS)
        self.run_seconds = histogram("job_run_seconds", "Seconds the batch a job ran in took on the GPU.", RUN_BUCKETS)
        self.batch_images = histogram("batch_images", "Images in the batch each finished job ran in.", BATCH_BUCKETS)
        for reason in RefusalReason:  # every reason shows from the start: a rate over a series that appears later
            self.refused.labels(reason.value)
        for model in models:
            self.admitted.labels(model)
            self.finished.labels(model)
        self.registry.register(_WorkerFigures(worker, loop_lag))

    def observe(self, event: ObservedEvent) -> None:
        """The job observer: one event of any job, or one of admission's verdicts."""
        match event:
            case Admitted(job_id=job_id, model=model, cost=cost):
                self.admitted.labels(model).inc()
                self._costs[job_id] = cost
            case Refused(reason=reason):
                self.refused.labels(reason.value).inc()
            case Completed(job_id=job_id, result=result):
                self._costs.pop(job_id, None)
                self._finished(result.job.recipe.model, result.job.recipe.count, result.job.timings)
                if result.refunded:
                    self._refund(result.refunded)
            case Failed(job_id=job_id):
                self.failed.inc()
                self._refund(self._costs.pop(job_id, None))
            case Cancelled(job_id=job_id):
                self.cancelled.inc()
                self._refund(self._costs.pop(job_id, None))
            case DeliveryFailed(verdict=verdict):
                if verdict.retry_in_s is not None:
                    self.delivery_retries.inc()
                else:
                    self.delivery_abandoned.inc()
                    if verdict.refunded:
                        self._refund(verdict.refunded)
            case _:  # queued, started, progress, delivered: nothing counted
                pass

    def _finished(self, model: str, images: int, timings: Mapping[str, float]) -> None:
        self.finished.labels(model).inc()
        self.images.labels(model).inc(images)
        if (queued := timings.get("queued_s")) is not None:
            self.wait_seconds.labels(model).observe(queued)
        if (generation := timings.get("generation_s")) is not None:
            self.run_seconds.labels(model).observe(generation)
            batch = timings.get("batch_images") or images
            self.batch_images.labels(model).observe(batch)
            self.gpu_seconds.labels(model).inc(generation * images / max(batch, images, 1))

    def _refund(self, credits: int | None) -> None:
        """A job got credits back (``None``: how many is not known here, for a job resumed after a restart)."""
        self.refunded.inc()
        if credits:
            self.credits_refunded.inc(credits)


class _WorkerFigures(Collector):
    """What is read at scrape time: the workers' latest reports, the queue by model, the event loop's lag."""

    def __init__(self, worker: WorkerClient, loop_lag: Callable[[], LagFigures] | None) -> None:
        self._worker = worker
        self._loop_lag = loop_lag

    def collect(self) -> Iterable[Metric]:
        figures = self._worker.figures()
        queue = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Jobs waiting for a worker, by model.", labels=["model"])
        for model, waiting in sorted(figures.queued.items()):
            queue.add_metric([model], waiting)
        yield queue
        workers = GaugeMetricFamily(f"{PREFIX}_workers", "Workers connected now, idle or busy.", labels=["state"])
        busy = sum(1 for status in figures.workers if status.busy)
        workers.add_metric(["idle"], len(figures.workers) - busy)
        workers.add_metric(["busy"], busy)
        yield workers
        yield CounterMetricFamily(
            f"{PREFIX}_workers_connected",
            "Workers that announced themselves (a restarted one again).",
            figures.connected,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_workers_lost", "Workers declared lost (no heartbeat, restarted).", figures.lost
        )
        free = GaugeMetricFamily(
            f"{PREFIX}_worker_gpu_free_bytes", "Free GPU memory each worker last reported.", labels=["worker"]
        )
        loaded = GaugeMetricFamily(f"{PREFIX}_worker_models_loaded", "Models each worker holds.", labels=["worker"])
        for status in figures.workers:
            loaded.add_metric([status.worker_id], len(status.models))
            if status.free_vram_bytes is not None:
                free.add_metric([status.worker_id], status.free_vram_bytes)
        yield free
        yield loaded
        loads = SummaryMetricFamily(
            f"{PREFIX}_model_load_seconds", "Seconds the workers took to load each model.", labels=["model"]
        )
        for model, (count, seconds) in sorted(figures.loads.items()):
            loads.add_metric([model], count_value=count, sum_value=seconds)
        yield loads
        if self._loop_lag is not None:
            lag = self._loop_lag()
            gauge = GaugeMetricFamily(
                f"{PREFIX}_event_loop_lag_seconds",
                "How late the event loop ran its timer over the recent samples (p50, p99, max).",
                labels=["stat"],
            )
            for stat, seconds in (("p50", lag.p50_s), ("p99", lag.p99_s), ("max", lag.max_s)):
                gauge.add_metric([stat], seconds)
            yield gauge
