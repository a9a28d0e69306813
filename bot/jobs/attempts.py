"""The dispatcher's record of who runs what, kept in SQLite (``bot.workers.dispatch.AttemptLedger``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.workers.protocol import AttemptsUnrecorded
from db.errors import StorageUnavailable

if TYPE_CHECKING:
    from bot.jobs.recipe import Recipe
    from db.store import Store


class JobAttempts:
    """Attempts as the store keeps them: dispatch marks jobs running with a fresh token, a loss requeues them."""

    def __init__(self, store: Store[Recipe]) -> None:
        self._store = store

    async def start_attempts(self, job_ids: Sequence[int], worker_id: str) -> dict[int, tuple[int, str]]:
        try:
            return await self._store.start_attempts(job_ids, worker_id)
        except StorageUnavailable as refused:  # the dispatcher waits and tries again; anything else is a bug
            raise AttemptsUnrecorded(str(refused)) from refused

    async def requeue(self, job_id: int) -> None:
        await self._store.requeue_attempt(job_id)
