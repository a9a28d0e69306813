"""The starboard: a result that reaches its server's threshold of ⭐ is reposted once to the starboard channel.

The requester's own star never counts (``/stats`` counts every member's; this count is kept apart, in
``db.starboard``). The store claims the repost in the transaction of the star that reached the threshold,
so it happens once, ever: a star taken away and given again, or a restart, never reposts, and a repost
is never deleted when stars are taken away. What is reposted follows the starboard channel's NSFW rules:

* a result made where NSFW was allowed (``nsfw_allowed``: an age-restricted channel of a server that
  allows it, so the classifier let its images through) is reposted with its grid only to an
  age-restricted starboard channel; elsewhere the repost is the link alone, and says why;
* a result with a withheld image is reposted as the link alone too (its grid shows the blurred image,
  which a starboard should not spread), as is one whose files are gone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from bot.images.encoding import DISCORD_UPLOAD_LIMIT
from bot.images.metadata import fit_upload
from db.records import StarboardClaim

if TYPE_CHECKING:
    from bot.images.encoding import EncodedImage
    from bot.jobs.lifecycle import JobLifecycle
    from bot.jobs.outcomes import Job
    from bot.jobs.recipe import Recipe
    from db.store import Store

__all__ = ["DEFAULT_THRESHOLD", "MAX_THRESHOLD", "Repost", "Starboard", "StarboardClaim"]

#: The ⭐ a result needs when the server's moderators set no threshold.
DEFAULT_THRESHOLD: Final = 5
#: The most a threshold may be (the schema's CHECK says the same).
MAX_THRESHOLD: Final = 1000

NSFW_LINK_ONLY: Final = "image not reposted: it was made where NSFW is allowed, and this channel is not age-restricted"
WITHHELD_LINK_ONLY: Final = "image not reposted: the content filter withheld one of its images"
GONE_LINK_ONLY: Final = "image not reposted: its files are no longer kept"


@dataclass(frozen=True, slots=True)
class Repost:
    """What to post to the starboard for a claimed result: its grid, or only the link and why."""

    claim: StarboardClaim
    job: Job
    grid: EncodedImage | None
    link_only_because: str | None = None


class Starboard:
    def __init__(self, *, store: Store[Recipe], jobs: JobLifecycle) -> None:
        self._store = store
        self._jobs = jobs

    async def star(self, message_id: int, user_id: int, *, starred: bool) -> StarboardClaim | None:
        """A ⭐ given (``starred``) or taken away on the message ``message_id``; a claim when it is time to repost."""
        return await self._store.starboard_star(message_id, user_id, starred, default_threshold=DEFAULT_THRESHOLD)

    async def repost(self, claim: StarboardClaim, *, age_restricted: bool) -> Repost | None:
        """What to post for ``claim`` in a starboard channel that is (or is not) ``age_restricted``."""
        job = await self._store.get_job(claim.job_id)
        if job is None:
            return None
        if job.nsfw_allowed and not age_restricted:
            return Repost(claim, job, None, NSFW_LINK_ONLY)
        if job.withheld:
            return Repost(claim, job, None, WITHHELD_LINK_ONLY)
        try:
            result = await self._jobs.stored_result(job)
        except (OSError, ValueError):
            return Repost(claim, job, None, GONE_LINK_ONLY)
        grid = await asyncio.to_thread(fit_upload, result.grid, job.recipe, DISCORD_UPLOAD_LIMIT)
        return Repost(claim, job, grid)

    async def posted(self, job_id: int, message_id: int) -> None:
        await self._store.starboard_posted(job_id, message_id)

    async def not_posted(self, job_id: int) -> None:
        """The repost could not be sent: the next star may claim it again."""
        await self._store.release_starboard(job_id)
