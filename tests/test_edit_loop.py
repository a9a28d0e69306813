"""The edit loop through the real bot and the loopback Discord: Zoom Out, Pan, Vary (Region), Remix, pictures.

Each edit starts from an upscaled image (U1 of a 64 px tiny-model grid: 128x128), and its
result is a 2x2 grid whose cells are checked against the source's own pixels: equal beyond
the feather band (1/16 of the shorter side), anything inside the redrawn part.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bot.settings import Settings
from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine, press_and_wait, running_bot
from tests.fakediscord import CallbackType, FakeDiscord, FakeUpload, InteractionCallback, InteractionRecord
from tests.fakediscord.models import StoredMessage
from tests.fakediscord.server import GuildSetup
from tests.helpers import has_grid

settings = discord_bot_helpers.settings
bot = discord_bot_helpers.bot

SIDE = 128  # an upscaled tiny-model image
BAND = SIDE // 16


def cells(grid: StoredMessage) -> list[np.ndarray]:
    """The four images of a 2x2 grid, as arrays."""
    image = np.asarray(grid.attachments[0].open_image().convert("RGB"))
    height, width = image.shape[0] // 2, image.shape[1] // 2
    return [image[r * height : (r + 1) * height, c * width : (c + 1) * width] for r in range(2) for c in range(2)]


def pixels_of(message: StoredMessage) -> np.ndarray:
    return np.asarray(message.attachments[0].open_image().convert("RGB"))


async def upscaled(fake: FakeDiscord, world: GuildSetup, prompt: str = "a lighthouse on a cliff") -> StoredMessage:
    grid = await finished_grid(await imagine(fake, world, prompt=prompt, seed=11))
    return await press_and_wait(fake, grid, "U1", world)


async def test_an_upscale_offers_vary_edit_zoom_pan_and_the_upscales_in_order(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    source = await upscaled(fake_discord, world)
    assert [button.get("label") for button in source.buttons] == [
        "Vary (Strong)",
        "Vary (Subtle)",
        "Vary (Region)",
        "Edit",
        "Zoom Out 2x",
        "Zoom Out 1.5x",
        "⬅️",
        "➡️",
        "⬆️",
        "⬇️",
        "Upscale (Subtle)",
        "Upscale (Creative)",
        "Delete",
    ]


@pytest.mark.parametrize(("label", "factor"), [("Zoom Out 2x", 2.0), ("Zoom Out 1.5x", 1.5)])
async def test_zoom_out_keeps_the_shrunk_source_at_the_centre_and_draws_the_border(
    fake_discord: FakeDiscord, world: GuildSetup, bot, label: str, factor: float
) -> None:
    _, core = bot
    source = await upscaled(fake_discord, world)
    zoomed = await press_and_wait(fake_discord, source, label, world)

    assert zoomed.attachments[0].open_image().size == (2 * SIDE, 2 * SIDE)  # a 2x2 grid at the source's size
    assert f"{label} of image 1" in zoomed.content
    assert [b.get("label") for b in zoomed.buttons][:5] == ["U1", "U2", "U3", "U4", "🔄"]
    inner = round(SIDE / factor)
    left = (SIDE - inner) // 2
    shrunk = np.asarray(source.attachments[0].open_image().convert("RGB").resize((inner, inner), Image.LANCZOS))
    kept = slice(left + BAND, left + inner - BAND)
    for cell in cells(zoomed):
        assert np.array_equal(cell[kept, kept], shrunk[BAND:-BAND, BAND:-BAND])
        assert not np.array_equal(cell[:left, :], np.repeat(shrunk[:1, :1], left, axis=0)[:, :1])  # drawn, not blank
    job = await core.store.get_job(int(zoomed.button(label="U1")["custom_id"].split(":")[2]))
    assert job is not None and job.recipe.kind == "zoom" and job.recipe.mask == f"zoom:{label[9:-1]}"
    image = zoomed.attachments[0].open_image()
    assert f'Edit: "{label} of job' in image.text["parameters"]


@pytest.mark.parametrize(
    ("label", "size", "kept"),
    [
        ("⬅️", (SIDE + SIDE // 2, SIDE), (slice(None), slice(SIDE // 2, None))),
        ("➡️", (SIDE + SIDE // 2, SIDE), (slice(None), slice(0, SIDE))),
        ("⬆️", (SIDE, SIDE + SIDE // 2), (slice(SIDE // 2, None), slice(None))),
        ("⬇️", (SIDE, SIDE + SIDE // 2), (slice(0, SIDE), slice(None))),
    ],
)
async def test_pan_grows_the_canvas_by_half_and_keeps_the_source_where_it_was(
    fake_discord: FakeDiscord, world: GuildSetup, bot, label: str, size: tuple[int, int], kept: tuple[slice, slice]
) -> None:
    source = await upscaled(fake_discord, world)
    panned = await press_and_wait(fake_discord, source, label, world)

    width, height = size
    assert panned.attachments[0].open_image().size == (2 * width, 2 * height)
    original = pixels_of(source)
    away_from_seam = {
        "⬅️": (slice(None), slice(BAND, None)),
        "➡️": (slice(None), slice(None, -BAND)),
        "⬆️": (slice(BAND, None), slice(None)),
        "⬇️": (slice(None, -BAND), slice(None)),
    }[label]
    for cell in cells(panned):
        placed = cell[kept]
        assert placed.shape == original.shape
        assert np.array_equal(placed[away_from_seam], original[away_from_seam])


async def test_vary_region_offers_regions_then_asks_what_goes_there_and_keeps_the_rest(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    source = await upscaled(fake_discord, world)
    press = await fake_discord.press_button(source, user=world.member, label="Vary (Region)")
    menu = await press.wait_for_response(timeout=5)
    assert menu.ephemeral and "Which part" in (menu.content or "")
    select = menu.data["components"][0]["components"][0]
    assert [option["label"] for option in select["options"]] == [
        "Left half",
        "Right half",
        "Top half",
        "Bottom half",
        "Centre",
        "Top left",
        "Top right",
        "Bottom left",
        "Bottom right",
    ]

    chosen = await fake_discord.choose(menu.message_id, select["custom_id"], ["left-half"], user=world.member)
    modal = await modal_of(chosen)
    assert modal.data["title"] == "Remix"
    assert remix_prompt(modal.data) == ("Prompt", "a lighthouse on a cliff")

    edited = await remixed_grid(fake_discord, chosen, "a red door in a white wall")
    assert "a red door in a white wall" in edited.content and "Vary (Region): left half of image 1" in edited.content
    original = pixels_of(source)
    for cell in cells(edited):
        assert np.array_equal(cell[:, SIDE // 2 + BAND :], original[:, SIDE // 2 + BAND :])  # the right half, kept
        assert not np.array_equal(cell[:, : SIDE // 2], original[:, : SIDE // 2])  # the left half, redrawn


async def remixed_grid(fake: FakeDiscord, opened: InteractionRecord, prompt: str) -> StoredMessage:
    """Send the Remix window the bot opened in answer to ``opened`` with ``prompt``: a public answer, then the grid."""
    submitted = await fake.submit_modal(opened, {"prompt": prompt})
    assert not (await submitted.wait_for_response(timeout=10)).ephemeral
    return await submitted.wait_for_message(has_grid, timeout=180)


async def modal_of(interaction: InteractionRecord) -> InteractionCallback:
    """The window the bot opened in answer to ``interaction``."""
    response = await interaction.wait_for_response(timeout=5)
    assert response.type is CallbackType.MODAL, response.data
    return response


def remix_prompt(modal: Mapping[str, Any]) -> tuple[str, str]:
    """The label and the pre-filled value of the Remix window's one text input."""
    (row,) = modal["components"]
    if row["type"] == 18:  # a label around the input
        return row["label"], row["component"].get("value", "")
    (text,) = row["components"]
    return text["label"], text.get("value", "")


async def test_remix_opens_a_window_with_the_prompt_and_runs_the_edited_one(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    turned = await fake_discord.run_slash("prefer remix", user=world.member, channel=world.text_channel)
    answer = await turned.wait_for_response()
    assert answer.ephemeral and "Remix mode is now on" in answer.content

    grid = await finished_grid(await imagine(fake_discord, world, prompt="a fox in the snow"))
    used = (await core.store.usage(world.guild.id, world.member.user.id)).used
    press = await fake_discord.press_button(grid, user=world.member, label="V2")
    modal = await modal_of(press)
    assert modal.data["title"] == "Remix" and remix_prompt(modal.data) == ("Prompt", "a fox in the snow")
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == used  # a window charges nothing

    empty = await fake_discord.submit_modal(press, {"prompt": "   "})
    refusal = await empty.wait_for_response(timeout=5)
    assert refusal.ephemeral and "The prompt is empty" in refusal.content
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == used

    async def remix_v2(prompt: str) -> InteractionRecord:  # a submitted window closes: press V2 again
        press = await fake_discord.press_button(grid, user=world.member, label="V2")
        await modal_of(press)
        return await fake_discord.submit_modal(press, {"prompt": prompt})

    blocked = await remix_v2("a nud3 fox")
    assert (await blocked.wait_for_response(timeout=5)).ephemeral  # the filter and NSFW policy, as for any prompt
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == used

    remixed = await remix_v2("a wolf in the snow")
    assert not (await remixed.wait_for_response(timeout=5)).ephemeral
    result = await remixed.wait_for_message(has_grid, timeout=180)
    assert "a wolf in the snow" in result.content and "variations of image 2" in result.content

    turned = await fake_discord.run_slash("prefer remix", user=world.member, channel=world.text_channel)
    assert "Remix mode is now off" in (await turned.wait_for_response()).content
    again = await fake_discord.press_button(grid, user=world.member, label="🔄")
    assert not (await again.wait_for_response(timeout=5)).ephemeral  # no window: the job starts at once


async def test_zoom_with_remix_runs_the_new_prompt_on_the_zoomed_canvas(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    source = await upscaled(fake_discord, world)
    await (
        await fake_discord.run_slash("prefer remix", user=world.member, channel=world.text_channel)
    ).wait_for_response()
    press = await fake_discord.press_button(source, user=world.member, label="Zoom Out 2x")
    await modal_of(press)
    zoomed = await remixed_grid(fake_discord, press, "a lighthouse in a wide bay")
    assert "a lighthouse in a wide bay" in zoomed.content and "Zoom Out 2x of image 1" in zoomed.content


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_imagine_from_a_picture_redraws_it_at_the_nearest_aspect(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    picture = FakeUpload("wide.png", png(300, 160), "image/png")
    ix = await imagine(fake_discord, world, prompt="a red barn", image=picture, seed=5, count=4)
    grid = await finished_grid(ix)
    assert grid.attachments[0].open_image().size == (2 * 88, 2 * 48)  # 16:9, the preset nearest 300:160
    assert "from a picture" in grid.content
    parameters = grid.attachments[0].open_image().text["parameters"]
    assert "Denoising strength: 0.6" in parameters and "img2img from a member's picture" in parameters
    job = await core.store.get_job(int(grid.button(label="U1")["custom_id"].split(":")[2]))
    assert job is not None and job.recipe.kind == "image" and job.recipe.strength == 0.6
    assert job.recipe.source is not None and Path(job.recipe.source).is_file()

    strong = await imagine(fake_discord, world, prompt="a red barn", image=picture, strength=1.0, seed=5)
    assert "Denoising strength: 1" in (await finished_grid(strong)).attachments[0].open_image().text["parameters"]

    again = await press_and_wait(fake_discord, grid, "🔄", world)  # from the same stored picture
    assert again.attachments[0].open_image().size == (2 * 88, 2 * 48)


@pytest.mark.parametrize(
    ("upload", "sentence"),
    [
        (FakeUpload("notes.txt", b"just some text", "text/plain"), "not a picture the bot can read"),
        (FakeUpload("fake.png", b"\x89PNG\r\n\x1a\n but not really", "image/png"), "not a picture"),
        (FakeUpload("huge.png", b"\0" * (10 * 1024 * 1024 + 1), "image/png"), "may be at most 10 MB"),
    ],
)
async def test_a_picture_that_cannot_be_used_gets_a_sentence_and_costs_nothing(
    fake_discord: FakeDiscord, world: GuildSetup, bot, upload: FakeUpload, sentence: str
) -> None:
    _, core = bot
    ix = await imagine(fake_discord, world, prompt="a barn", image=upload)
    answer = await ix.wait_for_response(timeout=10)
    assert answer.ephemeral and sentence in answer.content
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 0


@pytest.mark.parametrize(("size", "sentence"), [((20_000, 20_000), "too many pixels"), ((5000, 4000), "(5000x4000)")])
async def test_a_decompression_bomb_is_refused_before_it_is_inflated(
    fake_discord: FakeDiscord, world: GuildSetup, bot, size: tuple[int, int], sentence: str
) -> None:
    buffer = io.BytesIO()
    Image.new("1", size).save(buffer, format="PNG")  # a few kB that would inflate to hundreds of MB as RGB
    upload = FakeUpload("bomb.png", buffer.getvalue(), "image/png")
    answer = await (await imagine(fake_discord, world, prompt="a barn", image=upload)).wait_for_response(timeout=10)
    assert answer.ephemeral and "too many pixels" in answer.content and sentence in answer.content


async def test_strength_without_a_picture_is_refused(fake_discord: FakeDiscord, world: GuildSetup, bot) -> None:
    answer = await (await imagine(fake_discord, world, prompt="a barn", strength=0.5)).wait_for_response(timeout=5)
    assert answer.ephemeral and "attach an image" in answer.content


async def test_edits_work_after_a_restart_and_say_when_their_source_is_gone(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine
) -> None:
    async with running_bot(fake_discord, settings, tiny_engine):
        source = await upscaled(fake_discord, world)
        zoomed = await press_and_wait(fake_discord, source, "Zoom Out 2x", world)
    async with running_bot(fake_discord, settings, tiny_engine) as (_, core):
        rerolled = await press_and_wait(fake_discord, zoomed, "🔄", world)
        assert "Zoom Out 2x of image 1" in rerolled.content
        assert rerolled.attachments[0].open_image().size == (2 * SIDE, 2 * SIDE)

        job = await core.store.get_job(int(source.button(label="Delete")["custom_id"].split(":")[2]))
        assert job is not None
        shutil.rmtree(Path((await core.service.image_files(job))[0]).parent)  # the grid and every image
        gone = await fake_discord.press_button(source, user=world.member, label="⬅️")
        answer = await gone.wait_for_response(timeout=5)
        assert answer.ephemeral and "no longer available" in answer.content


async def test_a_picture_job_whose_picture_is_gone_says_so_and_costs_nothing(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    picture = FakeUpload("square.png", png(64, 64), "image/png")
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a red barn", image=picture))
    job = await core.store.get_job(int(grid.button(label="U1")["custom_id"].split(":")[2]))
    assert job is not None and job.recipe.source is not None
    Path(job.recipe.source).unlink()
    used = (await core.store.usage(world.guild.id, world.member.user.id)).used
    press = await fake_discord.press_button(grid, user=world.member, label="🔄")
    answer = await press.wait_for_response(timeout=5)
    assert answer.ephemeral and "The picture this job starts from is no longer available." in answer.content
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == used


async def test_a_remix_window_opened_before_a_restart_still_starts_its_job_after_it(
    fake_discord: FakeDiscord, world: GuildSetup, settings: Settings, tiny_engine
) -> None:
    async with running_bot(fake_discord, settings, tiny_engine):
        turned = await fake_discord.run_slash("prefer remix", user=world.member, channel=world.text_channel)
        await turned.wait_for_response()
        source = await upscaled(fake_discord, world)
        variation = await fake_discord.press_button(source, user=world.member, label="Vary (Strong)")
        await modal_of(variation)
        region = await fake_discord.press_button(source, user=world.member, label="Vary (Region)")
        menu = await region.wait_for_response(timeout=5)
        select = menu.data["components"][0]["components"][0]
        chosen = await fake_discord.choose(menu.message_id, select["custom_id"], ["top-half"], user=world.member)
        await modal_of(chosen)
    async with running_bot(fake_discord, settings, tiny_engine):  # both windows are still open on the member's screen
        grid = await remixed_grid(fake_discord, variation, "a lighthouse at dawn")
        assert "a lighthouse at dawn" in grid.content and "variations of image 1" in grid.content

        edited = await remixed_grid(fake_discord, chosen, "storm clouds")
        assert "storm clouds" in edited.content and "Vary (Region): top half of image 1" in edited.content
        original = pixels_of(source)
        for cell in cells(edited):
            assert np.array_equal(cell[SIDE // 2 + BAND :], original[SIDE // 2 + BAND :])  # the bottom half, kept
