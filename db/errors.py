"""Exceptions raised by the store.

Each kind of failure has its own type because each has a different audience: a
``StoreError`` stops start-up and is read by whoever runs the bot, a
``StoreInputError`` is shown to the moderator who typed the bad value,
``QuotaExhausted`` is turned into a reply to the member who asked for a job, and
``StorageUnavailable`` (the disk failed a call) is waited out by whoever can wait.
"""

from __future__ import annotations


class StoreError(Exception):
    """The database file cannot be used (corrupt, unwritable, too new).

    The message always names the file, because the person who has to fix it is
    looking at a folder, not at Python.
    """


class StorageUnavailable(StoreError):
    """The file refused a read or a write for a reason outside the program: a disk I/O error, a full
    disk, a file made read-only, a lock held too long. Nothing was changed (the transaction rolled
    back), and the same call may work once the storage answers again, so callers that can wait retry.
    """


class StoreInputError(ValueError):
    """A moderator asked for something the store refuses; one sentence, nothing was changed."""


class UnknownJob(LookupError):
    """A job id that has no row; a programming error in the caller, not user input."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"There is no job {job_id}.")
        self.job_id = job_id


class QuotaExhausted(Exception):
    """Admitting a job would take a user over their limit; nothing was charged or queued.

    ``next_free_at`` is the unix time at which the oldest credits still counted
    leave the rolling window, or ``None`` when nothing is counted (the job costs
    more than the whole limit).
    """

    def __init__(self, *, used: int, limit: int, cost: int, next_free_at: float | None) -> None:
        left = max(0, limit - used)
        super().__init__(
            f"This job costs {cost} credits but only {left} of the {limit} in the rolling window are left."
        )
        self.used = used
        self.limit = limit
        self.cost = cost
        self.next_free_at = next_free_at
