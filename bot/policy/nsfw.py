"""Where NSFW prompts and images are allowed: a pure function of three facts.

Moderators choose a mode per guild. ``block`` (the default) rejects NSFW
prompts and withholds NSFW images everywhere. ``age-restricted`` allows them in
channels Discord marks age-restricted and blocks them everywhere else. Direct
messages always block, whatever any guild says, because a DM has no
age-restriction flag to rely on.

The decision never depends on the prompt: an innocent prompt can still produce
an NSFW image, so wherever NSFW is not allowed every image is classified and
the flagged ones are withheld. That is how "nothing NSFW is posted in a channel
that is not age-restricted" holds whatever the setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["NsfwDecision", "NsfwMode", "decide", "parse_nsfw_mode"]


class NsfwMode(StrEnum):
    """A guild's NSFW setting; the values are what moderators choose and what the store keeps."""

    BLOCK = "block"
    AGE_RESTRICTED = "age-restricted"


@dataclass(frozen=True, slots=True)
class NsfwDecision:
    """What the service does for one request.

    ``allow_nsfw_prompts``: skip the built-in NSFW term list (guild terms still apply).
    ``classify_images``: classify every image and withhold (and refund) the NSFW ones.
    Exactly one of the two is true.
    """

    allow_nsfw_prompts: bool
    classify_images: bool


def parse_nsfw_mode(text: str) -> NsfwMode:
    """Read a mode typed by a moderator; ``ValueError`` with one sentence when it is not one."""
    try:
        return NsfwMode(text.strip().casefold())
    except ValueError:
        choices = " or ".join(f"`{mode.value}`" for mode in NsfwMode)
        raise ValueError(f"`{text}` is not an NSFW mode; choose {choices}.") from None


def decide(mode: NsfwMode | str, *, channel_age_restricted: bool, is_dm: bool) -> NsfwDecision:
    """NSFW is allowed only with mode ``age-restricted``, in an age-restricted channel, outside DMs."""
    allowed = NsfwMode(mode) is NsfwMode.AGE_RESTRICTED and channel_age_restricted and not is_dm
    return NsfwDecision(allow_nsfw_prompts=allowed, classify_images=not allowed)
