"""Draws docs/editing.png: one edit by instruction with a reference on builtin:tiny-klein, through the worker's code.

A picture (shapes on a gradient, cut to 3:2), a reference (other shapes, square), then /edit "make it night" of
the picture with the reference: the job the bot records for /edit (kind ``edit``, the picture fitted to the
model's size at its aspect, four seeds), compiled by ``generation_request`` into the referenced call that
FLUX.2 klein's pipeline runs with ``image=[picture, reference]``, and run by the engine. The tiny model has
random weights and draws noise; what the picture shows is the path, not a good edit.

    python docs/editing.py
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_png import picture
from bot.gpu.runner import image_tasks
from bot.images.uploads import fit_to
from bot.jobs.generation import generation_request
from bot.jobs.recipe import JobKind, Recipe
from bot.jobs.requests import picture_size
from models.engine import DiffusionEngine, EngineConfig
from models.tiny_flow import TINY_KLEIN_MODEL_ID
from models.types import GenerationBatch

SEED = 7
SHOWN = 192  # the height each panel is drawn at, pixel for pixel (nearest neighbour)
GAP = 8
CAPTION = 16
NOTE = (
    "The tiny test model draws noise; what the picture shows is the path: the picture and its reference go in,",
    "four seeded edits at the picture's aspect come out (builtin:tiny-klein, through generation_request and the engine).",
)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def edits(engine: DiffusionEngine, source: Image.Image, reference: Image.Image) -> tuple[Image.Image, ...]:
    """Four edits of ``source`` guided by ``reference``, as /edit records and the worker runs them."""
    preset = engine.load(TINY_KLEIN_MODEL_ID)
    width, height = picture_size(preset, source.width, source.height)
    recipe = Recipe(
        kind=JobKind.EDIT,
        prompt="make it night",
        negative_prompt="",
        model=preset.model,
        width=width,
        height=height,
        steps=preset.steps,
        guidance=preset.guidance,
        seeds=tuple(range(SEED, SEED + 4)),
        scheduler=preset.scheduler,
        source="sources/picture.png",  # where the bot keeps it; only the bytes below reach the worker
        reference_images=("sources/reference.png",),
    )
    request = generation_request(1, recipe, png(fit_to(source, width, height)), (png(reference),))
    return tuple(engine.run(GenerationBatch(spec=request.spec, tasks=image_tasks(request))).images)


def shown(image: Image.Image) -> Image.Image:
    return image.resize((round(image.width * SHOWN / image.height), SHOWN), Image.Resampling.NEAREST)


def grid(images: tuple[Image.Image, ...]) -> Image.Image:
    """Four images as the bot posts them: a 2x2 grid."""
    width, height = images[0].size
    sheet = Image.new("RGB", (2 * width, 2 * height))
    for index, image in enumerate(images):
        sheet.paste(image, ((index % 2) * width, (index // 2) * height))
    return sheet


def main() -> None:
    source = picture(192, seed=3).crop((0, 32, 192, 160))  # 3:2
    reference = picture(128, seed=8)
    with tempfile.TemporaryDirectory() as cache:
        engine = DiffusionEngine(EngineConfig(device="cpu", cache_dir=Path(cache)))
        edited = edits(engine, source, reference)
    panels = [
        ("the picture", shown(source)),
        ("a reference", shown(reference)),
        ("/edit 'make it night' with the reference: four edits", shown(grid(edited))),
    ]
    width = GAP + sum(image.width + GAP for _, image in panels)
    sheet = Image.new("RGB", (width, GAP + SHOWN + CAPTION + GAP + 2 * CAPTION), "white")
    draw = ImageDraw.Draw(sheet)
    x = GAP
    for caption, image in panels:
        sheet.paste(image, (x, GAP))
        draw.text((x, GAP + SHOWN + 3), caption, fill="black")
        x += image.width + GAP
    for line, text in enumerate(NOTE):
        draw.text((GAP, GAP + SHOWN + CAPTION + GAP + line * CAPTION), text, fill="dimgray")
    out = ROOT / "docs" / "editing.png"
    sheet.save(out, optimize=True)
    print(f"wrote {out} ({', '.join(f'{image.width}x{image.height}' for image in edited[:1])} each, four)")


if __name__ == "__main__":
    main()
