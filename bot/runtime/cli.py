"""``python -m bot imagine``: the same service and worker as the Discord bot, from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bot.errors import USER_FACING_ERRORS, InvalidRequest
from bot.images.edits import PAN_DIRECTIONS, REGIONS, ZOOM_FACTORS, pan_mask, region_slug, zoom_mask
from bot.jobs.events import Cancelled, Failed, Progress, Queued, Started
from bot.jobs.options import OPTIONS, NumberOption, Option, PictureOption
from bot.jobs.outcomes import ServiceListener, SubmittedJob
from bot.jobs.requests import ImagineOptions
from bot.jobs.service import Completed, JobResult, Origin, ServiceEvent
from bot.jobs.upscales import UPSCALE_PROMPT, UpscaleMode
from bot.runtime.core import open_core
from bot.settings import DEFAULT_MODEL, Settings
from db.errors import StoreError

CONSOLE_USER_ID = 0
#: The options the command line takes, in the table's order.
COMMAND_LINE_OPTIONS = tuple(option for option in OPTIONS.values() if option.cli is not None)

_IMAGINE_DESCRIPTION = f"""\
Generate a grid of images from a prompt with the same service and worker as the
Discord bot, show progress, and write the grid to a PNG file.

The model is SD_MODEL, or --model. The default is a Hugging Face model,
{DEFAULT_MODEL}, downloaded on first use
(several GB, kept under HF_HOME), so it needs the network once.
SD_MODEL=builtin:tiny works offline: a tiny random-weight model built locally in
seconds; it draws noise, but runs all of the real code."""

_IMAGINE_EPILOG = """\
examples:
  SD_MODEL=builtin:tiny python -m bot imagine "a red fox in snow" --out fox.png --seed 7
  python -m bot imagine "a red fox, oil painting" --image fox.png --strength 0.5 --out painted.png
  python -m bot imagine "a fox in a wide snowy valley" --image fox.png --zoom 2 --out wider.png
  python -m bot imagine "a red door" --image house.png --region left-half --out door.png
  python -m bot imagine "a {red, blue} fox --repeat 2" --out fox.png   # fox-1.png ... fox-4.png
  python -m bot imagine "a knight in this style" --reference style.png --out knight.png"""

_EDIT_DESCRIPTION = """\
Change a picture as an instruction says, with the same service and worker as the
Discord bot's /edit, and write the grid of four edits to a PNG file. The first
--image is the picture changed (its aspect is kept); up to two more are references
("put the cat from image 2 on the sofa"). It runs on SD_EDIT_MODEL, or the first
model among SD_MODEL and SD_EXTRA_MODELS that edits by instruction (FLUX.2 klein)."""

_EDIT_EPILOG = """\
examples:
  python -m bot edit "make it night" --image street.png --out night.png
  python -m bot edit "put the cat from image 2 on the sofa" --image sofa.png --image cat.png --out cat.png
  SD_MODEL=builtin:tiny-klein python -m bot edit "make it night" --image a.png --out night.png --seed 7"""


def add_imagine_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "imagine",
        help="generate a grid of images from a prompt and write it to a file",
        description=_IMAGINE_DESCRIPTION,
        epilog=_IMAGINE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="where to write the grid (PNG); several grids: OUT-1.png, OUT-2.png ..."
    )
    for option in COMMAND_LINE_OPTIONS:  # from the option table (bot.jobs.options)
        _add_option_argument(parser, option)
    edits = parser.add_mutually_exclusive_group()
    edits.add_argument("--zoom", choices=ZOOM_FACTORS, help="with --image: zoom out by this factor and draw the border")
    edits.add_argument("--pan", choices=PAN_DIRECTIONS, help="with --image: widen it this way and draw the new strip")
    edits.add_argument(
        "--region", choices=[region_slug(label) for label in REGIONS], help="with --image: redraw this part of it"
    )


def add_edit_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "edit",
        help="change a picture as an instruction says and write the grid of four edits to a file",
        description=_EDIT_DESCRIPTION,
        epilog=_EDIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("instruction", help='what to change, such as "make it night"')
    parser.add_argument(
        "--image",
        type=Path,
        action="append",
        required=True,
        help="the PNG, JPEG or WebP picture to change; given again, up to twice more: references",
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the grid (PNG)")
    parser.add_argument("--model", help="an edit-capable model (default: SD_EDIT_MODEL, else the first configured)")
    parser.add_argument("--seed", type=int, help="seed of the first edit; the others use the next seeds")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")


def _add_option_argument(parser: argparse.ArgumentParser, option: Option) -> None:
    """The argument of one option of the table: a number's type, a picture's path, its help."""
    if option.cli is None:
        return
    kind: Callable[[str], object] = str  # how argparse reads its text
    if isinstance(option, NumberOption):
        kind = option.kind
    elif isinstance(option, PictureOption):
        kind = Path
    if not option.cli.startswith("-"):  # positional: argparse names it by itself
        parser.add_argument(option.cli, type=kind, help=option.cli_description)
    elif isinstance(option, PictureOption) and option.many > 1:  # given once per picture
        parser.add_argument(option.cli, dest=option.name, type=kind, action="append", help=option.cli_description)
    else:
        parser.add_argument(option.cli, dest=option.name, type=kind, help=option.cli_description)


async def run_imagine(settings: Settings, args: argparse.Namespace) -> int:
    if args.model and args.model not in settings.models:
        settings = replace(settings, extra_models=(*settings.extra_models, args.model))
    # A terminal has no edit rate limit: let the progress bar move smoothly.
    settings = replace(settings, preview_interval_s=min(settings.preview_interval_s, 0.2))
    edit = None
    if args.zoom:
        edit = zoom_mask(args.zoom)
    elif args.pan:
        edit = pan_mask(args.pan)
    elif args.region:
        edit = f"region:{args.region}"
    if args.image is None and (edit is not None or args.strength is not None):
        raise InvalidRequest("--strength, --zoom, --pan and --region work on a picture: give it with --image FILE.")
    # Every option the command line takes but the picture, which travels beside them as bytes.
    given = {
        option.name: getattr(args, option.name)
        for option in COMMAND_LINE_OPTIONS
        if not isinstance(option, PictureOption)
    }
    options = ImagineOptions(**given, edit=edit)
    picture = _read_picture(args.image) if args.image is not None else None
    references = [_read_picture(path, "--reference") for path in args.reference or ()]
    # While the bar is shown, log lines (the model loading) are written above it, not into it.
    with logging_redirect_tqdm():
        return await _generate(settings, options, args.out, picture, references)


async def run_edit(settings: Settings, args: argparse.Namespace) -> int:
    if args.model and args.model not in settings.models:
        settings = replace(settings, extra_models=(*settings.extra_models, args.model))
    settings = replace(settings, preview_interval_s=min(settings.preview_interval_s, 0.2))
    pictures = [_read_picture(path) for path in args.image]
    origin = Origin(user_id=CONSOLE_USER_ID, console=True)
    with logging_redirect_tqdm():
        async with open_core(replace(settings, workers="thread")) as core:

            def start(on_event: ServiceListener) -> Awaitable[SubmittedJob]:
                return core.service.edit_pictures(
                    args.instruction, pictures, origin, on_event, model=args.model, seed=args.seed, steps=args.steps
                )

            return await _follow(start, args.out)


def _read_picture(path: Path, flag: str = "--image") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidRequest(f"{flag} {path} does not exist.") from None
    except IsADirectoryError:
        raise InvalidRequest(f"{flag} {path} is a folder: give a PNG, JPEG or WebP file.") from None
    except OSError as error:
        raise InvalidRequest(f"{flag} {path} cannot be read ({error.strerror or error}).") from None


async def _generate(
    settings: Settings, options: ImagineOptions, out: Path, picture: bytes | None, references: list[bytes]
) -> int:
    # One person at the terminal: the model loads in this process, no worker to start.
    async with open_core(replace(settings, workers="thread")) as core:
        origin = Origin(user_id=CONSOLE_USER_ID, console=True)
        # "{a, b}" permutations and --repeat make several jobs: one grid each, numbered after --out.
        jobs = await core.service.expand(options, origin)
        if len(jobs) > 1 and references:
            raise InvalidRequest(
                "Reference pictures go with one job at a time: leave out the {a, b} choices or --repeat."
            )
        status = 0
        for number, job in enumerate(jobs, start=1):
            target = out if len(jobs) == 1 else out.with_name(f"{out.stem}-{number}{out.suffix}")

            def start(on_event: ServiceListener, job: ImagineOptions = job) -> Awaitable[SubmittedJob]:
                return core.service.imagine(job, origin, on_event, picture=picture, references=references)

            status = max(status, await _follow(start, target))
        return status


async def _follow(start: Callable[[ServiceListener], Awaitable[SubmittedJob]], out: Path | None) -> int:
    """Start one job (``start`` admits it with a listener), show its progress, and write its grid to ``out``."""
    outcome: asyncio.Future[ServiceEvent] = asyncio.get_running_loop().create_future()
    bar = tqdm(total=1, desc="queued", unit="step", file=sys.stderr, leave=False)

    def on_event(event: ServiceEvent) -> None:
        if outcome.done():
            return
        match event:
            case Queued(position=position):
                bar.set_description(f"queued (#{position})")
            case Started():
                bar.set_description("generating")
            case Progress(step=step, total=total):
                bar.total = total
                bar.n = step
                bar.refresh()
            case Completed() | Failed() | Cancelled():
                outcome.set_result(event)

    try:
        submitted = await start(on_event)
        if submitted.notice:
            tqdm.write(f"warning: {submitted.notice}", file=sys.stderr)
        if submitted.waiting:  # REDIS_URL set and no `python -m bot worker` online yet
            tqdm.write(submitted.waiting, file=sys.stderr)
        event = await outcome
    finally:
        bar.close()
    if isinstance(event, Completed):
        return _write_result(event.result, out) if out is not None else _print_prompts(event.result)
    message = event.message if isinstance(event, Failed) else "The job was cancelled."
    print(f"error: {message}", file=sys.stderr)
    return 1


def _print_prompts(result: JobResult) -> int:
    """A description's four prompts, numbered, one to a line (to copy into an /imagine)."""
    if result.withheld:
        print("error: the picture was withheld by the image classifier.", file=sys.stderr)
        return 1
    for number, text in enumerate(result.job.texts, start=1):
        print(f"{number}. {text}")
    return 0


def add_upscale_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "upscale",
        help="a picture at twice its size, written to a file",
        description="Enlarge a picture to twice its width and height with the same service and worker as the "
        "bot's upscale buttons: with UPSCALER set, its super-resolution net alone (Upscale (Subtle)), or with "
        "--creative the net then a redraw on SD_MODEL that adds detail (Upscale (Creative)). Without UPSCALER, a "
        "resize redrawn by SD_MODEL.",
        epilog="examples:\n  UPSCALER=models/4x-UltraSharp.safetensors python -m bot upscale in.png --out big.png\n"
        "  python -m bot upscale in.png --out big.png --creative",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", type=Path, help="the PNG, JPEG or WebP picture to enlarge")
    parser.add_argument("--out", type=Path, required=True, help="where to write the result (PNG)")
    parser.add_argument("--creative", action="store_true", help="redraw it at a higher strength to add detail")
    parser.add_argument("--prompt", help="what the redraw follows (default: a generic detail prompt)")


def add_describe_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "describe",
        help="four prompts that describe a picture, printed",
        description="Describe a picture in four prompts with the captioner (CAPTIONER, Florence-2), as /describe "
        "does, and print them numbered.",
        epilog="example:\n  python -m bot describe photo.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", type=Path, help="the PNG, JPEG or WebP picture to describe")


async def run_upscale(settings: Settings, args: argparse.Namespace) -> int:
    picture = _read_picture(args.image, "the picture")
    mode = UpscaleMode.CREATIVE if args.creative else UpscaleMode.SUBTLE
    origin = Origin(user_id=CONSOLE_USER_ID, console=True)
    with logging_redirect_tqdm():
        async with open_core(replace(settings, workers="thread")) as core:

            def start(on_event: ServiceListener) -> Awaitable[SubmittedJob]:
                prompt = args.prompt or UPSCALE_PROMPT
                return core.service.upscale_picture(picture, origin, on_event, mode=mode, prompt=prompt)

            return await _follow(start, args.out)


async def run_describe(settings: Settings, args: argparse.Namespace) -> int:
    picture = _read_picture(args.image, "the picture")
    origin = Origin(user_id=CONSOLE_USER_ID, console=True)
    with logging_redirect_tqdm():
        async with open_core(replace(settings, workers="thread")) as core:
            return await _follow(lambda on_event: core.service.describe(picture, origin, on_event), None)


def _write_result(result: JobResult, out: Path) -> int:
    grid_path = result.image_paths[0].parent / result.grid.filename
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(grid_path, out)
    except OSError as error:  # checked before generating; the disk can still fill up or change meanwhile
        print(f"error: cannot write {out} ({error.strerror or error}); the grid is in {grid_path}.", file=sys.stderr)
        return 1
    recipe = result.recipe
    count = len(result.image_paths)
    print(f"wrote {out} ({recipe.width}x{recipe.height} per image, {count} image{'' if count == 1 else 's'})")
    print("seeds: " + " ".join(str(seed) for seed in recipe.seeds))
    return 0


def output_path_problem(out: Path) -> str | None:
    """Why the grid could not be written to ``out``, asked before any work is queued; None if it can.

    Folders missing on the way are created when the grid is written, so what must hold
    is that the nearest one that exists is a folder this process may write in.
    """
    if out.is_dir():
        return f"--out {out} is a folder: give the file to write, such as {out / 'grid.png'}."
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"--out {out} cannot be written: {folder} is a file, not a folder."
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"--out {out} cannot be written: this user may not write in the folder {folder}."
    if out.exists() and not os.access(out, os.W_OK):
        return f"--out {out} cannot be written: the file exists and this user may not overwrite it."
    return None


# Failures the owner can act on: one sentence and exit 2, no traceback.
_REPORTED: tuple[type[Exception], ...] = (StoreError, *USER_FACING_ERRORS)


def imagine_main(settings: Settings, args: argparse.Namespace) -> int:
    """``python -m bot imagine`` and ``python -m bot edit``: one sentence and exit 2 for what the owner can fix."""
    problem = output_path_problem(args.out) if getattr(args, "out", None) is not None else None
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    runs = {"edit": run_edit, "upscale": run_upscale, "describe": run_describe}
    try:
        return asyncio.run(runs.get(args.command, run_imagine)(settings, args))
    except _REPORTED as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
