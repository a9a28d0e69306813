"""The option table (``bot.jobs.options``) and what is derived from it: /imagine, the flags, the command line,
/settings and the checks, held to the table and to the words users already know."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from discord import AppCommandOptionType
from discord.app_commands import Parameter

from bot.__main__ import build_parser
from bot.errors import InvalidRequest
from bot.jobs.flags import PROMPT_FLAGS
from bot.jobs.options import OPTIONS, NumberOption, PictureOption, TextOption
from bot.jobs.requests import ImagineOptions
from cogs.imagine._cog import Imagine
from cogs.preferences import ASPECT_PRESETS, COUNT_PRESETS, GUIDANCE_PRESETS, STEP_PRESETS
from db.members import DEFAULTS
from db.records import MemberPreferences

MODELS = ("builtin:tiny", "sd15")

#: What members read in Discord's option list: a change here is a change users see.
SLASH_DESCRIPTIONS = {
    "prompt": "What to draw; flags such as --ar 16:9 --seed 42 --no text work here too",
    "negative": "What to keep out of the image",
    "aspect": "Aspect ratio (default 1:1)",
    "seed": "Seed of the first image; the others use the next seeds",
    "steps": "Denoising steps (default: the model's)",
    "guidance": "How closely to follow the prompt (default: the model's)",
    "model": "Which model to use",
    "count": "How many images (default 4)",
    "image": "A picture to start from (PNG, JPEG or WebP, up to 10 MB)",
    "strength": "With a picture: how much of it to redraw, 0.05-1 (default 0.6)",
    "lora": "A LoRA of this server (more: write <lora:name:0.8> in the prompt)",
    "style": "A style of this server, around your prompt (also --style name)",
    "reference": "A picture to guide the images (keep this character, this style); needs FLUX.2 klein",
    "reference2": "A second picture to guide the images",
    "reference3": "A third picture to guide the images",
    "mood": "A moodboard of this server: its pictures guide the images (also --mood name)",
}
#: The command line's arguments and their help, as ``python -m bot imagine --help`` shows them.
CLI_HELP = {
    "prompt": 'what to draw; Midjourney-style flags such as "--ar 16:9" work inside it, and "{a, b}" or '
    '"--repeat N" make several grids',
    "--negative": "what to keep out of the image",
    "--seed": "seed of the first image; the others use the next seeds",
    "--steps": "denoising steps (default: the model's)",
    "--guidance": "classifier-free guidance scale (default: the model's)",
    "--ar": "aspect ratio: 1:1, 3:2, 2:3, 16:9, 9:16 (default 1:1)",
    "--count": "how many images, 1-4 (default 4)",
    "--model": "hub id, local diffusers folder, .safetensors file or builtin:tiny (default: SD_MODEL)",
    "--image": "a PNG, JPEG or WebP picture to start from (img2img)",
    "--strength": "with --image: how much of it to redraw, 0.05-1 (default 0.6)",
    "--reference": "a picture to guide the images (keep this character, this style); up to 3 (--reference each); "
    "runs on an edit-capable model (SD_EDIT_MODEL)",
}
#: Each range and its sentence, for a value just outside it.
RANGES = {
    "seed": (-1, "Seed must be between 0 and 4294967295, not -1."),
    "steps": (0, "Steps must be between 1 and 100, not 0."),
    "guidance": (30.5, "Guidance must be between 0 and 30, not 30.5."),
    "count": (5, "Count must be between 1 and 4, not 5."),
    "strength": (0.04, "Strength must be between 0.05 and 1, not 0.04."),
    "repeat": (1, "Repeat must be between 2 and 4, not 1."),
}


def imagine_parser() -> argparse.ArgumentParser:
    subparsers = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    parser = subparsers.choices["imagine"]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


# -- /imagine ----------------------------------------------------------------------------


def test_every_parameter_of_imagine_is_an_entry_of_the_table_and_every_slash_entry_a_parameter() -> None:
    parameters = {parameter.name for parameter in Imagine.imagine.parameters}
    assert parameters == {option.name for option in OPTIONS.values() if option.slash}


@pytest.mark.parametrize("parameter", Imagine.imagine.parameters, ids=lambda parameter: parameter.name)
def test_each_parameter_of_imagine_has_the_bounds_choices_and_words_of_its_entry(parameter: Parameter) -> None:
    option = OPTIONS[parameter.name]
    assert parameter.description == option.description == SLASH_DESCRIPTIONS[parameter.name]
    assert len(parameter.description) <= 100  # Discord's limit on an option's description
    assert parameter.required == option.required
    match option:
        case NumberOption():
            expected = AppCommandOptionType.integer if option.kind is int else AppCommandOptionType.number
            assert parameter.type == expected
            assert (parameter.min_value, parameter.max_value) == (option.low, option.high)
        case TextOption():
            assert parameter.type == AppCommandOptionType.string
            bounds = (None, None) if option.max_length is None else (1, option.max_length)
            assert (parameter.min_value, parameter.max_value) == bounds
            assert [choice.value for choice in parameter.choices] == list(option.choices)
        case PictureOption():
            assert parameter.type == AppCommandOptionType.attachment


# -- flags typed in the prompt ----------------------------------------------------------


def test_the_flags_are_the_tables_each_named_once_in_the_order_users_know() -> None:
    declared = [flag for option in OPTIONS.values() for flag in option.flags]
    assert len(declared) == len(set(declared)), "a flag set by two options would silently set only one"
    assert all(flag.isalpha() and flag.islower() for flag in declared)  # what the prompt's parser finds
    assert {name: flag.option for name, flag in PROMPT_FLAGS.items()} == {
        "ar": "aspect",
        "aspect": "aspect",
        "seed": "seed",
        "no": "negative",
        "steps": "steps",
        "guidance": "guidance",
        "cfg": "guidance",
        "count": "count",
        "model": "model",
        "strength": "strength",
        "style": "style",
        "mood": "mood",
        "ref": "ref",
        "repeat": "repeat",
    }
    with pytest.raises(InvalidRequest) as raised:
        ImagineOptions(prompt="a fox --chaos 50").checked(models=MODELS, max_prompt_chars=99)
    assert str(raised.value) == (
        "Unknown flag '--chaos': the prompt accepts --ar, --aspect, --seed, --no, --steps, --guidance, --cfg, "
        "--count, --model, --strength, --style, --mood, --ref, --repeat."
    )


@pytest.mark.parametrize(("name", "flag"), [("steps", "steps"), ("guidance", "cfg"), ("count", "count")])
def test_a_flag_is_read_as_its_options_type(name: str, flag: str) -> None:
    option = OPTIONS[name]
    assert isinstance(option, NumberOption)
    noun = "a whole number" if option.kind is int else "a number"
    with pytest.raises(InvalidRequest, match=f"^--{flag} takes {noun}, not 'many'.$"):
        ImagineOptions(prompt=f"a fox --{flag} many").checked(models=MODELS, max_prompt_chars=99)


# -- the checks -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RANGES))
def test_a_number_out_of_its_range_is_refused_with_its_sentence_as_an_option_and_as_a_flag(name: str) -> None:
    value, sentence = RANGES[name]
    with pytest.raises(InvalidRequest) as as_option:
        ImagineOptions(prompt="a fox", **{name: value}).checked(models=MODELS, max_prompt_chars=99)
    assert str(as_option.value) == sentence
    flag = OPTIONS[name].flags[0]
    with pytest.raises(InvalidRequest) as as_flag:
        ImagineOptions(prompt=f"a fox --{flag} {value}").checked(models=MODELS, max_prompt_chars=99)
    assert str(as_flag.value) == sentence


def test_every_number_option_is_ranged_and_checked() -> None:
    numbers = {name for name, option in OPTIONS.items() if isinstance(option, NumberOption)}
    assert numbers == set(RANGES)
    for name in numbers:
        option = OPTIONS[name]
        assert isinstance(option, NumberOption)
        # Discord's Range wants both ends of the option's own type; a default and presets lie inside.
        assert type(option.low) is type(option.high) is option.kind
        assert option.default is None or option.low <= option.default <= option.high
        assert all(option.low <= preset <= option.high for preset in option.presets)
        ImagineOptions(prompt="a fox", **{name: option.low}).checked(models=MODELS, max_prompt_chars=99)
        ImagineOptions(prompt="a fox", **{name: option.high}).checked(models=MODELS, max_prompt_chars=99)


def test_the_defaults_of_the_table_are_what_a_request_gets() -> None:
    checked = ImagineOptions(prompt="a fox").checked(models=MODELS, max_prompt_chars=99)
    assert (checked.aspect, checked.count) == (OPTIONS["aspect"].default, OPTIONS["count"].default) == ("1:1", 4)


def test_every_option_but_the_picture_is_a_field_of_a_request() -> None:
    fields = {field.name for field in dataclasses.fields(ImagineOptions)}
    requested = {name for name, option in OPTIONS.items() if not isinstance(option, PictureOption)}
    # The command line's edit of a picture is made of --zoom, --pan or --region, not an option of its own.
    assert fields == requested | {"edit"}


# -- the command line -------------------------------------------------------------------


def test_the_command_line_takes_the_tables_options_with_their_help() -> None:
    parser = imagine_parser()
    helps = {
        (action.option_strings[0] if action.option_strings else action.dest): action.help
        for action in parser._actions
        if action.dest in OPTIONS
    }
    assert helps == CLI_HELP
    assert helps == {option.cli: option.cli_description for option in OPTIONS.values() if option.cli}


def test_the_command_line_reads_each_option_as_its_type() -> None:
    args = imagine_parser().parse_args(
        ["a fox", "--out", "f.png", "--ar", "16:9", "--seed", "7", "--steps", "3", "--guidance", "4.5", "--count", "2"]
    )
    assert (args.prompt, args.aspect, args.seed, args.steps, args.guidance, args.count) == (
        "a fox",
        "16:9",
        7,
        3,
        4.5,
        2,
    )
    assert args.strength is None and args.image is None and args.negative is None


# -- /settings --------------------------------------------------------------------------


def test_the_defaults_a_member_may_keep_are_the_tables_settings() -> None:
    settings = {name for name, option in OPTIONS.items() if option.setting}
    assert settings == set(DEFAULTS)
    assert settings == {field.name for field in dataclasses.fields(MemberPreferences)} - {"user_id", "remix"}


def test_the_settings_panel_offers_the_tables_presets() -> None:
    assert STEP_PRESETS == (10, 20, 25, 30, 40, 50)
    assert GUIDANCE_PRESETS == (None, 3.0, 5.0, 7.0, 9.0, 12.0)
    assert ASPECT_PRESETS == (None, "1:1", "3:2", "2:3", "16:9", "9:16")
    assert COUNT_PRESETS == (None, 1, 2, 3, 4)
