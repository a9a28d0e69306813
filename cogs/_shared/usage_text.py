"""How a member's credits are said, the same in /usage and /quota show."""

from __future__ import annotations

from bot.jobs.admission import describe_wait
from bot.jobs.records import Usage


def describe_usage(usage: Usage, limit: int, now: float) -> str:
    left = max(0, limit - usage.used)
    text = f"{usage.used} of {limit} credits used in the last 24 hours; {left} left."
    if usage.next_free_at is not None and usage.next_free_credits:
        text += f" {usage.next_free_credits} free up {describe_wait(usage.next_free_at - now)}."
    return text


def credits(count: int) -> str:
    """A number of credits as said: "1 credit", "4 credits"."""
    return f"{count} credit" if count == 1 else f"{count} credits"
