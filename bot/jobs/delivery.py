"""Delivery is a state in SQLite: a finished job is ``pending`` until a message holds its result.

The Discord edge posts results and tells ``Deliveries`` how it went: ``delivered`` with the
message, or ``delivery_failed``, which says when to try again, backing off from
``DELIVERY_FIRST_RETRY_S`` to a minute apart for ``DELIVERY_GIVE_UP_S`` after the result was
ready (counted across restarts), and then gives the job up and refunds what is left of it. After
a restart, ``undelivered_results`` rebuilds what was not posted from SQLite and the files on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.jobs.outcomes import Delivered, DeliveryFailed, DeliveryVerdict, Job, JobResult, ObservedEvent
from bot.jobs.stored import stored
from db.records import Delivery

if TYPE_CHECKING:
    from bot.jobs.recipe import Recipe
    from bot.settings import Settings
    from db.store import Store

log = logging.getLogger(__name__)

DELIVERY_MAX_BACKOFF_S = 60.0


class Deliveries:
    """Where each result stands with Discord, and when to try posting it again."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store[Recipe],
        stored_result: Callable[[Job], Awaitable[JobResult]],
        observe: Callable[[ObservedEvent], None],
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._store = store
        self._stored_result = stored_result  # a finished job's result from its files; OSError when gone
        self._observe = observe
        self._clock = clock

    async def record_status_message(
        self, job_id: int, *, message_id: int | None, interaction_token: str, token_created_at: float
    ) -> None:
        """Where a job's status message is, and the interaction token that may edit it for 15 minutes."""
        await stored(
            self._store.set_delivery,
            job_id,
            message_id=message_id,
            interaction_token=interaction_token,
            token_created_at=token_created_at,
        )

    async def delivered(self, job_id: int, message_id: int | None) -> None:
        """A message now holds the job's result: stop retrying it, here and after a restart."""
        await stored(self._store.mark_delivered, job_id, message_id)
        self._observe(Delivered(job_id, message_id))

    async def delivery_failed(self, job_id: int) -> DeliveryVerdict:
        """One try to post a result failed: when to try again, or that it was given up and refunded.

        Tries back off from ``DELIVERY_FIRST_RETRY_S`` (doubling, at most a minute apart) for
        ``DELIVERY_GIVE_UP_S`` after the result was ready, counted across restarts. Past that the
        job's remaining credits are refunded in the same transaction that gives it up.
        """
        job = await stored(self._store.record_delivery_failure, job_id)
        if job.delivery != Delivery.PENDING:
            return DeliveryVerdict(retry_in_s=None, refunded=0)
        started = job.delivery_started_at if job.delivery_started_at is not None else self._clock()
        first = self._settings.delivery_first_retry_s
        delay = min(DELIVERY_MAX_BACKOFF_S, first * 2 ** max(job.delivery_attempts - 1, 0))
        if self._clock() + delay <= started + self._settings.delivery_give_up_s:
            retry = DeliveryVerdict(retry_in_s=delay, refunded=0)
            self._observe(DeliveryFailed(job_id, retry))
            return retry
        refunded = await stored(self._store.abandon_delivery, job_id, "result could not be posted to Discord")
        log.warning(
            "gave up posting the result of job %s after %d tries; refunded %d", job_id, job.delivery_attempts, refunded
        )
        given_up = DeliveryVerdict(retry_in_s=None, refunded=refunded)
        self._observe(DeliveryFailed(job_id, given_up))
        return given_up

    async def undelivered_results(self) -> list[JobResult]:
        """Results a restart left unposted, rebuilt from SQLite and the files on disk, oldest first.

        A result whose files are gone cannot be posted any more: it is given up and refunded.
        """
        results: list[JobResult] = []
        for job in await self._store.pending_deliveries():
            try:
                results.append(await self._stored_result(job))
            except OSError as missing:
                log.warning("the result of job %s is gone from disk (%s); refunding it", job.id, missing)
                await self._store.abandon_delivery(job.id, "result files missing")
        return results
