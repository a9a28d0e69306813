"""The grids a fixed set of jobs makes on ``builtin:tiny``, as one SHA-256 each: run it before and after a change
to the worker seam, and the two listings must be equal, byte for byte.

    .venv/bin/python -m bench.seam_grids > before.txt    # on the previous commit
    .venv/bin/python -m bench.seam_grids | diff before.txt -

The jobs: a text-to-image with weighted and long prompts, a variation, an upscale, a Zoom Out, a Pan, a Vary
(Region), /imagine from a member's picture, and a LoRA and an embedding job; fixed seeds throughout, so every
image is determined. The grid's file (its PNG and the parameters written in it) is what is hashed.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from bench._architectures import write_tiny_loras
from bench._tiny import tiny_settings
from bot.jobs.events import Cancelled, Failed
from bot.jobs.moderation import ModerationService
from bot.jobs.requests import ImagineOptions
from bot.jobs.service import Completed, Origin, ServiceEvent
from bot.runtime.core import open_core
from tests.helpers import NoNsfw

GUILD, CHANNEL, MEMBER, MODERATOR = 100, 200, 1, 2
STEPS = 3


class Ends:
    def __init__(self) -> None:
        self.ended: asyncio.Future[ServiceEvent] = asyncio.get_running_loop().create_future()

    def __call__(self, event: ServiceEvent) -> None:
        if isinstance(event, Completed | Failed | Cancelled) and not self.ended.done():
            self.ended.set_result(event)


async def finished(start: Any) -> Completed:
    ends = Ends()
    await start(ends)
    event = await asyncio.wait_for(ends.ended, 600)
    if not isinstance(event, Completed):
        raise SystemExit(f"a job did not finish: {event}")
    return event


def picture() -> bytes:
    """A member's picture: seeded noise, 80x60, so it is fitted to the model's size on the way in."""
    rng = random.Random(7)
    image = Image.frombytes("RGB", (80, 60), bytes(rng.randrange(256) for _ in range(80 * 60 * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = tiny_settings(Path(folder), workers="thread", preview_interval_s=0.0)
        async with open_core(settings, classifier=NoNsfw()) as core:
            service = core.service
            origin = Origin(user_id=MEMBER, guild_id=GUILD, channel_id=CHANNEL)
            grids: list[tuple[str, bytes]] = []

            def imagine(prompt: str, **options: Any) -> Any:
                return lambda ends: service.imagine(ImagineOptions(prompt=prompt, steps=STEPS, **options), origin, ends)

            first = await finished(imagine("a red fox in snow", seed=11, negative="blurry"))
            grids.append(("txt2img", first.result.grid.data))
            job = first.result.job.id
            weighted = await finished(imagine("a (red:1.3) fox, [snow]", seed=12, count=2))
            grids.append(("weighted prompt", weighted.result.grid.data))
            long = await finished(imagine(" ".join(["a very detailed painting of a fox"] * 12), seed=13, count=1))
            grids.append(("long prompt", long.result.grid.data))
            for name, start in (
                ("variation", lambda ends: service.variation(job, 1, origin, ends)),
                ("upscale", lambda ends: service.upscale(job, 2, origin, ends)),
                ("zoom out", lambda ends: service.edit(job, 0, "zoom:2", origin, ends)),
                ("pan", lambda ends: service.edit(job, 3, "pan:left", origin, ends)),
                ("vary region", lambda ends: service.edit(job, 0, "region:centre", origin, ends)),
            ):
                done = await finished(start)
                # Variations and edits draw random seeds: the same job again with the seeds fixed.
                recipe = done.result.job.recipe.with_seeds((21, 22, 23, 24)[: done.result.job.recipe.count])
                again = await finished(lambda ends, recipe=recipe: service.submit(recipe, origin, ends))
                grids.append((name, again.result.grid.data))
            from_picture = await finished(
                lambda ends: service.imagine(
                    ImagineOptions(prompt="a fox", steps=STEPS, seed=14, strength=0.7), origin, ends, picture=picture()
                )
            )
            grids.append(("from a picture", from_picture.result.grid.data))
            (lora,) = write_tiny_loras(Path(folder), ["ink.safetensors"])
            data = lora.read_bytes()

            async def read() -> bytes:
                return data

            moderation = ModerationService(store=core.store, settings=settings, worker=core.worker)
            await moderation.add_fine_tune(
                GUILD, "lora", "inkstyle", filename="ink.safetensors", size=len(data), read=read, actor_id=MODERATOR
            )
            with_lora = await finished(imagine("a lighthouse <lora:inkstyle:0.8>", seed=15, count=2))
            grids.append(("lora", with_lora.result.grid.data))
            for name, data in grids:
                print(f"{hashlib.sha256(data).hexdigest()}  {name}")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
