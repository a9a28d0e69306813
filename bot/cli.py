"""``python -m bot imagine``: the same service and worker as the Discord bot, from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from bot.core import open_core
from bot.errors import USER_FACING_ERRORS
from bot.events import Cancelled, Failed, Progress, Queued, Started
from bot.requests import ASPECT_RATIOS, MAX_COUNT, MIN_COUNT, ImagineOptions
from bot.service import Completed, JobResult, Origin, ServiceEvent
from bot.settings import Settings
from db.errors import StoreError

CONSOLE_USER_ID = 0


def add_imagine_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("imagine", help="generate a grid of images from a prompt and write it to a file")
    parser.add_argument("prompt", help='what to draw; Midjourney-style flags such as "--ar 16:9" work inside it')
    parser.add_argument("--out", type=Path, required=True, help="where to write the grid (PNG)")
    parser.add_argument("--negative", help="what to keep out of the image")
    parser.add_argument("--seed", type=int, help="seed of the first image; the others use the next seeds")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--ar", dest="aspect", help=f"aspect ratio: {', '.join(ASPECT_RATIOS)} (default 1:1)")
    parser.add_argument("--count", type=int, help=f"how many images, {MIN_COUNT}-{MAX_COUNT} (default 4)")
    parser.add_argument("--model", help="hub id, local diffusers folder, .safetensors file or builtin:tiny")


async def run_imagine(settings: Settings, args: argparse.Namespace) -> int:
    if args.model and args.model not in settings.models:
        settings = replace(settings, extra_models=(*settings.extra_models, args.model))
    # A terminal has no edit rate limit: let the progress bar move smoothly.
    settings = replace(settings, preview_interval_s=min(settings.preview_interval_s, 0.2))
    options = ImagineOptions(
        prompt=args.prompt,
        negative=args.negative,
        aspect=args.aspect,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        model=args.model,
        count=args.count,
    )
    async with open_core(settings) as core:
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
            submitted = await core.service.imagine(options, Origin(user_id=CONSOLE_USER_ID, console=True), on_event)
            if submitted.notice:
                tqdm.write(f"warning: {submitted.notice}", file=sys.stderr)
            event = await outcome
        finally:
            bar.close()
        if isinstance(event, Completed):
            return _write_result(event.result, args.out)
        message = event.message if isinstance(event, Failed) else "The job was cancelled."
        print(f"error: {message}", file=sys.stderr)
        return 1


def _write_result(result: JobResult, out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    grid_path = result.image_paths[0].parent / result.grid.filename
    shutil.copyfile(grid_path, out)
    parameters = result.parameters
    print(f"wrote {out} ({parameters.width}x{parameters.height} per image, {len(result.image_paths)} images)")
    print("seeds: " + " ".join(str(seed) for seed in parameters.seeds))
    return 0


def imagine_main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_imagine(settings, args))
    except (StoreError, *USER_FACING_ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
