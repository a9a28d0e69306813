"""The fair queue: round-robin across owners, each owner's jobs in the order they came.

It holds entries of any type that says whose it is, how many images it makes, and what
must be equal for two jobs to share a batch. ``take_batch`` forms the next batch: the next
entry in fair order, plus compatible heads of other owners' queues. Only heads are taken,
so no owner's job ever starts before an earlier one of theirs.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator
from typing import Generic, Protocol, TypeVar

from bot.errors import QueueFull


class Queueable(Protocol):
    @property
    def job_id(self) -> int: ...

    @property
    def owner(self) -> int: ...

    @property
    def images(self) -> int: ...

    @property
    def batch_key(self) -> Hashable: ...


E = TypeVar("E", bound=Queueable)


class FairQueue(Generic[E]):
    """Round-robin across owners; each owner's jobs in submission order.

    Not thread-safe: used only from the event loop.
    """

    def __init__(self, *, max_per_owner: int, max_total: int) -> None:
        self._max_per_owner = max_per_owner
        self._max_total = max_total
        # Owners in the order they are next served; the first is served next.
        self._owners: OrderedDict[int, deque[E]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def check_room(self, owner: int) -> None:
        if self._size >= self._max_total:
            raise QueueFull(f"The queue is full ({self._max_total} jobs); try again in a few minutes.")
        if len(self._owners.get(owner, ())) >= self._max_per_owner:
            raise QueueFull(
                f"You already have {self._max_per_owner} jobs waiting; wait for one to finish before adding more."
            )

    def push(self, entry: E, *, bounded: bool = True) -> None:
        """Queue ``entry`` behind its owner's other jobs; ``bounded=False`` for a job admitted before
        (requeued after a restart), which must not be refused now."""
        if bounded:
            self.check_room(entry.owner)
        self._owners.setdefault(entry.owner, deque()).append(entry)
        self._size += 1

    def put_back(self, entry: E) -> None:
        """Return a job that was already served (its worker was lost) to its owner's queue, in job order.

        A member's jobs wait in the order they were admitted, which is their ids' order, so the job
        goes before every later job of its owner, whatever else was put back before it. It goes past
        the bounds: it was admitted once and must not be refused now.
        """
        entries = self._owners.get(entry.owner)
        if entries is None:
            self._owners[entry.owner] = deque([entry])
            self._owners.move_to_end(entry.owner, last=False)  # its owner was served already: next again
        else:
            index = next((i for i, waiting in enumerate(entries) if waiting.job_id > entry.job_id), len(entries))
            entries.insert(index, entry)
        self._size += 1

    def put_first(self, entry: E) -> None:
        """Return a job taken for a batch that never started (its dispatch could not be recorded) to the
        head of its owner's queue, and serve its owner next; past the bounds, as ``put_back``.

        Returning a batch's jobs last to first puts them back in the order they were taken.
        """
        entries = self._owners.setdefault(entry.owner, deque())
        index = next((i for i, waiting in enumerate(entries) if waiting.job_id > entry.job_id), len(entries))
        entries.insert(index, entry)
        self._owners.move_to_end(entry.owner, last=False)
        self._size += 1

    def order(self) -> Iterator[E]:
        """Entries in the order they would start if none were batched together."""
        queues = [list(q) for q in self._owners.values()]
        depth = 0
        while True:
            row = [q[depth] for q in queues if depth < len(q)]
            if not row:
                return
            yield from row
            depth += 1

    def position(self, job_id: int) -> int | None:
        for index, entry in enumerate(self.order(), start=1):
            if entry.job_id == job_id:
                return index
        return None

    def remove(self, job_id: int) -> E | None:
        for owner, entries in self._owners.items():
            for entry in entries:
                if entry.job_id == job_id:
                    entries.remove(entry)
                    self._size -= 1
                    if not entries:
                        del self._owners[owner]
                    return entry
        return None

    def pending(self, owner: int) -> list[E]:
        return list(self._owners.get(owner, ()))

    def drain(self) -> list[E]:
        entries = list(self.order())
        self._owners.clear()
        self._size = 0
        return entries

    def take_batch(self, max_images: int) -> list[E]:
        """Take the next entry in fair order plus compatible heads of other owners' queues.

        Only heads are taken, so every owner's jobs still start in their order, and
        the owners served move to the back of the round-robin.
        """
        if not self._owners:
            return []
        first_owner = next(iter(self._owners))
        first = self._pop_head(first_owner)
        batch = [first]
        images = first.images
        progressed = True
        while progressed and images < max_images:
            progressed = False
            for owner in list(self._owners):
                head = self._owners[owner][0]
                if head.batch_key == first.batch_key and images + head.images <= max_images:
                    batch.append(self._pop_head(owner))
                    images += head.images
                    progressed = True
        return batch

    def _pop_head(self, owner: int) -> E:
        entries = self._owners.pop(owner)
        entry = entries.popleft()
        self._size -= 1
        if entries:
            self._owners[owner] = entries  # re-inserted at the back: served again after the others
        return entry
