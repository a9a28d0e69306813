"""Options users type, and the files they get back: checked without a model."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.errors import InvalidRequest
from bot.images.archive import read_source_image
from bot.images.encoding import encode_image
from bot.images.grid import compose_grid
from bot.images.metadata import fit_upload, infotext
from bot.jobs.flags import PROMPT_FLAGS, parse_prompt_flags
from bot.jobs.messages import (
    CONTENT_LIMIT,
    EMBED_TOTAL_LIMIT,
    SELECT_OPTIONS_LIMIT,
    fit_content,
    fit_embed,
    fit_embeds,
    fit_select_options,
    fit_text,
    quote_excerpt,
)
from bot.jobs.recipe import JobKind, Recipe
from bot.jobs.requests import (
    ImagineOptions,
    resolve_imagine,
    size_for_aspect,
)
from bot.settings import Settings, SettingsError
from models.types import ModelPreset

TINY = ModelPreset(
    model="builtin:tiny",
    family="tiny",
    width=64,
    height=64,
    steps=10,
    guidance=7.0,
    scheduler="EulerAncestralDiscreteScheduler",
    max_prompt_tokens=77,
)
SD15 = ModelPreset(
    model="sd15",
    family="sd1",
    width=512,
    height=512,
    steps=25,
    guidance=7.0,
    scheduler="EulerAncestralDiscreteScheduler",
    max_prompt_tokens=77,
)


def resolve(prompt: str = "a fox", models: tuple[str, ...] = ("builtin:tiny",), **options) -> Recipe:
    checked = ImagineOptions(prompt=prompt, **options).checked(models=models, max_prompt_chars=200)
    return resolve_imagine(checked, TINY)


# -- options ------------------------------------------------------------------------------


def test_defaults_come_from_the_model() -> None:
    request = resolve("  a red   fox ")
    assert request.kind is JobKind.IMAGINE
    assert request.prompt == "a red fox"
    assert (request.width, request.height, request.steps, request.guidance) == (64, 64, 10, 7.0)
    assert request.count == 4 and len(set(request.seeds)) == 4


def test_a_seed_gives_consecutive_seeds() -> None:
    assert resolve(seed=7).seeds == (7, 8, 9, 10)
    assert resolve(seed=2**32 - 1, count=2).seeds == (2**32 - 1, 0)


def test_midjourney_flags_in_the_prompt() -> None:
    options = parse_prompt_flags(ImagineOptions(prompt="a castle --ar 16:9 --seed 42 --no text, watermark --steps 5"))
    assert options.prompt == "a castle"
    assert (options.aspect, options.seed, options.steps) == ("16:9", 42, 5)
    assert options.negative == "text, watermark"


def test_explicit_options_win_over_flags_and_no_adds_to_negative() -> None:
    options = parse_prompt_flags(ImagineOptions(prompt="a castle --seed 1 --no fog", seed=9, negative="blur"))
    assert options.seed == 9
    assert options.negative == "blur, fog"


@pytest.mark.parametrize(
    ("aspect", "size"),
    [("1:1", (512, 512)), ("16:9", (680, 384)), ("9:16", (384, 680)), ("3:2", (624, 416)), ("2:3", (416, 624))],
)
def test_aspect_ratios_keep_about_the_native_pixel_count(aspect: str, size: tuple[int, int]) -> None:
    width, height = size_for_aspect(SD15, aspect)
    assert (width, height) == size
    assert width % 8 == 0 and height % 8 == 0
    assert abs(width * height - 512 * 512) / (512 * 512) < 0.05


@pytest.mark.parametrize(
    ("prompt", "options", "message"),
    [
        ("   ", {}, "prompt is empty"),
        ("x" * 201, {}, "201 characters long; the limit is 200"),
        ("a fox", {"steps": 0}, "Steps must be between 1 and 100, not 0"),
        ("a fox", {"steps": 101}, "Steps must be between 1 and 100"),
        ("a fox", {"guidance": 31.0}, "Guidance must be between 0 and 30"),
        ("a fox", {"count": 5}, "Count must be between 1 and 4"),
        ("a fox", {"count": 0}, "Count must be between 1 and 4"),
        ("a fox", {"seed": -1}, "Seed must be between 0 and 4294967295"),
        ("a fox", {"aspect": "4:3"}, "Unknown aspect ratio '4:3': choose one of 1:1, 3:2, 2:3, 16:9, 9:16"),
        ("a fox --ar 5:4", {}, "Unknown aspect ratio '5:4'"),
        ("a fox --chaos 50", {}, "Unknown flag '--chaos'"),
        ("a fox --model sd15", {}, "Unknown model 'sd15': choose one of builtin:tiny"),
        ("a fox", {"model": "sd15"}, "Unknown model 'sd15': choose one of builtin:tiny"),
        ("a fox --cfg 31", {}, "Guidance must be between 0 and 30, not 31"),
        ("a fox --steps 0", {}, "Steps must be between 1 and 100, not 0"),
        ("a fox --count 9", {}, "Count must be between 1 and 4, not 9"),
        ("a fox --seed", {}, "--seed needs a value"),
        ("a fox --seed abc", {}, "--seed takes a whole number"),
    ],
)
def test_bad_options_get_one_sentence_naming_the_allowed_values(prompt: str, options: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(")) as raised:
        resolve(prompt, **options)
    text = str(raised.value)
    assert text.endswith(".") and text.count(". ") == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt": "a cat", "model": "m" * 1990}, "Unknown model 'mmm"),
        ({"prompt": "a cat --seed " + "\x01" * 1400}, "--seed takes a whole number, not '\\x01\\x01"),
        ({"prompt": "a cat --ar " + "\u202e" * 1400}, "Unknown aspect ratio '\\u202e\\u202e"),
        ({"prompt": "a cat --seed " + "9" * 1400}, "Seed must be between 0 and 4294967295, not 999"),
        ({"prompt": "a cat --" + "x" * 1400}, "Unknown flag '--xxx"),
    ],
)
def test_long_bad_values_are_quoted_as_a_short_escaped_excerpt(options: dict, message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        resolve(**options)
    text = str(raised.value)
    assert text.startswith(message) and "…" in text
    assert len(text) < 200 and "\x01" not in text and "\u202e" not in text


def test_model_typed_in_the_prompt_is_checked_like_the_option() -> None:
    models = ("builtin:tiny", "org/other-model")
    options = ImagineOptions(prompt="a cat --model builtin:tiny --cfg 3").checked(models=models, max_prompt_chars=99)
    assert (options.prompt, options.model, options.guidance) == ("a cat", "builtin:tiny", 3.0)
    with pytest.raises(
        InvalidRequest, match=r"^Unknown model '\.\./\.\./etc/passwd': choose one of builtin:tiny, org/other-model\.$"
    ):
        ImagineOptions(prompt="a cat --model ../../etc/passwd").checked(models=models, max_prompt_chars=99)
    # The explicit option wins over the flag, as it does for every other option.
    explicit = ImagineOptions(prompt="a cat --model org/other-model", model="builtin:tiny")
    assert explicit.checked(models=models, max_prompt_chars=99).model == "builtin:tiny"
    assert ImagineOptions(prompt="a cat").checked(models=models, max_prompt_chars=99).model == "builtin:tiny"


def test_many_allowed_models_are_named_up_to_ten() -> None:
    models = tuple(f"model_{n}" for n in range(30))
    with pytest.raises(InvalidRequest) as raised:
        ImagineOptions(prompt="a cat", model="nope").checked(models=models, max_prompt_chars=99)
    text = str(raised.value)
    assert r"model\_0, model\_1" in text and r"model\_9 and 20 more." in text and r"model\_10" not in text


def test_the_unknown_flag_sentence_lists_every_flag_the_parser_reads() -> None:
    with pytest.raises(InvalidRequest) as raised:
        resolve("a fox --chaos 50")
    accepted = str(raised.value).split("accepts ", 1)[1]
    assert accepted == ", ".join(f"--{name}" for name in PROMPT_FLAGS) + "."
    assert {"--model", "--cfg", "--ar", "--no"} <= set(accepted.rstrip(".").split(", "))
    # Every option has a flag, but the command line's edit of a picture (in Discord, edits are buttons)
    # and the LoRA, whose inline form is <lora:name:weight>.
    option_fields = set(ImagineOptions.__dataclass_fields__) - {"prompt", "edit", "lora"}
    assert {flag.option for flag in PROMPT_FLAGS.values()} == option_fields


def test_a_preset_of_another_model_is_a_programming_error() -> None:
    checked = ImagineOptions(prompt="a fox").checked(models=("sd15", "builtin:tiny"), max_prompt_chars=99)
    with pytest.raises(ValueError, match="preset"):
        resolve_imagine(checked, TINY)


# -- messages: what the bot sends fits Discord's limits -----------------------------------


def test_quote_excerpt_escapes_markdown_and_shows_hidden_characters() -> None:
    assert quote_excerpt("4:3") == "'4:3'"
    assert quote_excerpt("**<@1>** `x`") == r"'\*\*\<@1\>\*\* \`x\`'"
    assert quote_excerpt("a\u202eb\x01\n") == r"'a\u202eb\x01\x0a'"
    assert quote_excerpt("x" * 100) == "'" + "x" * 40 + "…'"
    assert quote_excerpt("\u202e" * 100) == "'" + r"\u202e" * 6 + "…'"  # an escape is never cut in half


def test_fit_content_cuts_with_an_ellipsis_and_never_raises() -> None:
    assert fit_content("short") == "short"
    assert fit_content("x" * CONTENT_LIMIT) == "x" * CONTENT_LIMIT
    long = fit_content("word " * 1000)
    assert len(long) <= CONTENT_LIMIT and long.endswith("word…")
    # A character keeps its accents, and a code block left open is closed.
    assert fit_text("abcde\u0301\u0301f", 6) == "abcd…"
    fenced = fit_content("```\n" + "line\n" * 1000)
    assert len(fenced) <= CONTENT_LIMIT and fenced.endswith("…\n```") and fenced.count("```") == 2
    assert fit_text("anything", 0) == "" and fit_text("anything", 1) == "…"


def test_fit_embeds_respects_every_embed_limit() -> None:
    big = {
        "title": "t" * 300,
        "description": "d" * 5000,
        "fields": [{"name": "n" * 300, "value": "v" * 2000, "inline": False} for _ in range(30)],
        "footer": {"text": "f" * 3000},
        "author": {"name": "a" * 300},
    }
    fitted = fit_embed(big)
    assert len(fitted["title"]) == 256 and len(fitted["author"]["name"]) == 256
    assert len(fitted["fields"]) <= 25 and all(len(field["value"]) <= 1024 for field in fitted["fields"])
    several = fit_embeds([big] * 12)
    assert len(several) == 10
    total = sum(
        len(embed.get("title") or "")
        + len(embed.get("description") or "")
        + len(embed["footer"]["text"])
        + len(embed["author"]["name"])
        + sum(len(field["name"]) + len(field["value"]) for field in embed["fields"])
        for embed in several
    )
    assert total <= EMBED_TOTAL_LIMIT
    small = {"title": "Usage", "description": "4 of 5 credits", "fields": [{"name": "a", "value": "b"}]}
    assert fit_embed(small) == small


def test_fit_select_options_keeps_the_first_25() -> None:
    assert fit_select_options(list(range(40))) == list(range(SELECT_OPTIONS_LIMIT))
    assert fit_select_options(["a"]) == ["a"]


# -- settings -----------------------------------------------------------------------------


def test_settings_defaults_and_parsing(tmp_path: Path) -> None:
    settings = Settings.from_env({"SD_MODEL": "builtin:tiny", "SD_EXTRA_MODELS": "a/b, builtin:tiny"}, env_file=None)
    assert settings.database_path == Path("data/bot.sqlite3")
    assert settings.images_dir == Path("data/images")
    assert settings.models == ("builtin:tiny", "a/b")
    assert settings.device == "auto"


def test_settings_read_dotenv_but_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DISCORD_TOKEN=from-file\nDEVICE=cpu\n")
    settings = Settings.from_env({"DEVICE": "cuda"}, env_file=env_file)
    assert settings.discord_token == "from-file"
    assert settings.device == "cuda"
    assert "from-file" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEVICE", "tpu", "DEVICE='tpu' is invalid: it accepts auto or cuda or cpu."),
        ("QUEUE_MAX_PER_USER", "0", "QUEUE_MAX_PER_USER='0' is invalid: it accepts a whole number from 1 to 100."),
        ("BATCH_MAX_IMAGES", "many", "BATCH_MAX_IMAGES='many' is invalid"),
        ("NSFW_THRESHOLD", "2", "NSFW_THRESHOLD='2' is invalid: it accepts a number from 0 to 1."),
        ("ALLOW_DMS", "maybe", "ALLOW_DMS='maybe' is invalid: it accepts true or false."),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value}, env_file=None)
    assert str(raised.value).startswith(message)


def test_missing_token_says_how_to_get_one() -> None:
    with pytest.raises(SettingsError, match="DISCORD_TOKEN is not set.*developers/applications.*\\.env"):
        Settings.from_env({}, env_file=None).require_token()


# -- grids and files ----------------------------------------------------------------------


def solid(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.new("RGB", size, color)


PARAMETERS = Recipe(
    kind=JobKind.IMAGINE,
    prompt="a red fox in snow",
    negative_prompt="blurry",
    seeds=(7, 8, 9, 10),
    model="builtin:tiny",
    steps=10,
    guidance=7.0,
    width=64,
    height=64,
    scheduler="EulerAncestralDiscreteScheduler",
)


def test_four_images_make_a_2x2_grid_in_reading_order() -> None:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    grid = compose_grid([solid(c) for c in colors])
    assert grid.size == (128, 128)
    corners = [grid.getpixel((32, 32)), grid.getpixel((96, 32)), grid.getpixel((32, 96)), grid.getpixel((96, 96))]
    assert corners == colors


@pytest.mark.parametrize(("count", "size"), [(1, (64, 64)), (2, (128, 64)), (3, (128, 128))])
def test_fewer_images_make_smaller_grids(count: int, size: tuple[int, int]) -> None:
    assert compose_grid([solid((9, 9, 9))] * count).size == size


def test_png_carries_the_parameters_in_automatic1111_format() -> None:
    encoded = encode_image(compose_grid([solid((1, 2, 3))] * 4), infotext(PARAMETERS), stem="grid")
    assert encoded.filename == "grid.png" and encoded.content_type == "image/png"
    with Image.open(io.BytesIO(encoded.data)) as image:
        text = image.text["parameters"]
    assert text.splitlines() == [
        "a red fox in snow",
        "Negative prompt: blurry",
        'Steps: 10, Sampler: Euler a, CFG scale: 7, Seed: 7, Size: 64x64, Model: "builtin:tiny", Seeds: "7, 8, 9, 10"',
    ]


def test_a_grid_too_big_for_png_falls_back_to_jpeg_under_the_limit() -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    limit = 200_000
    encoded = encode_image(image, infotext(PARAMETERS), stem="grid", limit_bytes=limit)
    assert encoded.filename == "grid.jpg" and encoded.content_type == "image/jpeg"
    assert len(encoded.data) <= limit
    with Image.open(io.BytesIO(encoded.data)) as decoded:
        assert decoded.getexif()[0x010E] == infotext(PARAMETERS)
    assert exif_user_comment(encoded.data) == infotext(PARAMETERS)


def exif_user_comment(jpeg: bytes) -> str:
    """The JPEG's EXIF UserComment as AUTOMATIC1111 reads it (piexif.helper.UserComment.load): the 8-byte
    character code, then UTF-16 big-endian for ``UNICODE``, ASCII for ``ASCII``."""
    with Image.open(io.BytesIO(jpeg)) as decoded:
        raw = decoded.getexif().get_ifd(0x8769)[0x9286]
    code, body = raw[:8], raw[8:]
    assert code in (b"UNICODE\0", b"ASCII\0\0\0"), code
    return body.decode("utf-16-be" if code == b"UNICODE\0" else "ascii")


def test_the_jpeg_fallback_keeps_a_japanese_prompt_with_an_emoji_readable() -> None:
    recipe = replace(PARAMETERS, prompt="雪の中の赤い狐 🦊, 夕暮れ", negative_prompt="ぼやけた")
    noise = np.random.default_rng(1).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    kept = encode_image(Image.fromarray(noise), infotext(recipe), stem="grid", limit_bytes=None)
    posted = fit_upload(kept, recipe, 60_000)
    assert posted.filename == "grid.jpg" and len(posted.data) <= 60_000
    assert exif_user_comment(posted.data) == infotext(recipe)
    with Image.open(io.BytesIO(posted.data)) as decoded:
        # ImageDescription is ASCII only: it would have read "?????? ?, ??".
        assert 0x010E not in decoded.getexif()
        # Big-endian TIFF, so readers that decode UTF-16 in the file's byte order (ExifTool) read it too.
        assert decoded.info["exif"][6:8] == b"MM"


def test_source_images_must_be_images(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    with pytest.raises(InvalidRequest, match="notes.txt is not an image: give a PNG, JPEG or WebP file."):
        read_source_image(text_file)
    with pytest.raises(InvalidRequest, match="does not exist"):
        read_source_image(tmp_path / "missing.png")
    solid((5, 6, 7)).save(tmp_path / "ok.png")
    with Image.open(io.BytesIO(read_source_image(tmp_path / "ok.png"))) as image:
        assert image.getpixel((0, 0)) == (5, 6, 7)


def test_env_example_lists_every_setting_and_its_values_are_valid() -> None:
    import inspect
    import re

    from bot import settings as settings_module

    root = Path(__file__).resolve().parent.parent
    example = (root / ".env.example").read_text()
    read = set(re.findall(r'reader\.\w+\("([A-Z_]+)"', inspect.getsource(settings_module)))
    listed = set(re.findall(r"^#? ?([A-Z_]+)=", example, flags=re.MULTILINE))
    assert read == listed
    settings = Settings.from_env({}, env_file=root / ".env.example")
    assert settings.discord_token is None  # empty in the example: the owner fills it in


def test_the_jpeg_fallback_of_a_prompt_too_long_for_exif_is_posted_with_its_parameters_cut() -> None:
    recipe = replace(PARAMETERS, prompt="🦊 a red fox in snow " * 1500, negative_prompt="blurry " * 800)
    noise = np.random.default_rng(2).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    kept = encode_image(Image.fromarray(noise), infotext(recipe), stem="grid", limit_bytes=None)
    posted = fit_upload(kept, recipe, 150_000)
    assert posted.filename == "grid.jpg" and len(posted.data) <= 150_000
    comment = exif_user_comment(posted.data)
    assert comment.endswith("…") and infotext(recipe).startswith(comment[:-1])
    assert len(comment) > 25_000  # as much as fits
