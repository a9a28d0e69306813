"""The seam between the service and the GPU workers: the client the service calls, and the messages workers speak.

The service admits and records jobs and calls a ``WorkerClient`` (``bot.workers.dispatch``'s
``Dispatcher``): it keeps the fair queue, forms batches and hands each to a worker that has
said it is ready. Workers run where a transport puts them: a thread of this process
(``inprocess``), child processes (``processes``, the default), or any host through Valkey or
Redis Streams (``streams``). Every transport carries the same five messages, versioned:

* ``Ready``: a worker is up and has free slots (sent again while idle: its heartbeat);
* ``Run``: a formed batch, each job with its attempt number and attempt token;
* ``ProgressReport``: step k of n of a job, with a small preview; it may be lost;
  during a batch it is also the worker's heartbeat, sent from the step callback, so a
  hung GPU stops it;
* ``Result``: a batch's finished jobs (images, grid, withheld images, timings, tokens),
  or the sentence it failed with;
* ``Cancel``: stop these jobs.

``encode``/``decode`` turn them into msgpack bytes and back: plain data only, never pickle,
so nothing a broker or a peer sends can run code here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, cast

from bot.images.metadata import EncodedImage
from bot.jobs.events import EventListener, JobOutput
from bot.jobs.recipe import Recipe
from models.types import ModelPreset


class _Msgpack(Protocol):
    """The two calls of msgpack (which ships no type information) this module makes."""

    UnpackException: type[Exception]

    def packb(self, o: Any, *, use_bin_type: bool) -> bytes: ...

    def unpackb(self, packed: bytes, *, raw: bool, strict_map_key: bool) -> Any: ...


msgpack = cast(_Msgpack, importlib.import_module("msgpack"))

#: Bumped whenever a message changes shape; a worker speaking another version is refused.
PROTOCOL_VERSION = 3


class ProtocolMismatch(Exception):
    """A message this bot cannot read: another protocol version, or not a message at all."""


@dataclass(frozen=True, slots=True, eq=False)
class WorkOrder:
    """One job as a worker sees it: what to make, for whom, and from which image."""

    job_id: int
    owner: int  # the fairness key: the user who is charged
    recipe: Recipe
    source: bytes | None = None  # the encoded image a variation or upscale starts from
    classify: bool = True  # classify the images and withhold (blur) what is flagged


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """Whether the client can take jobs now, and why not when it cannot."""

    running: bool
    queued: int
    workers: int = 0  # workers ready or busy now
    problem: str | None = None  # one sentence for the user when it cannot take jobs


class WorkerClient(Protocol):
    """What the service needs from whatever runs its jobs."""

    async def start(self) -> None: ...

    async def stop(self, *, timeout_s: float = 120.0) -> list[WorkOrder]:
        """Stop taking jobs, let running ones finish, and hand back the orders that never started."""
        ...

    def submit(self, order: WorkOrder, listener: EventListener, *, resumed: bool = False) -> int:
        """Queue ``order``; return its place (1 = next). Raises ``QueueFull``, except for a job
        admitted before a restart (``resumed``): the queue's bounds never strand one of those."""
        ...

    def check_room(self, owner: int) -> None:
        """Raise ``QueueFull`` now if ``owner`` could not submit, before anything is charged."""
        ...

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued job at once, or a running one at its next step. False if unknown or done."""
        ...

    def position(self, job_id: int) -> int | None:
        """0 while running, 1 when next, ``None`` when unknown."""
        ...

    def pending_jobs(self, owner: int) -> list[WorkOrder]: ...

    @property
    def queued_count(self) -> int: ...

    @property
    def running(self) -> bool: ...

    def health(self) -> WorkerHealth: ...

    async def preset(self, model: str) -> ModelPreset:
        """The model's defaults and limits; no model needs to be loaded in this process."""
        ...

    async def count_prompt_tokens(self, model: str, prompt: str) -> int: ...


# ---------------------------------------------------------------------- the five messages


@dataclass(frozen=True, slots=True)
class Ready:
    worker_id: str
    boot_id: str  # new each time the worker process starts: a changed one means its jobs were lost
    free_slots: int
    models: tuple[str, ...]  # loaded now
    max_batch_images: int
    free_vram_bytes: int | None = None
    received: int = 0  # ``Run`` messages received since boot: the bot counts its own in flight against it
    presets: tuple[ModelPreset, ...] = ()  # of the models it serves: what admission needs to know
    # Each model's tokenizer files, sent once per boot, so the bot counts tokens without the model.
    tokenizers: dict[str, dict[str, bytes]] = field(default_factory=dict)
    protocol: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True, eq=False)
class RunJob:
    order: WorkOrder
    attempt: int
    token: str


@dataclass(frozen=True, slots=True, eq=False)
class Run:
    batch_id: str
    jobs: tuple[RunJob, ...]
    nsfw_threshold: float
    preview_interval_s: float
    queued_at: dict[int, float] = field(default_factory=dict)  # job id -> seconds it waited before this batch


@dataclass(frozen=True, slots=True, eq=False)
class ProgressReport:
    worker_id: str
    boot_id: str
    batch_id: str
    job_id: int | None  # None: a heartbeat only (loading a model, say)
    step: int = 0
    total: int = 0
    preview: bytes | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Result:
    worker_id: str
    boot_id: str
    batch_id: str
    outputs: tuple[JobOutput, ...]
    error: str | None = None  # one sentence for the users when the whole batch failed
    cancelled: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Cancel:
    job_ids: tuple[int, ...]


Message = Ready | Run | ProgressReport | Result | Cancel
MessageSink = Callable[[Message], None]


# ---------------------------------------------------------------------- bytes on the wire


def _image(image: EncodedImage) -> dict[str, Any]:
    return {"data": image.data, "filename": image.filename, "content_type": image.content_type}


def _image_from(value: dict[str, Any]) -> EncodedImage:
    return EncodedImage(bytes(value["data"]), str(value["filename"]), str(value["content_type"]))


def _preset(preset: ModelPreset) -> dict[str, Any]:
    return {field.name: getattr(preset, field.name) for field in fields(preset)}


def _preset_from(value: dict[str, Any]) -> ModelPreset:
    factors = value["latent_rgb_factors"]
    bias = value["latent_rgb_bias"]
    return ModelPreset(
        model=str(value["model"]),
        family=str(value["family"]),
        width=int(value["width"]),
        height=int(value["height"]),
        steps=int(value["steps"]),
        guidance=float(value["guidance"]),
        scheduler=str(value["scheduler"]),
        max_prompt_tokens=int(value["max_prompt_tokens"]),
        latent_rgb_factors=None if factors is None else tuple(_triple(row) for row in factors),
        latent_rgb_bias=None if bias is None else _triple(bias),
    )


def _triple(values: list[float]) -> tuple[float, float, float]:
    red, green, blue = values
    return float(red), float(green), float(blue)


def _order(order: WorkOrder) -> dict[str, Any]:
    return {
        "job_id": order.job_id,
        "owner": order.owner,
        "recipe": order.recipe.to_fields(),
        "source": order.source,
        "classify": order.classify,
    }


def _order_from(value: dict[str, Any]) -> WorkOrder:
    return WorkOrder(
        job_id=int(value["job_id"]),
        owner=int(value["owner"]),
        recipe=Recipe.from_fields(value["recipe"]),
        source=value["source"],
        classify=bool(value["classify"]),
    )


def _output(output: JobOutput) -> dict[str, Any]:
    return {
        "job_id": output.job_id,
        "attempt": output.attempt,
        "token": output.token,
        "grid": _image(output.grid),
        "withheld": list(output.withheld),
        "seeds": list(output.seeds),
        "timings": dict(output.timings),
    }


def _output_from(value: dict[str, Any]) -> JobOutput:
    return JobOutput(
        job_id=int(value["job_id"]),
        attempt=int(value["attempt"]),
        token=str(value["token"]),
        grid=_image_from(value["grid"]),
        withheld=tuple(int(index) for index in value["withheld"]),
        seeds=tuple(int(seed) for seed in value["seeds"]),
        timings={str(key): float(seconds) for key, seconds in value["timings"].items()},
    )


def to_wire(message: Message) -> dict[str, Any]:
    """A message as a dict of plain values, tagged with its type and the protocol version."""
    body: dict[str, Any]
    match message:
        case Ready():
            body = {
                "worker_id": message.worker_id,
                "boot_id": message.boot_id,
                "free_slots": message.free_slots,
                "models": list(message.models),
                "max_batch_images": message.max_batch_images,
                "free_vram_bytes": message.free_vram_bytes,
                "received": message.received,
                "presets": [_preset(preset) for preset in message.presets],
                "tokenizers": message.tokenizers,
            }
        case Run():
            body = {
                "batch_id": message.batch_id,
                "jobs": [
                    {"order": _order(job.order), "attempt": job.attempt, "token": job.token} for job in message.jobs
                ],
                "nsfw_threshold": message.nsfw_threshold,
                "preview_interval_s": message.preview_interval_s,
                "queued_at": [[job_id, seconds] for job_id, seconds in message.queued_at.items()],
            }
        case ProgressReport():
            body = {
                "worker_id": message.worker_id,
                "boot_id": message.boot_id,
                "batch_id": message.batch_id,
                "job_id": message.job_id,
                "step": message.step,
                "total": message.total,
                "preview": message.preview,
            }
        case Result():
            body = {
                "worker_id": message.worker_id,
                "boot_id": message.boot_id,
                "batch_id": message.batch_id,
                "outputs": [_output(output) for output in message.outputs],
                "error": message.error,
                "cancelled": list(message.cancelled),
            }
        case Cancel():
            body = {"job_ids": list(message.job_ids)}
    return {"type": type(message).__name__, "protocol": PROTOCOL_VERSION, **body}


def from_wire(value: dict[str, Any]) -> Message:
    if not isinstance(value, dict) or value.get("protocol") != PROTOCOL_VERSION:
        found = value.get("protocol") if isinstance(value, dict) else None
        raise ProtocolMismatch(f"a peer speaks worker protocol {found!r}; this bot speaks {PROTOCOL_VERSION}")
    kind = value.get("type")
    if kind == "Ready":
        return Ready(
            worker_id=str(value["worker_id"]),
            boot_id=str(value["boot_id"]),
            free_slots=int(value["free_slots"]),
            models=tuple(str(model) for model in value["models"]),
            max_batch_images=int(value["max_batch_images"]),
            free_vram_bytes=value["free_vram_bytes"],
            received=int(value["received"]),
            presets=tuple(_preset_from(preset) for preset in value["presets"]),
            tokenizers={
                str(model): {str(name): bytes(data) for name, data in files.items()}
                for model, files in value["tokenizers"].items()
            },
        )
    if kind == "Run":
        return Run(
            batch_id=str(value["batch_id"]),
            jobs=tuple(
                RunJob(_order_from(job["order"]), int(job["attempt"]), str(job["token"])) for job in value["jobs"]
            ),
            nsfw_threshold=float(value["nsfw_threshold"]),
            preview_interval_s=float(value["preview_interval_s"]),
            queued_at={int(job_id): float(seconds) for job_id, seconds in value["queued_at"]},
        )
    if kind == "ProgressReport":
        return ProgressReport(
            worker_id=str(value["worker_id"]),
            boot_id=str(value["boot_id"]),
            batch_id=str(value["batch_id"]),
            job_id=None if value["job_id"] is None else int(value["job_id"]),
            step=int(value["step"]),
            total=int(value["total"]),
            preview=value["preview"],
        )
    if kind == "Result":
        return Result(
            worker_id=str(value["worker_id"]),
            boot_id=str(value["boot_id"]),
            batch_id=str(value["batch_id"]),
            outputs=tuple(_output_from(output) for output in value["outputs"]),
            error=value["error"],
            cancelled=tuple(int(job_id) for job_id in value["cancelled"]),
        )
    if kind == "Cancel":
        return Cancel(job_ids=tuple(int(job_id) for job_id in value["job_ids"]))
    raise ProtocolMismatch(f"unknown worker message type {kind!r}")


def encode(message: Message) -> bytes:
    return msgpack.packb(to_wire(message), use_bin_type=True)


def decode(data: bytes) -> Message:
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as error:
        raise ProtocolMismatch(f"not a worker message ({error})") from None
    return from_wire(value)
