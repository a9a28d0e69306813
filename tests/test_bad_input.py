"""Bad input through the real bot and a Discord-compatible server: every one gets a short answer, none a charge.

Discord refuses a reply over 2,000 characters, and the member is then left with "The
application did not respond"; a flag the parser did not check once ran on the wrong model.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.settings import Settings
from models.engine import DiffusionEngine
from models.tiny import TINY_MODEL_ID
from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine, running_bot
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup

# The shared fixtures, re-exported so pytest finds them here (``bot`` needs ``settings`` too).
settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot

DISCORD_CONTENT_LIMIT = 2000  # written out here, not imported, so the test checks the bot's own constant


async def assert_refused_without_charge(fake: FakeDiscord, world: GuildSetup, core, **options) -> str:
    """The first answer: ephemeral, in Discord's window, within its length limit; and nothing charged."""
    ix = await imagine(fake, world, **options)
    first = await ix.wait_for_response(timeout=3)
    assert first.elapsed < 3 and first.ephemeral
    content = first.content or ""
    assert 0 < len(content) <= DISCORD_CONTENT_LIMIT
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 0
    assert await core.store.unfinished_jobs() == []
    return content


@pytest.mark.parametrize(
    ("options", "sentence", "hidden"),
    [
        ({"model": "m" * 1990}, "Unknown model 'mmmm", "m" * 100),
        ({"prompt": "a cat --seed " + "\x01" * 1400}, "--seed takes a whole number, not '\\x01", "\x01"),
        ({"prompt": "a cat --ar " + "\u202e" * 1400}, "Unknown aspect ratio '\\u202e", "\u202e"),
    ],
    ids=["long-model", "control-characters-in-a-number", "bidi-overrides-as-aspect"],
)
async def test_long_bad_values_get_a_short_ephemeral_answer(
    fake_discord: FakeDiscord, world: GuildSetup, bot, options: dict, sentence: str, hidden: str
) -> None:
    _, core = bot
    content = await assert_refused_without_charge(fake_discord, world, core, **options)
    assert content.startswith(sentence) and "…" in content, content
    assert hidden not in content and len(content) < 200


async def test_an_unknown_model_typed_in_the_prompt_is_refused_naming_the_allowed_ones(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    content = await assert_refused_without_charge(fake_discord, world, core, prompt="a cat --model nonexistent")
    assert content == f"Unknown model 'nonexistent': choose one of {TINY_MODEL_ID}."


async def test_a_model_typed_in_the_prompt_is_the_model_that_runs(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    # The default cannot load, so only a job that really runs on the typed model succeeds.
    two_models = replace(settings, sd_model="a default that cannot load", extra_models=(TINY_MODEL_ID,))
    async with running_bot(fake_discord, two_models, tiny_engine) as (_, core):
        ix = await imagine(fake_discord, world, prompt=f"a cat --model {TINY_MODEL_ID}", count=1)
        first = await ix.wait_for_response(timeout=3)
        assert not first.ephemeral and "a cat" in (first.content or "")
        assert "--model" not in (first.content or "")
        grid = await finished_grid(ix)
        job_id = int(grid.button(label="U1")["custom_id"].split(":")[2])
        job = await core.store.get_job(job_id)
    assert job is not None and job.recipe.model == TINY_MODEL_ID and job.recipe.prompt == "a cat"
