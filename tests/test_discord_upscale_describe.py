"""Real upscalers and /describe through the real bot and the loopback Discord, and from the command line.

The upscaler is a tiny random-weight Real-ESRGAN compact net saved as safetensors and recognised by spandrel;
the captioner is the tiny random-weight Florence-2 built locally (``builtin:tiny-florence2``): their pixels and
words are noise, but every line of the real path runs. Each test asserts what a member sees.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bot.images.encoding import encode_image
from bot.images.metadata import fit_upload
from bot.jobs.describe import describe_recipe
from bot.jobs.generation import batch_spec, image_prompts
from bot.settings import Settings
from models.captioners import DESCRIBE_TASKS
from models.tiny_florence import TINY_FLORENCE_MODEL_ID
from models.upscalers import upscaler_loader
from tests import discord_bot_helpers
from tests.discord_bot_helpers import finished_grid, imagine, press_and_wait
from tests.fakediscord import FakeDiscord, FakeUpload
from tests.fakediscord.models import StoredMessage
from tests.fakediscord.server import GuildSetup
from tests.helpers import has_grid, tiny_settings
from tests.recipes import a_recipe
from tests.test_upscalers import a_compact

ROOT = Path(__file__).resolve().parent.parent
bot = discord_bot_helpers.bot
DISCORD_UPLOAD_LIMIT = 10 * 1024 * 1024


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    net = a_compact(tmp_path / "x2.safetensors", 2)
    return tiny_settings(
        tmp_path,
        discord_token="fake-bot-token",
        daily_credits=100,
        preview_interval_s=0.0,
        upscaler=net,
        upscale_strength=0.0,
        captioner=TINY_FLORENCE_MODEL_ID,
    )


def pixels(message: StoredMessage) -> np.ndarray:
    return np.asarray(message.attachments[0].open_image().convert("RGB"))


def job_of(message: StoredMessage) -> int:
    return int(next(b for b in message.buttons if b.get("label") == "Delete")["custom_id"].split(":")[2])


def upscaled_by_the_net(net_file: Path, cell: np.ndarray) -> np.ndarray:
    net = upscaler_loader(0)(str(net_file), torch.device("cpu"), torch.float32)
    batch = torch.from_numpy(cell.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        out = net(batch)
    return out[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


async def test_u1_is_the_upscaler_s_image_and_subtle_and_creative_go_further(
    fake_discord: FakeDiscord, world: GuildSetup, bot, settings: Settings
) -> None:
    _, core = bot
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a lighthouse", seed=4, count=1))
    source = pixels(grid)
    upscaled = await press_and_wait(fake_discord, grid, "U1", world)
    image = pixels(upscaled)
    assert image.shape[:2] == (2 * source.shape[0], 2 * source.shape[1])
    # UPSCALE_STRENGTH 0: the net's own output, nothing redrawn, so exactly what the net makes of the image.
    assert settings.upscaler is not None
    assert np.array_equal(image, upscaled_by_the_net(settings.upscaler, source))
    job = await core.store.get_job(job_of(upscaled))
    assert job is not None and job.recipe.upscaler == str(settings.upscaler) and job.cost == 1

    labels = [button.get("label") for button in upscaled.buttons]
    assert "Upscale (Subtle)" in labels and "Upscale (Creative)" in labels
    subtle = await press_and_wait(fake_discord, upscaled, "Upscale (Subtle)", world)
    assert pixels(subtle).shape[:2] == (4 * source.shape[0], 4 * source.shape[1])
    creative = await press_and_wait(fake_discord, upscaled, "Upscale (Creative)", world)
    assert pixels(creative).shape[:2] == (4 * source.shape[0], 4 * source.shape[1])
    creative_job = await core.store.get_job(job_of(creative))
    assert creative_job is not None and creative_job.recipe.strength == 0.5
    assert "Denoising strength: 0.5" in creative.attachments[0].open_image().text["parameters"]


def test_a_4096_px_result_fits_the_upload_limit() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (4096, 4096, 3), dtype=np.uint8)
    recipe = a_recipe(width=4096, height=4096, seeds=(1,))
    lossless = encode_image(Image.fromarray(noise, "RGB"), "parameters", stem="big", limit_bytes=None)
    assert len(lossless.data) > DISCORD_UPLOAD_LIMIT  # noise does not compress: the PNG alone would not fit
    posted = fit_upload(lossless, recipe, DISCORD_UPLOAD_LIMIT)
    assert len(posted.data) <= DISCORD_UPLOAD_LIMIT
    with Image.open(io.BytesIO(posted.data)) as image:
        assert image.width >= 2048  # shrunk by quality first, not to a thumbnail


async def describe_result(ix) -> StoredMessage:  # type: ignore[no-untyped-def]
    return await ix.wait_for_message(lambda m: "**Describe**" in m.content and bool(m.attachments), timeout=180)


async def test_describe_posts_four_numbered_prompts_whose_buttons_imagine_for_the_presser(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    _, core = bot
    picture = FakeUpload("photo.png", _png(96, 64), "image/png")
    ix = await fake_discord.run_slash("describe", {"image": picture}, user=world.member, channel=world.text_channel)
    result = await describe_result(ix)
    job = await core.store.get_job(job_of(result))
    assert job is not None and job.recipe.kind == "describe" and len(job.texts) == 4
    assert all(f"**{n}.**" in result.content for n in range(1, 5))
    assert [b.get("label") for b in result.buttons] == ["1", "2", "3", "4", "Delete"]
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 1  # DESCRIBE_COST

    pressable = next(n for n, text in enumerate(job.texts, start=1) if text.strip())
    press = await fake_discord.press_button(result, user=world.moderator, label=str(pressable))
    drawn = await press.wait_for_message(has_grid, timeout=180)
    drawn_job = await core.store.get_job(job_of(drawn))
    assert drawn_job is not None and drawn_job.user_id == world.moderator.user.id
    assert drawn_job.recipe.prompt == " ".join(job.texts[pressable - 1].split())
    assert (await core.store.usage(world.guild.id, world.moderator.user.id)).used == drawn_job.cost


async def test_the_describe_image_menu_describes_a_posted_picture(
    fake_discord: FakeDiscord, world: GuildSetup, bot
) -> None:
    grid = await finished_grid(await imagine(fake_discord, world, prompt="a harbour", seed=2, count=1))
    ix = await fake_discord.run_message_command("Describe image", grid, user=world.member)
    result = await describe_result(ix)
    assert "**1.**" in result.content
    text_only = await fake_discord.run_message_command(
        "Describe image", await _text_message(fake_discord, world), user=world.member
    )
    answer = await text_only.wait_for_response(timeout=10)
    assert answer.ephemeral and "no picture to describe" in answer.content


@pytest.mark.parametrize(
    ("bad", "sentence"),
    [
        (FakeUpload("notes.txt", b"just some text", "text/plain"), "not a picture"),
        (FakeUpload("huge.png", b"\0" * (10 * 1024 * 1024 + 1), "image/png"), "at most 10 MB"),
        (FakeUpload("damaged.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png"), "not a picture"),
    ],
)
async def test_a_bad_picture_to_describe_is_refused_and_costs_nothing(
    fake_discord: FakeDiscord, world: GuildSetup, bot, bad: FakeUpload, sentence: str
) -> None:
    _, core = bot
    ix = await fake_discord.run_slash("describe", {"image": bad}, user=world.member, channel=world.text_channel)
    answer = await ix.wait_for_response(timeout=10)
    assert answer.ephemeral and sentence in answer.content
    assert (await core.store.usage(world.guild.id, world.member.user.id)).used == 0


def test_the_command_line_upscales_and_describes(tmp_path: Path, model_cache_dir: Path) -> None:
    net = a_compact(tmp_path / "x2.safetensors", 2)
    (tmp_path / "in.png").write_bytes(_png(80, 48))
    env = {
        **{key: value for key, value in os.environ.items() if key not in ("DISCORD_TOKEN", "SD_EXTRA_MODELS")},
        "PYTHONPATH": str(ROOT),
        "SD_MODEL": "builtin:tiny",
        "MODEL_CACHE_DIR": str(model_cache_dir),
        "DEVICE": "cpu",
        "UPSCALER": str(net),
        "CAPTIONER": TINY_FLORENCE_MODEL_ID,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    upscaled = run("upscale", "in.png", "--out", "big.png")
    assert upscaled.returncode == 0, upscaled.stderr
    with Image.open(tmp_path / "big.png") as big:
        assert big.size == (160, 96)
    creative = run("upscale", "in.png", "--out", "creative.png", "--creative")
    assert creative.returncode == 0, creative.stderr
    with Image.open(tmp_path / "creative.png") as image:
        assert image.size == (160, 96) and "Denoising strength: 0.5" in image.text["parameters"]
    described = run("describe", "in.png")
    assert described.returncode == 0, described.stderr
    assert [line.split(".")[0] for line in described.stdout.splitlines() if line[:2] in ("1.", "2.", "3.", "4.")] == [
        "1",
        "2",
        "3",
        "4",
    ]
    missing = run("describe", "nothing.png")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def _png(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


async def _text_message(fake: FakeDiscord, world: GuildSetup) -> StoredMessage:
    """A message with no picture: the status of a refused-free command's answer (the bot's /usage reply)."""
    ix = await fake.run_slash("usage", {}, user=world.member, channel=world.text_channel)
    await ix.wait_for_response(timeout=10)
    return await ix.wait_for_message(lambda message: bool(message.content), timeout=30)


def test_descriptions_of_different_pictures_share_one_batch_key_so_members_are_batched_together() -> None:
    first = describe_recipe(TINY_FLORENCE_MODEL_ID, "sources/a.png", (96, 64))
    second = describe_recipe(TINY_FLORENCE_MODEL_ID, "sources/b.png", (640, 480))
    assert batch_spec(first) == batch_spec(second)
    assert batch_spec(first).operation == "caption" and batch_spec(first).model == TINY_FLORENCE_MODEL_ID
    assert [image.prompt for image in image_prompts(first)] == list(DESCRIBE_TASKS)
