"""Domain errors: each carries one sentence fit to show the user who caused it.

The command-line front end prints ``str(error)`` and exits non-zero; the Discord
front end answers with it ephemerally. Errors raised by ``models/`` (a
``ModelError``) are equally fit for users and are handled the same way.
"""

from __future__ import annotations

from db.errors import StoreInputError
from models.errors import ModelError


class DomainError(Exception):
    """A request was refused or failed for a reason the user can act on."""


class InvalidRequest(DomainError):
    """An option is out of range or malformed."""


class PromptRejected(DomainError):
    """The prompt matched the content filter or the NSFW policy."""

    def __init__(self, message: str, *, rule: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule  # for moderators: which term of which list matched


class QuotaExceeded(DomainError):
    """The user has no credits left for this job in the rolling window."""


class QueueFull(DomainError):
    """The queue (the user's share or the whole) has no room."""


class StorageBusy(DomainError):
    """The database refused to record a new job for now (a disk I/O error, a full disk); nothing was charged."""


class JobNotFound(DomainError):
    """A job id does not name a known job (or an image index is out of range)."""


class NotAllowed(DomainError):
    """The caller may not do this (for example, delete someone else's result)."""


class DiscordLoginFailed(Exception):
    """Logging in to Discord failed at start-up; the message says what the owner should check."""


# A moderator's bad input to the store is answered the same way.
USER_FACING_ERRORS: tuple[type[Exception], ...] = (DomainError, ModelError, StoreInputError)
