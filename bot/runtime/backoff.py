"""Waiting out a fault outside the program (the database's disk refusing writes), then trying again.

The dispatcher and the service retry what the storage refused the same way: soon at first, then less
often, never more than a few seconds apart, so work resumes within seconds of the storage answering
and a long outage costs one small try every few seconds. The log hears of the first refusal, then
about once a minute, and of the recovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

FIRST_RETRY_S: Final = 0.25
MAX_RETRY_S: Final = 4.0
# At the cap, this many refusals in a row take about a minute.
_SAY_EVERY: Final = 15


@dataclass(slots=True)
class Backoff:
    """Refusals in a row of one thing being retried, and how long to wait before the next try."""

    first_s: float = FIRST_RETRY_S
    max_s: float = MAX_RETRY_S
    refusals: int = 0

    def refused(self) -> float:
        """Count one more refusal; the seconds to wait before trying again."""
        self.refusals += 1
        return min(self.max_s, self.first_s * 2 ** min(self.refusals - 1, 32))

    @property
    def worth_logging(self) -> bool:
        """Whether the refusal just counted is one to log: the first, then about once a minute."""
        return self.refusals % _SAY_EVERY == 1

    def reset(self) -> int:
        """The try worked: how many refusals came before it (0: none, nothing to log), counting from 0 again."""
        refusals, self.refusals = self.refusals, 0
        return refusals
