"""/edit, the Edit button, references and moodboards through the real bot and the loopback Discord.

The bot's SD_MODEL is the tiny FLUX.2 klein (its 64 px images are noise, but every line of the real
code runs): /edit and references run on it. Each test asserts what a member sees: the reply's text
and flags, the grid's size and parameters, the credits used.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image

from bot.app import LatentcordBot
from bot.runtime.core import Core
from bot.settings import Settings
from models.engine import DiffusionEngine, EngineConfig
from models.tiny_flow import TINY_KLEIN_MODEL_ID
from tests.discord_bot_helpers import finished_grid, imagine, press_and_wait, running_bot
from tests.fakediscord import CallbackType, FakeDiscord, FakeUpload, InteractionRecord
from tests.fakediscord.models import StoredMessage
from tests.fakediscord.server import GuildSetup
from tests.helpers import has_grid, tiny_settings


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(name: str, width: int = 64, height: int = 64, colour: tuple[int, int, int] = (200, 40, 40)) -> FakeUpload:
    return FakeUpload(name, png(width, height, colour), "image/png")


@pytest.fixture(scope="module")
def klein_engine(model_cache_dir: Path) -> Iterator[DiffusionEngine]:
    engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=model_cache_dir))
    engine.load(TINY_KLEIN_MODEL_ID)
    yield engine


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return tiny_settings(
        tmp_path,
        sd_model=TINY_KLEIN_MODEL_ID,
        discord_token="fake-bot-token",
        daily_credits=100,
        preview_interval_s=0.0,
    )


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, klein_engine: DiffusionEngine
) -> AsyncIterator[tuple[LatentcordBot, Core]]:
    async with running_bot(fake_discord, settings, klein_engine) as running:
        yield running


async def edit(fake: FakeDiscord, world: GuildSetup, instruction: str, *images: FakeUpload, **options: object):
    named = {"image": images[0], **{f"image{n}": image for n, image in enumerate(images[1:], start=2)}}
    return await fake.run_slash(
        "edit", {"instruction": instruction, **named, **options}, user=world.member, channel=world.text_channel
    )


def parameters(message: StoredMessage) -> str:
    return str(message.attachments[0].open_image().text["parameters"])


async def used(core: Core, world: GuildSetup) -> int:
    return (await core.store.usage(world.guild.id, world.member.user.id)).used


def job_of(message: StoredMessage) -> int:
    return int(next(b for b in message.buttons if b.get("label") == "Delete")["custom_id"].split(":")[2])


async def test_edit_with_one_picture_posts_four_edits_at_its_aspect(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    ix = await edit(fake_discord, world, "make it night", upload("wide.png", 200, 100))
    grid = await finished_grid(ix)
    image = grid.attachments[0].open_image()
    assert image.size[0] > image.size[1]  # the picture's 2:1 kept, four cells
    assert [b.get("label") for b in grid.buttons][:5] == ["U1", "U2", "U3", "U4", "🔄"]
    assert 'Edit: "make it night" of a picture' in parameters(grid)
    assert "make it night" in grid.content and "edit of a picture" in grid.content
    job = await core.store.get_job(job_of(grid))
    assert job is not None and job.recipe.kind == "edit" and job.recipe.source and Path(job.recipe.source).is_file()
    assert await used(core, world) == job.cost > 0


async def test_edit_with_three_pictures_reads_the_two_others_as_references(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    ix = await edit(
        fake_discord,
        world,
        "put the cat from image 2 on the sofa",
        upload("sofa.png"),
        upload("cat.png", 64, 96, (20, 200, 20)),
        upload("rug.png", 96, 64, (20, 20, 200)),
    )
    grid = await finished_grid(ix)
    job = await core.store.get_job(job_of(grid))
    assert job is not None and len(job.recipe.reference_images) == 2
    assert "references: 2 pictures" in parameters(grid)


async def test_the_edit_button_opens_the_edit_window_and_closing_it_costs_nothing(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse", seed=3, count=1))
    upscaled = await press_and_wait(fake_discord, grid, "U1", world)
    labels = [button.get("label") for button in upscaled.buttons]
    assert labels[labels.index("Vary (Region)") + 1] == "Edit"
    before = await used(core, world)
    press = await fake_discord.press_button(upscaled, user=world.member, label="Edit")
    window = await press.wait_for_response(timeout=10)
    assert window.type is CallbackType.MODAL and window.data["title"] == "Edit"
    assert _input_label(window.data) == "Instruction"
    assert await used(core, world) == before  # opened and closed: nothing charged

    edited = await submitted(fake_discord, press, "make it night")
    upscale_job = job_of(upscaled)
    assert f'Edit: "make it night" of job {upscale_job}, image 1' in parameters(edited)
    assert await used(core, world) > before


async def test_an_edit_window_sent_after_a_restart_still_edits(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, klein_engine: DiffusionEngine
) -> None:
    async with running_bot(fake_discord, settings, klein_engine):
        grid = await finished_grid(await imagine(fake_discord, world, prompt="a harbour", seed=5, count=1))
        upscaled = await press_and_wait(fake_discord, grid, "U1", world)
    async with running_bot(fake_discord, settings, klein_engine):
        press = await fake_discord.press_button(upscaled, user=world.member, label="Edit")
        assert (await press.wait_for_response(timeout=10)).type is CallbackType.MODAL
        edited = await submitted(fake_discord, press, "give it a red roof")
        assert f'Edit: "give it a red roof" of job {job_of(upscaled)}, image 1' in parameters(edited)


async def test_a_reference_on_imagine_guides_the_images_and_ref_reuses_a_posted_one(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    guided = await finished_grid(
        await imagine(fake_discord, world, prompt="a knight", reference=upload("style.png"), seed=2, count=1)
    )
    assert "References: a picture" in parameters(guided)
    posted = job_of(guided)
    again = await finished_grid(await imagine(fake_discord, world, prompt=f"a knight --ref {posted}:1", count=1))
    assert f"References: job {posted} image 1" in parameters(again)
    missing = await imagine(fake_discord, world, prompt="a knight --ref 999:1")
    answer = await missing.wait_for_response(timeout=10)
    assert answer.ephemeral and "Job 999 does not exist" in answer.content


@pytest.mark.parametrize(
    ("bad", "sentence"),
    [
        (FakeUpload("notes.txt", b"just some text", "text/plain"), "not a picture"),
        (FakeUpload("huge.png", b"\0" * (10 * 1024 * 1024 + 1), "image/png"), "at most 10 MB"),
        (FakeUpload("damaged.png", png(64, 64)[:60], "image/png"), "damaged"),
        ("bomb", "too many pixels"),
    ],
)
async def test_every_bad_picture_is_refused_with_a_sentence_and_nothing_charged(
    fake_discord: FakeDiscord, world: GuildSetup, bot, bad: FakeUpload | str, sentence: str
) -> None:
    _, core = bot
    if bad == "bomb":
        buffer = io.BytesIO()
        Image.new("1", (20_000, 20_000)).save(buffer, format="PNG")  # a few kB, hundreds of MB once inflated
        bad = FakeUpload("bomb.png", buffer.getvalue(), "image/png")
    assert isinstance(bad, FakeUpload)
    for ix in (
        await edit(fake_discord, world, "make it night", bad),
        await edit(fake_discord, world, "make it night", upload("fine.png"), bad),
        await imagine(fake_discord, world, prompt="a knight", reference=bad),
    ):
        answer = await ix.wait_for_response(timeout=10)
        assert answer.ephemeral and sentence in answer.content, answer.content
        assert answer.content.count(". ") == 0  # one sentence
    assert await used(core, world) == 0
    assert not list((core.settings.images_dir / "sources").glob("*.png"))


async def test_without_an_edit_capable_model_the_sentence_says_what_to_configure(
    fake_discord: FakeDiscord, world: GuildSetup, tmp_path: Path, tiny_engine: DiffusionEngine
) -> None:
    settings = tiny_settings(tmp_path, discord_token="fake-bot-token", daily_credits=100)  # builtin:tiny only
    async with running_bot(fake_discord, settings, tiny_engine) as (_, core):
        for ix in (
            await edit(fake_discord, world, "make it night", upload("a.png")),
            await imagine(fake_discord, world, prompt="a knight", reference=upload("b.png")),
        ):
            answer = await ix.wait_for_response(timeout=10)
            assert answer.ephemeral and "SD_EDIT_MODEL" in answer.content and "nothing was charged" in answer.content
        assert await used(core, world) == 0


def _input_label(modal: dict) -> str:
    (row,) = modal["components"]
    if row["type"] == 18:  # a label around the input
        return str(row["label"])
    (text,) = row["components"]
    return str(text["label"])


async def submitted(fake: FakeDiscord, opened: InteractionRecord, instruction: str) -> StoredMessage:
    sent = await fake.submit_modal(opened, {"instruction": instruction})
    assert not (await sent.wait_for_response(timeout=10)).ephemeral
    return await sent.wait_for_message(has_grid, timeout=180)


async def moderator_says(fake: FakeDiscord, world: GuildSetup, command: str, options: dict) -> str:
    ix = await fake.run_slash(command, options, user=world.moderator, channel=world.text_channel)
    await ix.wait_for_response(timeout=10)
    return (await ix.wait_for_message(lambda message: bool(message.content), timeout=60)).content


async def test_a_moodboard_is_added_used_on_imagine_and_edit_and_removed(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    added = await moderator_says(
        fake_discord,
        world,
        "moodboard add",
        {
            "name": "neon",
            "image": upload("pink.png", colour=(250, 20, 200)),
            "image2": upload("blue.png", colour=(20, 20, 250)),
        },
    )
    assert "neon" in added
    guided = await finished_grid(await imagine(fake_discord, world, prompt="a city street --mood neon", count=1))
    assert "moodboard neon" in parameters(guided)
    job = await core.store.get_job(job_of(guided))
    assert job is not None and job.recipe.mood == "neon" and len(job.recipe.reference_images) == 2
    edited = await finished_grid(await edit(fake_discord, world, "make it night", upload("street.png"), mood="neon"))
    assert "references: 2 pictures, moodboard neon" in parameters(edited)

    await moderator_says(fake_discord, world, "moodboard remove", {"name": "neon"})
    gone = await imagine(fake_discord, world, prompt="a city street --mood neon")
    answer = await gone.wait_for_response(timeout=10)
    assert answer.ephemeral and "no moodboard named `neon`" in answer.content
    # The pictures of the removed set stay while the posted jobs it guided may be re-rolled.
    rerolled = await press_and_wait(fake_discord, guided, "🔄", world)
    assert "moodboard neon" in parameters(rerolled)


async def test_an_nsfw_moodboard_is_refused_outside_age_restricted_channels(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    await moderator_says(
        fake_discord, world, "moodboard add", {"name": "spicy", "image": upload("a.png"), "nsfw": True}
    )
    refused = await imagine(fake_discord, world, prompt="a portrait --mood spicy")
    answer = await refused.wait_for_response(timeout=10)
    assert answer.ephemeral and "spicy is marked NSFW" in answer.content
    assert await used(core, world) == 0

    mode = await fake_discord.run_slash(
        "nsfw", {"mode": "age-restricted"}, user=world.moderator, channel=world.text_channel
    )
    await mode.wait_for_response(timeout=10)
    allowed = await imagine(fake_discord, world, prompt="a portrait", mood="spicy", channel=world.nsfw_channel, count=1)
    assert "moodboard spicy" in parameters(await finished_grid(allowed))
