"""Turning generated images into what users download: grids with their parameters.

The parameters go into a PNG text chunk named ``parameters`` in AUTOMATIC1111's
format, which image viewers, Civitai and most UIs already read. Encoding is CPU
work: callers run it off the event loop.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from bot.errors import InvalidRequest

DISCORD_UPLOAD_LIMIT = 10 * 1024 * 1024
GRID_COLUMNS = 2

# Diffusers scheduler class names, as AUTOMATIC1111 names the samplers.
SAMPLER_NAMES = {
    "EulerAncestralDiscreteScheduler": "Euler a",
    "EulerDiscreteScheduler": "Euler",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",
    "LMSDiscreteScheduler": "LMS",
    "HeunDiscreteScheduler": "Heun",
    "UniPCMultistepScheduler": "UniPC",
}


@dataclass(frozen=True, slots=True)
class GenerationParameters:
    """What made an image, for the metadata and the message text."""

    prompt: str
    negative_prompt: str
    seeds: tuple[int, ...]
    model: str
    steps: int
    guidance: float
    width: int
    height: int
    scheduler: str
    strength: float | None = None  # img2img denoising strength, for variations and upscales

    def infotext(self) -> str:
        """The parameters in AUTOMATIC1111's ``parameters`` format."""
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        fields = [
            ("Steps", str(self.steps)),
            ("Sampler", SAMPLER_NAMES.get(self.scheduler, self.scheduler)),
            ("CFG scale", f"{self.guidance:g}"),
            ("Seed", str(self.seeds[0])),
            ("Size", f"{self.width}x{self.height}"),
            ("Model", self.model),
        ]
        if self.strength is not None:
            fields.append(("Denoising strength", f"{self.strength:g}"))
        if len(self.seeds) > 1:
            fields.append(("Seeds", ", ".join(str(seed) for seed in self.seeds)))
        lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields))
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class EncodedImage:
    data: bytes
    filename: str
    content_type: str


def _quote(value: str) -> str:
    # AUTOMATIC1111 quotes a value holding a comma, colon or newline, JSON style, so it parses back.
    if any(mark in value for mark in ",:\n"):
        return json.dumps(value, ensure_ascii=False)
    return value


def compose_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Lay 1-4 images of one size out as a grid: 1 alone, 2 side by side, 3-4 in 2x2.

    Cells keep their place (image n is always at the same spot) so U<n>/V<n> match
    what users see; an empty fourth cell stays black.
    """
    if not images:
        raise ValueError("a grid needs at least one image")
    width, height = images[0].size
    columns = min(GRID_COLUMNS, len(images))
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, image in enumerate(images):
        cell = image if image.size == (width, height) else image.resize((width, height))
        grid.paste(cell.convert("RGB"), ((index % columns) * width, (index // columns) * height))
    return grid


def encode_image(
    image: Image.Image, parameters: GenerationParameters, *, stem: str, limit_bytes: int = DISCORD_UPLOAD_LIMIT
) -> EncodedImage:
    """PNG with the parameters; if the PNG would not fit ``limit_bytes``, JPEG at falling quality."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters.infotext())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, optimize=False, compress_level=6)
    if buffer.tell() <= limit_bytes:
        return EncodedImage(buffer.getvalue(), f"{stem}.png", "image/png")
    exif = Image.Exif()
    exif[0x010E] = parameters.infotext()  # ImageDescription: the one text tag every reader shows
    rgb = image.convert("RGB")
    for quality in (92, 85, 75, 60, 45, 30):
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=quality, exif=exif.tobytes())
        if buffer.tell() <= limit_bytes:
            return EncodedImage(buffer.getvalue(), f"{stem}.jpg", "image/jpeg")
    scale = math.sqrt(limit_bytes / buffer.tell()) * 0.9
    smaller = rgb.resize((max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale))), Image.Resampling.LANCZOS)
    return encode_image(smaller, parameters, stem=stem, limit_bytes=limit_bytes)


def encode_preview(image: Image.Image) -> bytes:
    """A progress preview as PNG: small and short-lived, so the fastest compression."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def load_source_image(path: Path) -> Image.Image:
    """Open a user-supplied image for a variation or an upscale, refusing anything else."""
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.convert("RGB")
    except FileNotFoundError:
        raise InvalidRequest(f"The source image {path} does not exist.") from None
    except (UnidentifiedImageError, OSError):
        raise InvalidRequest(f"{path} is not an image: give a PNG, JPEG or WebP file.") from None
