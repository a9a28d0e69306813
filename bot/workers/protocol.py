"""The seam between the service and whatever runs the GPU: a ``WorkerClient`` and the messages it carries.

The service admits and records jobs; a worker client queues them fairly, runs them in
batches and reports each job's events. ``bot.workers.local`` is today's client (one GPU
thread in this process); another transport (worker processes, other hosts) is another
class with the same methods, and the service does not change.

What crosses the seam is plain data, so that it can cross a process or a network:

* a ``WorkOrder``: a job's id, its owner (the fairness key), its ``Recipe`` and the image
  it starts from as encoded bytes;
* the job events of ``bot.jobs.events``: finished images as ``RawImage`` (RGB bytes), the
  progress preview as PNG bytes.

``to_wire``/``from_wire`` turn both into dicts of plain values (str, int, float, bytes,
None, lists and dicts of those) and back. The listener given with each order is not
sent anywhere: the client keeps it and calls it, on the event loop, with that job's events
in order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from bot.jobs.events import Cancelled, EventListener, Failed, Finished, JobEvent, Progress, Queued, RawImage, Started
from bot.jobs.recipe import Recipe

if TYPE_CHECKING:
    from models.types import ModelPreset

#: Bumped whenever a message changes shape, so mismatched ends refuse each other with a sentence.
PROTOCOL_VERSION = 1


@dataclass(frozen=True, slots=True, eq=False)
class WorkOrder:
    """One job as a worker sees it: what to make, for whom, and from which image."""

    job_id: int
    owner: int  # the fairness key: the user who is charged
    recipe: Recipe
    source: bytes | None = None  # the encoded image a variation or upscale starts from

    def to_wire(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "owner": self.owner, "recipe": self.recipe.to_fields(), "source": self.source}

    @classmethod
    def from_wire(cls, message: dict[str, Any]) -> WorkOrder:
        return cls(
            job_id=int(message["job_id"]),
            owner=int(message["owner"]),
            recipe=Recipe.from_fields(message["recipe"]),
            source=message["source"],
        )


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """Whether a client can take jobs now, and why not when it cannot."""

    running: bool
    queued: int
    problem: str | None = None  # one sentence for the user when it cannot take jobs


class WorkerClient(Protocol):
    """What the service needs from whatever runs its jobs."""

    async def start(self) -> None:
        """Start serving; calling it again while it runs does nothing."""
        ...

    async def stop(self, *, timeout_s: float = 120.0) -> list[WorkOrder]:
        """Stop taking jobs, let running ones finish, and hand back the orders that never started."""
        ...

    def submit(self, order: WorkOrder, listener: EventListener) -> int:
        """Queue ``order``; return its place (1 = next). Raises ``QueueFull``."""
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

    def pending_jobs(self, owner: int) -> list[WorkOrder]:
        """An owner's orders still to finish, running ones first, in the order they will run."""
        ...

    @property
    def queued_count(self) -> int: ...

    @property
    def running(self) -> bool: ...

    def health(self) -> WorkerHealth: ...

    async def preset(self, model: str) -> ModelPreset:
        """The model's defaults and limits, loading it where the jobs run if it is not loaded yet."""
        ...

    async def count_prompt_tokens(self, model: str, prompt: str) -> int: ...


# ---------------------------------------------------------------------- events as plain data

_EVENTS: dict[str, type[Queued | Started | Progress | Finished | Failed | Cancelled]] = {
    event.__name__: event for event in (Queued, Started, Progress, Finished, Failed, Cancelled)
}


def event_to_wire(event: JobEvent) -> dict[str, Any]:
    message: dict[str, Any] = {"type": type(event).__name__, "version": PROTOCOL_VERSION}
    for field in fields(event):
        value = getattr(event, field.name)
        if field.name == "images":
            value = [image.to_wire() for image in value]
        elif isinstance(value, tuple):
            value = list(value)
        elif field.name == "timings":
            value = dict(value)
        message[field.name] = value
    return message


def event_from_wire(message: dict[str, Any]) -> JobEvent:
    if message.get("version") != PROTOCOL_VERSION:
        raise ValueError(f"a worker speaks protocol {message.get('version')!r}; this bot speaks {PROTOCOL_VERSION}")
    kind = _EVENTS[message["type"]]
    values = {field.name: message[field.name] for field in fields(kind)}
    if kind is Finished:
        values["images"] = tuple(RawImage.from_wire(image) for image in values["images"])
        values["seeds"] = tuple(values["seeds"])
    return kind(**values)
