"""The real bot, with its real cogs, against a Discord-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from bot.app import LatentcordBot
from bot.runtime.core import Core, open_core
from bot.settings import Settings
from models.engine import DiffusionEngine
from models.tiny import TINY_MODEL_ID
from tests.fakediscord import FakeDiscord, MessageFlag
from tests.fakediscord.fixtures import running_client
from tests.fakediscord.models import StoredMessage
from tests.fakediscord.server import GuildSetup
from tests.helpers import NoNsfw, has_grid, tiny_settings

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """Wall-clock time that a test can move forward, to age interaction tokens."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return tiny_settings(tmp_path, discord_token="fake-bot-token", daily_credits=100, preview_interval_s=0.0)


@asynccontextmanager
async def running_bot(
    fake: FakeDiscord,
    settings: Settings,
    engine: DiffusionEngine,
    *,
    classifier: NoNsfw | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[tuple[LatentcordBot, Core]]:
    async with open_core(settings, engine=engine, classifier=classifier or NoNsfw()) as core:
        bot = LatentcordBot(
            settings=settings, store=core.store, worker=core.worker, service=core.service, clock=clock or Clock()
        )
        async with running_client(bot, fake, token=settings.discord_token):
            yield bot, core


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> AsyncIterator[tuple[LatentcordBot, Core]]:
    async with running_bot(fake_discord, settings, tiny_engine) as running:
        yield running


async def imagine(fake: FakeDiscord, world: GuildSetup, user=None, channel=None, **options):
    options = {"prompt": "a red fox in snow", "steps": 3, **options}
    options = {name: value for name, value in options.items() if value is not None}
    return await fake.run_slash("imagine", options, user=user or world.member, channel=channel or world.text_channel)


async def finished_grid(ix, timeout: float = 60) -> StoredMessage:
    return await ix.wait_for_message(has_grid, timeout=timeout)


# -- /imagine ---------------------------------------------------------------------------------------


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


# -- buttons ------------------------------------------------------------------------------------------


async def test_upscale_variation_and_reroll_buttons(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    _, core = bot
    grid = await finished_grid(await imagine(fake_discord, world, seed=3))
    before = (grid.content, list(grid.components), grid.attachments[0].data)

    # U2, pressed by someone else: an upscale of image 2, charged to the presser.
    press = await fake_discord.press_button(grid, user=world.moderator, label="U2")
    assert not (await press.wait_for_response(timeout=3)).ephemeral
    upscaled = await press.wait_for_message(has_grid, timeout=60)
    assert upscaled.id != grid.id
    assert upscaled.attachments[0].open_image().size == (128, 128)
    assert [b.get("label") for b in upscaled.buttons][:2] == ["Vary (Strong)", "Vary (Subtle)"]
    assert "image 2 upscaled" in upscaled.content and f"<@{world.moderator.user.id}>" in upscaled.content
    assert (await core.store.usage(world.guild.id, world.moderator.user.id)).used > 0

    variations = await press_and_wait(fake_discord, grid, "V1", world)
    assert variations.attachments[0].open_image().size == (128, 128)
    assert "variations of image 1" in variations.content

    reroll = await press_and_wait(fake_discord, grid, "🔄", world)
    assert reroll.id != grid.id and "re-roll" in reroll.content
    assert "Seeds: 3, 4, 5, 6" not in reroll.content
    assert (grid.content, list(grid.components), grid.attachments[0].data) == before  # the original stays

    strong = await press_and_wait(fake_discord, upscaled, "Vary (Strong)", world)
    assert strong.attachments[0].open_image().size == (128, 128)  # four images at the original size


async def press_and_wait(fake: FakeDiscord, message: StoredMessage, label: str, world: GuildSetup) -> StoredMessage:
    press = await fake.press_button(message, user=world.member, label=label)
    assert not (await press.wait_for_response(timeout=3)).ephemeral
    return await press.wait_for_message(has_grid, timeout=60)


async def test_only_the_requester_or_a_moderator_deletes_a_result(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    grid = await finished_grid(await imagine(fake_discord, world))
    stranger = fake_discord.add_member(world.guild, "stranger")
    refused = await fake_discord.press_button(grid, user=stranger, label="Delete")
    assert (await refused.wait_for_response()).ephemeral
    assert not grid.deleted
    allowed = await fake_discord.press_button(grid, user=world.member, label="Delete")
    await allowed.wait_for_response()
    await fake_discord.wait_until(lambda: grid.deleted, what="the grid deleted")


async def test_buttons_work_after_a_restart(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    async with running_bot(fake_discord, settings, tiny_engine):
        grid = await finished_grid(await imagine(fake_discord, world))
    overwrites = fake_discord.command_overwrites
    async with running_bot(fake_discord, settings, tiny_engine):
        press = await fake_discord.press_button(grid, user=world.member, label="U1")
        upscaled = await press.wait_for_message(has_grid, timeout=60)
    assert upscaled.attachments[0].open_image().size == (128, 128)
    # Unchanged commands are not synced again on the second start.
    assert fake_discord.command_overwrites == overwrites == 1


async def test_a_result_after_the_token_expired_is_posted_with_the_bot_token(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    clock = Clock()
    async with running_bot(fake_discord, settings, tiny_engine, clock=clock):
        ix = await imagine(fake_discord, world, steps=20)
        await ix.wait_for_response(timeout=3)
        clock.offset = 15 * 60  # the job finishes "15 minutes later"
        fake_discord.expire_interaction(ix)
        posted = await fake_discord.wait_for_message(world.text_channel, has_grid, timeout=60)
    assert posted.id != ix.original_message_id and posted.interaction_id is None
    assert f"<@{world.member.user.id}>" in posted.content
    assert posted.attachments[0].open_image().size == (128, 128)


async def test_queued_jobs_survive_a_restart_and_are_delivered_to_their_channel(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    async with running_bot(fake_discord, settings, tiny_engine) as (_, core):
        running = await imagine(fake_discord, world, steps=40)
        waiting = await imagine(fake_discord, world, prompt="a lighthouse in a storm", user=world.moderator)
        await waiting.wait_for_response(timeout=3)
        await fake_discord.wait_until(lambda: core.worker.position(1) == 0, what="job 1 running")
    # Closing let the running job finish; the waiting one stayed queued in SQLite.
    await finished_grid(running, timeout=60)
    status = await waiting.wait_for_original(timeout=3)
    async with running_bot(fake_discord, settings, tiny_engine):
        delivered = await fake_discord.wait_for_message(
            world.text_channel, lambda m: has_grid(m) and "lighthouse" in m.content, timeout=60
        )
        await fake_discord.wait_until(lambda: "Finished after a restart" in status.content, what="status updated")
    assert f"<@{world.moderator.user.id}>" in delivered.content
    # The old status message said it was resumed, and no longer offers Cancel.
    assert any("Resumed after a restart" in revision.content for revision in status.revisions)
    assert not status.buttons


# -- moderation -----------------------------------------------------------------------------------------


async def test_a_regular_member_is_refused_at_filter_add(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    _, core = bot
    ix = await fake_discord.run_slash("filter add", {"term": "clown"}, user=world.member, channel=world.text_channel)
    answer = await ix.wait_for_response()
    assert answer.ephemeral and "Manage Server" in answer.content
    assert await core.store.filter_terms(world.guild.id) == []


async def test_moderators_filter_terms_and_every_change_reaches_the_log(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    mod, general = world.moderator, world.text_channel

    async def run(command: str, options: dict | None = None, user=None) -> str:
        ix = await fake_discord.run_slash(command, options, user=user or mod, channel=general)
        answer = await ix.wait_for_response()
        assert answer.ephemeral
        return answer.content

    assert f"now go to <#{world.log_channel.id}>" in await run("modlog", {"channel": world.log_channel})
    assert "now blocked" in await run("filter add", {"term": "Clown"})
    assert "`clown`" in await run("filter list")
    assert await run("filter add", {"term": "clown"}) == "`clown` is already on this server's filter list."

    refused = await imagine(fake_discord, world, prompt="a scary cl0wn")
    assert (await refused.wait_for_response(timeout=3)).ephemeral
    assert "no longer blocked" in await run("filter remove", {"term": "clown"})
    assert await run("filter remove", {"term": "clown"}) == "`clown` is not on this server's filter list."

    assert "may now spend 7 credits" in await run("quota set", {"limit": 7, "user": world.member})
    assert "0 of 7 credits used" in await run("quota show", {"user": world.member})
    assert "full credits back" in await run("quota reset", {"user": world.member})
    assert "Give a user or a role, not both." == await run(
        "quota set", {"limit": 7, "user": world.member, "role": world.moderator_role}
    )
    assert "Members without an override may now spend 50 credits" in await run("quota set", {"limit": 50})
    assert "0 of 50 credits used" in await run("quota show", {"user": world.owner})

    log = await fake_discord.wait_for_message(world.log_channel, lambda m: "rejected" in m.content, timeout=5)
    assert f"<@{world.member.user.id}>" in log.content
    entries = [m.content for m in fake_discord.channel_messages(world.log_channel)]
    assert any("filter term added" in entry for entry in entries)
    assert any("quota override set" in entry for entry in entries)
    audit = await core.store.audit_log(world.guild.id)
    assert {entry.action for entry in audit} >= {"log_channel", "filter_term_added", "filter_term_removed"}


async def test_imagine_in_direct_messages_is_off_by_default(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    dm = fake_discord.dm_channel(world.member)
    ix = await fake_discord.run_slash("imagine", {"prompt": "a fox"}, user=world.member.user, channel=dm)
    answer = await ix.wait_for_response(timeout=3)
    assert answer.ephemeral and "direct messages" in answer.content


# -- load ---------------------------------------------------------------------------------------------


async def test_a_hundred_concurrent_imagines_are_all_answered_in_time_and_none_lost(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    members = [fake_discord.add_member(world.guild, f"user{n}") for n in range(100)]
    busy = replace(settings, queue_max_total=100, batch_max_images=8, preview_interval_s=1.5)
    async with running_bot(fake_discord, busy, tiny_engine):
        interactions = await asyncio.gather(
            *(
                imagine(fake_discord, world, user=member, prompt=f"a fox number {n}", count=1, steps=1)
                for n, member in enumerate(members)
            )
        )
        answers = await asyncio.gather(*(ix.wait_for_response(timeout=3) for ix in interactions))
        assert max(answer.elapsed for answer in answers) < 3
        assert not any(answer.ephemeral for answer in answers)
        grids = await asyncio.gather(*(finished_grid(ix, timeout=120) for ix in interactions))
    assert len({grid.id for grid in grids}) == 100


# -- the real process ---------------------------------------------------------------------------------


async def test_python_m_bot_serves_and_stops_cleanly_on_sigterm(
    fake_discord: FakeDiscord, world: GuildSetup, tmp_path: Path, model_cache_dir: Path
) -> None:
    """``DISCORD_TOKEN=x SD_MODEL=builtin:tiny python -m bot`` against the fake, then SIGTERM."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": "a-secret-token-123",
        "SD_MODEL": TINY_MODEL_ID,
        "DEVICE": "cpu",
        "DATABASE_PATH": str(tmp_path / "bot.sqlite3"),
        "IMAGES_DIR": str(tmp_path / "images"),
        "MODEL_CACHE_DIR": str(model_cache_dir),
        "DISCORD_API_URL": fake_discord.api_base,
        "DISCORD_GATEWAY_URL": fake_discord.gateway_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        await fake_discord.wait_until(lambda: fake_discord.find_command("imagine"), timeout=60, what="commands synced")
        await fake_discord.wait_for_gateway(timeout=30)
        ix = await imagine(fake_discord, world, seed=1)
        await ix.wait_for_response(timeout=3)
        grid = await finished_grid(ix)
        assert grid.attachments[0].open_image().size == (128, 128)
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
        log = (await process.stderr.read()).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, log
    assert "a-secret-token-123" not in log
    assert "synced" in log


async def test_a_prompt_cannot_ping_people(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    target = world.moderator.user.id
    ix = await imagine(fake_discord, world, prompt=f"a portrait of <@{target}> and @everyone", count=1)
    grid = await finished_grid(ix)
    assert f"<@{target}>" not in grid.content
    assert "@everyone" not in grid.content.replace("@\u200beveryone", "")


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
    posted = await fake_discord.wait_for_message(world.text_channel, has_grid, timeout=60)
    assert posted.id != ix.original_message_id and f"<@{world.member.user.id}>" in posted.content
    # The worker lives on: the next job is served as usual.
    fault.remaining = 0
    second = await imagine(fake_discord, world, user=world.moderator)
    assert not (await second.wait_for_response(timeout=3)).ephemeral
    assert (await finished_grid(second)).id == second.original_message_id


async def test_the_cancel_button_stops_a_waiting_job_and_refunds_it(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    running = await imagine(fake_discord, world, steps=60, user=world.moderator)
    waiting = await imagine(fake_discord, world, steps=None)
    status = await waiting.wait_for_original(lambda m: bool(m.buttons), timeout=3)
    stranger = fake_discord.add_member(world.guild, "stranger")
    refused = await fake_discord.press_button(status, user=stranger, label="Cancel")
    assert (await refused.wait_for_response()).ephemeral
    press = await fake_discord.press_button(status, user=world.member, label="Cancel")
    answer = await press.wait_for_response(timeout=3)
    assert answer.ephemeral and "Cancelled" in answer.content
    await waiting.wait_for_original(lambda m: "Cancelled; credits refunded." in m.content, timeout=10)
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 0
    await finished_grid(running)


async def test_vary_subtle_on_an_upscale_and_role_quotas(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    artists = fake_discord.add_role(world.guild, "Artists")
    fake_discord.set_member_roles(world.member, [artists])
    ix = await fake_discord.run_slash(
        "quota set", {"limit": 3, "role": artists}, user=world.moderator, channel=world.text_channel
    )
    assert "may now spend 3 credits" in (await ix.wait_for_response()).content

    grid = await finished_grid(await imagine(fake_discord, world))  # 1 credit
    upscaled = await press_and_wait(fake_discord, grid, "U4", world)  # 1 credit
    subtle = await press_and_wait(fake_discord, upscaled, "Vary (Subtle)", world)  # 1 credit
    assert "variations of image 1" in subtle.content
    refused = await fake_discord.press_button(subtle, user=world.member, label="V1")
    answer = await refused.wait_for_response(timeout=3)
    assert answer.ephemeral and "you have 0 of 3 left" in answer.content


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
    grid = await accepted.wait_for_message(has_grid, timeout=60)
    assert not grid.ephemeral and f"<@{world.member.user.id}>" in grid.content

    rejected = await imagine(fake_discord, world, prompt="a nude statue")
    first = await rejected.wait_for_response(timeout=3)
    assert first.ephemeral
    answer = await rejected.wait_for_message(lambda m: "NSFW" in m.content, timeout=10)
    assert answer.ephemeral
    assert not any(
        "nude statue" in m.content for m in fake_discord.channel_messages(world.text_channel, include_ephemeral=False)
    )


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


async def test_the_bot_composes_from_settings_store_and_worker_as_designed(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine: DiffusionEngine
) -> None:
    """``Bot(settings=..., store=..., worker=...)``: the Bot builds its service and starts the worker."""
    from bot.app import Bot
    from bot.jobs.attempts import JobAttempts
    from bot.jobs.recipe import Recipe
    from bot.workers.dispatch import Dispatcher
    from bot.workers.inprocess import InProcessTransport
    from db.store import Store

    store = await Store.open(settings.database_path, recipe=Recipe)
    worker = Dispatcher(
        InProcessTransport(tiny_engine, classifier=NoNsfw()), JobAttempts(store), preview_interval_s=0.0
    )
    bot = Bot(settings=settings, store=store, worker=worker)
    async with running_client(bot, fake_discord, token=settings.discord_token):
        assert worker.running
        grid = await finished_grid(await imagine(fake_discord, world))
        assert grid.attachments[0].open_image().size == (128, 128)
    assert not worker.running
    with pytest.raises(RuntimeError, match="closed"):
        await store.filter_terms(1)  # Bot.close() closed the database after the worker
