"""Prompt power and personal defaults through the real bot and the loopback Discord: /show, styles, /settings,
prompt weights and long prompts."""

from __future__ import annotations

import numpy as np
import pytest

from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine, press_and_wait
from tests.fakediscord import FakeDiscord
from tests.fakediscord.server import GuildSetup
from tests.helpers import has_grid

settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot


def job_id_of(grid) -> int:
    return int(grid.button(label="Delete")["custom_id"].split(":")[2])


async def test_show_posts_a_finished_job_again_with_working_buttons(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse", seed=9))
    job_id = job_id_of(grid)

    shown = await fake_discord.run_slash("show", {"job": job_id}, user=world.member, channel=world.text_channel)
    answer = await shown.wait_for_response(timeout=5)
    assert not answer.ephemeral
    posted = await shown.wait_for_original(has_grid)
    assert posted.id != grid.id and "Seeds: 9, 10, 11, 12" in posted.content
    assert posted.attachments[0].data == grid.attachments[0].data
    upscaled = await press_and_wait(fake_discord, posted, "U2", world)  # its buttons work
    assert upscaled.attachments[0].open_image().size == (128, 128)

    by_moderator = await fake_discord.run_slash(
        "show", {"job": job_id}, user=world.moderator, channel=world.text_channel
    )
    assert not (await by_moderator.wait_for_response(timeout=5)).ephemeral


async def test_show_posts_a_grid_over_the_servers_upload_limit_as_a_jpeg_made_from_it(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse", seed=9))
    kept = grid.attachments[0]
    assert kept.filename.endswith(".png")
    world.guild.attachment_size_limit = len(kept.data) // 2  # grids are kept lossless whatever their size

    shown = await fake_discord.run_slash(
        "show", {"job": job_id_of(grid)}, user=world.member, channel=world.text_channel
    )
    posted = await shown.wait_for_original(has_grid)
    (attachment,) = posted.attachments
    assert attachment.filename == kept.filename.replace(".png", ".jpg") and len(attachment.data) <= len(kept.data) // 2
    with attachment.open_image() as image:
        assert image.format == "JPEG" and image.size == (128, 128)


async def test_show_refuses_someone_elses_job_and_a_job_that_does_not_exist(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse"))
    stranger = fake_discord.add_member(world.guild, "stranger")
    refused = await fake_discord.run_slash("show", {"job": job_id_of(grid)}, user=stranger, channel=world.text_channel)
    answer = await refused.wait_for_response(timeout=5)
    assert answer.ephemeral and "is not yours" in answer.content
    missing = await fake_discord.run_slash("show", {"job": 99999}, user=world.member, channel=world.text_channel)
    answer = await missing.wait_for_response(timeout=5)
    assert answer.ephemeral and "Job 99999 does not exist." in answer.content


async def moderator(fake: FakeDiscord, world: GuildSetup, command: str, options: dict) -> str:
    """A moderator's command, and the answer's text."""
    ix = await fake.run_slash(command, options, user=world.moderator, channel=world.text_channel)
    return (await ix.wait_for_response()).content or ""


async def test_a_style_wraps_the_prompt_is_filtered_whole_and_named_in_the_png(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    added = await moderator(
        fake_discord,
        world,
        "style add",
        {"name": "noir", "prompt": "{prompt}, film noir, black and white", "negative": "colour"},
    )
    assert "may now use the style `noir`" in added

    grid = await finished_grid(await imagine(fake_discord, world, prompt="a detective", style="noir", count=1))
    job = await core.store.get_job(job_id_of(grid))
    assert job is not None and job.recipe.prompt == "a detective, film noir, black and white"
    assert job.recipe.negative_prompt == "colour" and job.recipe.style == "noir"
    assert "Style: noir" in grid.attachments[0].open_image().text["parameters"]

    inline = await finished_grid(await imagine(fake_discord, world, prompt="a cat --style noir", count=1))
    job = await core.store.get_job(job_id_of(inline))
    assert job is not None and job.recipe.prompt == "a cat, film noir, black and white"

    unknown = await (await imagine(fake_discord, world, prompt="a cat", style="pastel")).wait_for_response(timeout=5)
    assert unknown.ephemeral and "no style named `pastel`" in unknown.content

    await moderator(fake_discord, world, "filter add", {"term": "clown"})
    await moderator(fake_discord, world, "style add", {"name": "circus", "prompt": "{prompt} with a clown"})
    blocked = await (await imagine(fake_discord, world, prompt="a tent", style="circus")).wait_for_response(timeout=5)
    assert blocked.ephemeral and "blocked" in blocked.content


async def test_settings_keep_a_members_defaults_options_win_and_reset_goes_back(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    await moderator(fake_discord, world, "style add", {"name": "noir", "prompt": "{prompt}, film noir"})
    opened = await fake_discord.run_slash("settings", user=world.member, channel=world.text_channel)
    panel = await opened.wait_for_response(timeout=5)
    assert panel.ephemeral and "Your defaults" in panel.content
    message = panel.message_id

    async def choose(custom_id: str, value: str) -> None:
        ix = await fake_discord.choose(message, custom_id, [value], user=world.member)
        await ix.wait_for_response(timeout=5)

    async def press(label_start: str) -> None:
        stored = fake_discord.messages[message]
        label = next(b["label"] for b in stored.buttons if str(b.get("label", "")).startswith(label_start))
        ix = await fake_discord.press_button(stored, user=world.member, label=label)
        await ix.wait_for_response(timeout=5)

    await choose("lcset:steps", "10")
    await press("Count")  # server default -> 1
    await choose("lcset:style", "noir")
    assert "Steps: 10" in fake_discord.messages[message].content

    plain = await finished_grid(await imagine(fake_discord, world, prompt="a fox", steps=None))
    job = await core.store.get_job(job_id_of(plain))
    assert job is not None and (job.recipe.steps, job.recipe.count) == (10, 1)
    assert job.recipe.prompt == "a fox, film noir"

    given = await finished_grid(await imagine(fake_discord, world, prompt="a fox", steps=3, count=2))
    job = await core.store.get_job(job_id_of(given))
    assert job is not None and (job.recipe.steps, job.recipe.count) == (3, 2)  # options on the command win

    await moderator(fake_discord, world, "style remove", {"name": "noir"})
    noticed = await imagine(fake_discord, world, prompt="a fox", steps=None)
    status = await noticed.wait_for_original()
    assert "Your default style noir is not on this server" in status.content
    await finished_grid(noticed)

    await press("Reset")
    preferences = await core.service.preferences(world.member.user.id)
    assert (preferences.steps, preferences.count, preferences.style, preferences.remix) == (None, None, None, False)
    await press("Remix")
    assert await core.service.remix_enabled(world.member.user.id)


def pixels_of(message) -> np.ndarray:
    return np.asarray(message.attachments[0].open_image().convert("RGB"), dtype=np.int16)


async def test_weights_change_the_image_and_a_weight_of_one_is_the_plain_image(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    async def drawn(prompt: str) -> np.ndarray:
        return pixels_of(await finished_grid(await imagine(fake_discord, world, prompt=prompt, seed=21, count=1)))

    # The tiny model's text encoder is small and random: weights move its pixels a little, but they move them.
    plain = await drawn("a red fox in the snow")
    assert not np.array_equal(await drawn("a (red:2.5) fox in the snow"), plain)
    assert np.array_equal(await drawn("a (red:1.0) fox in the snow"), plain)
    assert not np.array_equal(await drawn("a red fox::2.5 in the snow::0.5"), plain)


async def test_the_end_of_a_long_prompt_still_changes_the_image(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    start = "an old lighthouse on a rocky cliff above a stormy grey sea at dusk, " * 5  # 340 characters
    first = await finished_grid(
        await imagine(fake_discord, world, prompt=start + "with a red sailing boat", seed=4, count=1)
    )
    second = await finished_grid(
        await imagine(fake_discord, world, prompt=start + "with a blue stone tower", seed=4, count=1)
    )
    assert len(start) + 23 > 300
    assert not np.array_equal(pixels_of(first), pixels_of(second))  # the words past token 77 were read
    job = await core.store.get_job(job_id_of(first))
    assert job is not None and job.recipe.chunks >= 2
    assert "⚠️" not in first.content  # no notice about an ignored end


@pytest.mark.parametrize(
    ("prompt", "sentence"),
    [
        ("a (red fox", "brackets do not balance"),
        ("a red] fox", "brackets do not balance"),
        ("a (red:5) fox", "between 0 and 3, not 5"),
        ("a portrait, (n:1.2)ude", "NSFW prompts are not allowed"),
    ],
)
async def test_bad_weights_and_weighted_blocked_words_are_refused_and_cost_nothing(
    fake_discord: FakeDiscord, world: GuildSetup, bot, prompt: str, sentence: str
) -> None:
    _, core = bot
    answer = await (await imagine(fake_discord, world, prompt=prompt)).wait_for_response(timeout=5)
    assert answer.ephemeral and sentence in answer.content
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 0


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_weighted_and_long_prompts_encode_per_row_on_sd_and_sdxl_architectures(tmp_path, arch: str) -> None:
    from bench._architectures import build
    from bot.jobs.prompts import compel_prompt
    from models.engine import DiffusionEngine, EngineConfig
    from models.types import GenerationBatch, ImageTask
    from tests.recipes import a_spec

    folder = build(arch, "smoke", tmp_path / arch)
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=tmp_path / "cache"))
    preset = engine.load(str(folder))
    spec = a_spec(
        model=str(folder), guidance=preset.guidance, scheduler=preset.scheduler, weighted=True, prompt_chunks=3
    )
    long = "a lighthouse on a cliff above the sea, " * 12
    tasks = (
        ImageTask(compel_prompt("a (red:1.5) fox"), "", 1),
        ImageTask(compel_prompt(long), compel_prompt("(blurry:1.2)"), 2),
    )
    output = engine.run(GenerationBatch(spec, tasks))
    assert [image.size for image in output.images] == [(64, 64), (64, 64)]


def test_weighted_jobs_batch_with_weighted_jobs_of_the_same_length_only() -> None:
    from bot.jobs.generation import batch_spec
    from tests.recipes import a_recipe

    weighted = batch_spec(a_recipe(prompt="a (red:1.3) fox"))
    assert weighted == batch_spec(a_recipe(prompt="a [blue] cat"))
    assert weighted != batch_spec(a_recipe(prompt="a red fox"))
    assert batch_spec(a_recipe(prompt="x", chunks=2)) != batch_spec(a_recipe(prompt="(x:1.2)", chunks=1))


async def test_permutations_ask_first_charge_on_yes_and_post_each_grid(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    asked = await imagine(fake_discord, world, prompt="a {red, green} bird", count=1)
    question = await asked.wait_for_response(timeout=10)
    assert question.ephemeral and "This makes 2 jobs and costs 2 credits" in question.content
    assert "• a red bird" in question.content and "• a green bird" in question.content
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 0  # nothing before Yes

    yes = await fake_discord.press_button(question.message_id, user=world.member, label="Yes")
    await yes.wait_for_response(timeout=10)
    await fake_discord.wait_until(
        lambda: "Queued 2 of 2 jobs" in fake_discord.messages[question.message_id].content, timeout=30, what="queued"
    )

    def grids() -> list:
        return [m for m in fake_discord.channel_messages(world.text_channel) if has_grid(m) and "bird" in m.content]

    await fake_discord.wait_until(lambda: len(grids()) == 2 or None, timeout=180, what="both grids")
    assert sorted("red" in m.content for m in grids()) == [False, True]
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 2


async def test_no_queues_nothing_and_the_limit_is_the_servers(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    asked = await imagine(fake_discord, world, prompt="a fox --repeat 2", count=1)
    question = await asked.wait_for_response(timeout=10)
    assert "This makes 2 jobs" in question.content
    no = await fake_discord.press_button(question.message_id, user=world.member, label="No")
    await no.wait_for_response(timeout=10)
    assert "Nothing was queued or charged." in fake_discord.messages[question.message_id].content
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 0

    many = "a {red, green, blue} {fox, owl}"
    refused = await (await imagine(fake_discord, world, prompt=many)).wait_for_response(timeout=10)
    assert refused.ephemeral and "makes 6 jobs; this server allows at most 4" in refused.content
    raised = await fake_discord.run_slash(
        "quota permutations", {"limit": 6}, user=world.moderator, channel=world.text_channel
    )
    assert "up to 6 jobs" in (await raised.wait_for_response()).content
    allowed = await (await imagine(fake_discord, world, prompt=many)).wait_for_response(timeout=10)
    assert "This makes 6 jobs" in allowed.content

    too_many = await (await imagine(fake_discord, world, prompt="a fox --repeat 9")).wait_for_response(timeout=10)
    assert too_many.ephemeral and "Repeat must be between 2 and 4" in too_many.content


async def test_an_envelope_reaction_sends_the_images_and_parameters_by_direct_message(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse", seed=12, count=2))
    reader = fake_discord.add_member(world.guild, "reader")
    await fake_discord.react(grid, "✉️", user=reader)
    dm = fake_discord.dm_channel(reader)
    sent = await fake_discord.wait_until(
        lambda: next(iter(fake_discord.channel_messages(dm)), None), timeout=30, what="the direct message"
    )
    assert "seeds 12, 13" in sent.content and "a lighthouse" in sent.content and "Steps: 3" in sent.content
    assert len(sent.attachments) == 2

    closed = fake_discord.add_member(world.guild, "private")
    closed.user.dms_closed = True
    await fake_discord.react(grid, "✉️", user=closed)
    notice = await fake_discord.wait_until(
        lambda: next(
            (
                m
                for m in fake_discord.channel_messages(world.text_channel)
                if "DMs from this server are closed" in m.content
            ),
            None,
        ),
        timeout=30,
        what="the closed-DMs notice",
    )
    assert f"<@{closed.user.id}>" in notice.content


async def test_a_cross_from_a_stranger_does_nothing_and_from_the_requester_deletes(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse"))
    stranger = fake_discord.add_member(world.guild, "stranger")
    await fake_discord.react(grid, "❌", user=stranger)
    other = await finished_grid(await imagine(fake_discord, world, prompt="a fox"))  # the bot has moved on since
    assert other.id != grid.id and not grid.deleted
    await fake_discord.react(grid, "❌", user=world.member)
    await fake_discord.wait_until(lambda: grid.deleted or None, timeout=30, what="the result deleted")
