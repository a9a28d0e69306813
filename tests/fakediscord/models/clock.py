"""Time the fake runs on: a clock tests can move forward, and snowflakes built from it."""

from __future__ import annotations

import datetime as dt
import time

DISCORD_EPOCH_MS = 1_420_070_400_000


def iso(moment: dt.datetime) -> str:
    """Discord's timestamp format (ISO 8601 with offset), which ``discord.utils.parse_time`` reads."""
    return moment.isoformat()


class FakeClock:
    """Wall and monotonic time with an adjustable offset, so tests can jump past Discord's deadlines.

    Discord enforces two clocks on interactions: the 3-second acknowledgement window and the
    15-minute token lifetime. Advancing this clock makes the fake behave as if that much time had
    passed (tokens expire, new snowflakes and timestamps move forward) without sleeping.
    """

    def __init__(self) -> None:
        self.offset: float = 0.0

    def advance(self, seconds: float) -> None:
        """Jump forward; never backwards, because snowflakes must stay increasing."""
        if seconds < 0:
            raise ValueError("the fake clock only moves forward")
        self.offset += seconds

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(time.time() + self.offset, tz=dt.UTC)


class SnowflakeFactory:
    """Real-looking, strictly increasing snowflakes whose embedded time follows the fake clock.

    discord.py derives behaviour from a snowflake's timestamp (``created_at``, the sub-10-seconds
    delete bucket), so ids are built from the time rather than counted from 1.
    """

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._last = 0

    def next(self) -> int:
        ms = int(self._clock.now().timestamp() * 1000)
        candidate = ((ms - DISCORD_EPOCH_MS) << 22) | (1 << 17)
        self._last = max(candidate, self._last + 1)
        return self._last
