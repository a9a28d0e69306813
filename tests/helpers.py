"""Small test doubles shared by several test modules."""

from __future__ import annotations

T0 = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand, so windows expire without sleeping."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
