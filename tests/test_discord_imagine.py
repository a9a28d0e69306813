"""/imagine through the real bot and the fake Discord.

The first answer and the grid, options, progress, refusals, quota, NSFW, DMs, mentions and errors.

The fixtures (``settings``, ``bot``) and helpers come from ``tests/discord_bot_helpers.py``.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

import pytest

from bot.settings import Settings
from models.engine import DiffusionEngine
from models.tiny import TINY_MODEL_ID
from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine, running_bot
from tests.fakediscord import FakeDiscord, MessageFlag
from tests.fakediscord.server import GuildSetup
from tests.helpers import NoNsfw, has_grid

# The shared fixtures, re-exported so pytest finds them here (``bot`` needs ``settings`` too).
settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot


async def test_imagine_answers_at_once_then_posts_the_grid_with_buttons(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    ix = await imagine(fake_discord, world, seed=7)
    first = await ix.wait_for_response(timeout=3)
    assert first.elapsed < 3 and not first.ephemeral
    assert "Queued: position 1" in first.content and "a red fox in snow" in first.content

    grid = await finished_grid(ix)
    assert grid.id == ix.original_message_id
    image = grid.attachments[0].open_image()
    assert image.size == (128, 128)
    assert "7, 8, 9, 10" in image.text["parameters"]
    assert f"<@{world.member.user.id}>" in grid.content and "Seeds: 7, 8, 9, 10" in grid.content
    labels = [button.get("label") for button in grid.buttons]
    assert labels[:9] == ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"]
    job_id = grid.button(label="U1")["custom_id"].split(":")[2]
    assert grid.button(label="U3")["custom_id"] == f"lc:u:{job_id}:3"
    assert grid.button(label="V2")["custom_id"] == f"lc:v:{job_id}:2"


async def test_progress_is_shown_with_a_preview_while_generating(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    async with running_bot(fake_discord, replace(settings, preview_interval_s=0.3), tiny_engine):
        ix = await imagine(fake_discord, world, steps=100)
        grid = await finished_grid(ix)
    progress = [revision for revision in grid.revisions if "Generating" in revision.content]
    assert progress, [revision.content for revision in grid.revisions]
    assert "/100" in progress[0].content and progress[0].attachment_ids  # the preview image
    edits = [revision.replaced_at for revision in grid.revisions]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(edits)]
    assert all(gap >= 0.25 for gap in gaps[:-1]), gaps  # status edits are throttled; the result is not


async def test_options_and_inline_flags_shape_the_result(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    ix = await imagine(fake_discord, world, prompt="a castle --ar 16:9 --seed 42 --no fog", count=2)
    grid = await finished_grid(ix)
    image = grid.attachments[0].open_image()
    assert image.size == (2 * 88, 48)
    assert "Negative prompt: fog" in image.text["parameters"]
    assert [b.get("label") for b in grid.buttons][:5] == ["U1", "U2", "🔄", "V1", "V2"]
    assert "Seeds: 42, 43" in grid.content


async def test_model_autocomplete_lists_configured_models(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    ix = await fake_discord.autocomplete(
        "imagine", {"prompt": "x", "model": "tin"}, focused="model", user=world.member, channel=world.text_channel
    )
    response = await ix.wait_for_response()
    assert [choice["value"] for choice in response.choices] == [TINY_MODEL_ID]


async def test_a_rejected_prompt_is_ephemeral_from_the_first_response_and_charges_nothing(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    ix = await imagine(fake_discord, world, prompt="a nud3 woman on a beach")
    first = await ix.wait_for_response(timeout=3)
    assert first.ephemeral and first.flags & MessageFlag.EPHEMERAL
    assert "NSFW prompts are not allowed in this channel" in first.content
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 0
    assert await core.store.unfinished_jobs() == []


async def test_bad_options_are_refused_ephemerally(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    ix = await imagine(fake_discord, world, prompt="a fox --ar 4:3")
    first = await ix.wait_for_response(timeout=3)
    assert first.ephemeral and "Unknown aspect ratio '4:3'" in first.content


async def test_quota_running_out(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    _, core = bot
    await core.store.set_quota_override(world.guild.id, user_id=world.member.user.id, credits=5, actor_id=1)
    ok = await imagine(fake_discord, world, steps=None)  # 4 credits
    # The status message says the cost (the first answer may be a "thinking" on a busy machine: wait for it).
    await ok.wait_for_message(lambda message: "Cost: 4 credits." in message.content, timeout=180)
    await finished_grid(ok)
    refused = await imagine(fake_discord, world, steps=None)
    first = await refused.wait_for_response(timeout=3)
    assert first.ephemeral and "This job costs 4 credits but you have 1 of 5 left" in first.content

    usage = await fake_discord.run_slash("usage", user=world.member, channel=world.text_channel)
    answer = await usage.wait_for_response()
    assert answer.ephemeral and "4 of 5 credits used in the last 24 hours; 1 left." in answer.content


async def test_nsfw_policy_follows_age_restricted_channels(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    change = await fake_discord.run_slash(
        "nsfw", {"mode": "age-restricted"}, user=world.moderator, channel=world.text_channel
    )
    assert "age-restricted channels only" in (await change.wait_for_response()).content

    allowed = await imagine(fake_discord, world, prompt="nsfw art", channel=world.nsfw_channel, count=1)
    assert not (await allowed.wait_for_response(timeout=3)).ephemeral
    await finished_grid(allowed)

    refused = await imagine(fake_discord, world, prompt="nsfw art", channel=world.text_channel)
    assert (await refused.wait_for_response(timeout=3)).ephemeral


async def test_withheld_images_are_blurred_with_their_buttons_disabled(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    async with running_bot(fake_discord, settings, tiny_engine, classifier=NoNsfw(flagged=[2])):
        grid = await finished_grid(await imagine(fake_discord, world))
    assert grid.button(label="U3").get("disabled") and grid.button(label="V3").get("disabled")
    assert not grid.button(label="U1").get("disabled")
    assert "1 image(s) withheld" in grid.content


async def test_a_slow_decision_defers_ephemerally_and_then_answers(
    fake_discord: FakeDiscord, world: GuildSetup, bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision past Discord's window (a model loading) is never answered publicly first."""
    _, core = bot
    real_preset = core.worker.preset

    async def slow_preset(model: str):
        await asyncio.sleep(2.5)
        return await real_preset(model)

    monkeypatch.setattr(core.worker, "preset", slow_preset)
    accepted = await imagine(fake_discord, world)
    first = await accepted.wait_for_response(timeout=3)
    assert first.ephemeral and first.elapsed < 3  # "thinking…", only for the requester
    grid = await accepted.wait_for_message(has_grid, timeout=180)
    assert not grid.ephemeral and f"<@{world.member.user.id}>" in grid.content

    rejected = await imagine(fake_discord, world, prompt="a nude statue")
    first = await rejected.wait_for_response(timeout=3)
    assert first.ephemeral
    answer = await rejected.wait_for_message(lambda m: "NSFW" in m.content, timeout=10)
    assert answer.ephemeral
    assert not any(
        "nude statue" in m.content for m in fake_discord.channel_messages(world.text_channel, include_ephemeral=False)
    )


# -- direct messages and mentions ------------------------------------------------------------------


async def test_imagine_in_direct_messages_is_off_by_default(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    dm = fake_discord.dm_channel(world.member)
    ix = await fake_discord.run_slash("imagine", {"prompt": "a fox"}, user=world.member.user, channel=dm)
    answer = await ix.wait_for_response(timeout=3)
    assert answer.ephemeral and "direct messages" in answer.content


async def test_imagine_in_direct_messages_when_the_owner_allows_it(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    async with running_bot(fake_discord, replace(settings, allow_dms=True), tiny_engine):
        dm = fake_discord.dm_channel(world.member)
        ok = await fake_discord.run_slash(
            "imagine", {"prompt": "a fox", "steps": 3, "count": 1}, user=world.member.user, channel=dm
        )
        assert not (await ok.wait_for_response(timeout=3)).ephemeral
        grid = await finished_grid(ok)
        assert grid.attachments[0].open_image().size == (64, 64)
        refused = await fake_discord.run_slash("imagine", {"prompt": "nsfw art"}, user=world.member.user, channel=dm)
        answer = await refused.wait_for_response(timeout=3)
        assert answer.ephemeral and "direct messages" in answer.content


async def test_a_prompt_cannot_ping_people(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    target = world.moderator.user.id
    ix = await imagine(fake_discord, world, prompt=f"a portrait of <@{target}> and @everyone", count=1)
    grid = await finished_grid(ix)
    assert f"<@{target}>" not in grid.content
    assert "@everyone" not in grid.content.replace("@\u200beveryone", "")


# -- errors ----------------------------------------------------------------------------------------


async def test_an_unexpected_error_gets_an_apology_with_an_error_id(
    fake_discord: FakeDiscord, world: GuildSetup, bot, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    _, core = bot

    async def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(core.service, "imagine", broken)
    ix = await imagine(fake_discord, world)
    answer = await ix.wait_for_response(timeout=3)
    assert answer.ephemeral and "Sorry, something went wrong on our side (error id" in answer.content
    assert "disk on fire" not in answer.content
    assert any("disk on fire" in str(record.exc_info) for record in caplog.records if record.exc_info)


async def test_a_failing_discord_edit_does_not_lose_the_result(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    ix = await imagine(fake_discord, world)
    await ix.wait_for_response(timeout=3)
    # Every further edit of the original response fails, as if the message had been deleted.
    fault = fake_discord.inject_fault(
        r"/webhooks/.*/messages/@original", method="PATCH", status=404, code=10008, times=100
    )
    posted = await fake_discord.wait_for_message(world.text_channel, has_grid, timeout=180)
    assert posted.id != ix.original_message_id and f"<@{world.member.user.id}>" in posted.content
    # The worker lives on: the next job is served as usual.
    fault.remaining = 0
    second = await imagine(fake_discord, world, user=world.moderator)
    assert not (await second.wait_for_response(timeout=3)).ephemeral
    assert (await finished_grid(second)).id == second.original_message_id


async def test_an_observer_sees_every_job_s_events_and_each_result_s_delivery(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    """Metrics and a live gallery subscribe once, beside the cogs' listeners, and see each job to its end."""
    from bot.jobs.outcomes import Delivered, ObservedEvent

    _, core = bot
    seen: list[ObservedEvent] = []
    core.service.add_observer(seen.append)
    running = await imagine(fake_discord, world, steps=30, user=world.moderator)
    waiting = await imagine(fake_discord, world)
    status = await waiting.wait_for_original(lambda m: bool(m.buttons), timeout=3)
    press = await fake_discord.press_button(status, user=world.member, label="Cancel")
    assert "Cancelled" in (await press.wait_for_response(timeout=3)).content
    grid = await finished_grid(running)
    await fake_discord.wait_until(lambda: any(isinstance(e, Delivered) for e in seen), what="the delivery observed")

    def kinds(job_id: int) -> list[str]:
        names = [type(event).__name__ for event in seen if event.job_id == job_id]
        return [name for index, name in enumerate(names) if index == 0 or names[index - 1] != name]

    done_id = next(e.job_id for e in seen if isinstance(e, Delivered))
    cancelled_id = next(e.job_id for e in seen if e.job_id != done_id)
    assert kinds(done_id) == ["Admitted", "Queued", "Started", "Progress", "Completed", "Delivered"]
    assert next(e for e in seen if isinstance(e, Delivered)).message_id == grid.id
    assert kinds(cancelled_id)[:2] == ["Admitted", "Queued"] and kinds(cancelled_id)[-1] == "Cancelled"
    assert "Started" not in kinds(cancelled_id)
