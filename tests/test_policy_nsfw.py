"""The NSFW decision for every combination of guild mode, channel flag and DM."""

from __future__ import annotations

import pytest

from bot.policy.nsfw import NsfwDecision, NsfwMode, decide, parse_nsfw_mode

ALLOW = NsfwDecision(allow_nsfw_prompts=True, classify_images=False)
BLOCK = NsfwDecision(allow_nsfw_prompts=False, classify_images=True)


@pytest.mark.parametrize(
    ("mode", "channel_age_restricted", "is_dm", "expected"),
    [
        (NsfwMode.BLOCK, False, False, BLOCK),
        (NsfwMode.BLOCK, True, False, BLOCK),
        (NsfwMode.BLOCK, False, True, BLOCK),
        (NsfwMode.BLOCK, True, True, BLOCK),
        (NsfwMode.AGE_RESTRICTED, False, False, BLOCK),
        (NsfwMode.AGE_RESTRICTED, True, False, ALLOW),
        (NsfwMode.AGE_RESTRICTED, False, True, BLOCK),
        (NsfwMode.AGE_RESTRICTED, True, True, BLOCK),
    ],
)
def test_decision_table(mode: NsfwMode, channel_age_restricted: bool, is_dm: bool, expected: NsfwDecision) -> None:
    assert decide(mode, channel_age_restricted=channel_age_restricted, is_dm=is_dm) == expected


def test_the_stored_string_works_as_a_mode() -> None:
    assert decide("age-restricted", channel_age_restricted=True, is_dm=False) == ALLOW
    with pytest.raises(ValueError):
        decide("allow", channel_age_restricted=True, is_dm=False)


def test_parse_nsfw_mode() -> None:
    assert parse_nsfw_mode(" Age-Restricted ") is NsfwMode.AGE_RESTRICTED
    with pytest.raises(ValueError, match=r"^`allow` is not an NSFW mode; choose `block` or `age-restricted`\.$"):
        parse_nsfw_mode("allow")
